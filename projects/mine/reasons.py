"""Why a row deserves a label: one function per reason, each ranking the rows it would pick.

Every reason returns its rows best first as a :data:`Picks` frame: indexed by the window's row
labels, with the reason's ``score`` (higher: more wanted) and a ``detail`` (the slice a row was
picked from, the flag word; empty otherwise). The queue (``projects.mine.queue``) takes each
reason's first rows up to its share of the budget, so the order is what matters; ties are broken
by a random order drawn from ``seed``, so the same window and seed give the same queue.

Why already-labelled rows are left to ``highest_loss``: a label answers every other reason's
question already; the one thing left to ask of it is whether the label itself is wrong, and a
row the model finds very unlikely under its label is where that shows.

The window holds ``prediction``, ``confidence``, the ``p_<class>`` columns and, after
``projects.mine.feedback.attach``, ``label`` and ``flag`` (None where there is none).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from registry_hooks.inference_records import CONFIDENCE, PREDICTION, PROBABILITY_PREFIX, REQUEST_ID, probability_columns

from .slices import Slice

FLAG = "flag"
SLICE = "slice"
LOW_CONFIDENCE = "low_confidence"
DISAGREEMENT = "disagreement"
HIGH_LOSS = "high_loss"
RANDOM = "random"  # only under selection "random": the control the reasons are measured against
REASONS = (FLAG, SLICE, LOW_CONFIDENCE, DISAGREEMENT, HIGH_LOSS, RANDOM)  # the order the budget is served in
SELECTIONS = ("reasons", "random")

FLAG_SCORES = {"wrong": 2.0, "unsure": 1.0}  # 'wrong' before 'unsure'
LOSS_FLOOR = 1e-6  # p_<label> is clipped here: a loss of at most -log(1e-6) ~ 13.8, never inf
PICK_COLUMNS = ["score", "detail"]


def _picks(window: pd.DataFrame, rows: np.ndarray, score: np.ndarray, seed: int, detail=None,
           order: np.ndarray | None = None) -> pd.DataFrame:
    """The ``rows`` (a boolean mask over the window) best first: by ``order`` when given (smaller
    first), else by score, highest first; ties in a random order drawn from ``seed``."""
    tiebreak = np.random.default_rng(seed).permutation(len(window))
    primary = -np.asarray(score, dtype=float) if order is None else np.asarray(order, dtype=float)
    ranked = [i for i in np.lexsort((tiebreak, primary)) if rows[i]]
    detail = np.full(len(window), "", dtype=object) if detail is None else np.asarray(detail, dtype=object)
    return pd.DataFrame({"score": np.asarray(score, dtype=float)[ranked], "detail": detail[ranked]},
                        index=window.index[ranked])


def _unlabelled(window: pd.DataFrame) -> np.ndarray:
    return window["label"].isna().to_numpy() if "label" in window.columns else np.ones(len(window), dtype=bool)


def lowest_confidence(window: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Unlabelled rows, least confident first; score ``1 - confidence``."""
    confidence = window[CONFIDENCE].to_numpy(dtype=float)
    return _picks(window, _unlabelled(window) & ~np.isnan(confidence), 1.0 - confidence, seed)


def disagreement(window: pd.DataFrame, candidate: pd.DataFrame | None, seed: int = 0) -> pd.DataFrame:
    """Unlabelled rows where the candidate's class differs from the served one's (the candidate
    scored in the shadow: ``request_id``, ``prediction``, ``p_<class>``); score: the total
    variation distance between the two probability vectors, so a confident flip ranks first."""
    if candidate is None or candidate.empty:
        return _picks(window, np.zeros(len(window), dtype=bool), np.zeros(len(window)), seed)
    shadow = candidate.drop_duplicates(REQUEST_ID, keep="last").set_index(REQUEST_ID).reindex(window[REQUEST_ID])
    classes = [c for c in probability_columns(window.columns) if c in shadow.columns]
    distance = 0.5 * np.abs(window[classes].to_numpy(dtype=float) - shadow[classes].to_numpy(dtype=float)).sum(axis=1)
    differs = shadow[PREDICTION].notna().to_numpy() & (shadow[PREDICTION].to_numpy() != window[PREDICTION].to_numpy())
    return _picks(window, _unlabelled(window) & differs, np.nan_to_num(distance), seed)


def highest_loss(window: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Labelled rows, highest log loss first: ``-log p_<label>``, p clipped to ``LOSS_FLOOR``
    (a label that is no class of the model's is skipped: it has no probability)."""
    if "label" not in window.columns:
        return _picks(window, np.zeros(len(window), dtype=bool), np.zeros(len(window)), seed)
    labels = window["label"].to_numpy(dtype=object)
    column = {c[len(PROBABILITY_PREFIX):]: k for k, c in enumerate(probability_columns(window.columns))}
    probabilities = window[probability_columns(window.columns)].to_numpy(dtype=float)
    known = np.array([isinstance(label, str) and label in column for label in labels], dtype=bool)
    p_label = np.ones(len(window))
    p_label[known] = probabilities[np.flatnonzero(known), [column[label] for label in labels[known]]]
    loss = -np.log(np.clip(np.nan_to_num(p_label, nan=LOSS_FLOOR), LOSS_FLOOR, 1.0))
    return _picks(window, known, loss, seed)


def random_rows(window: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Unlabelled rows in a random order drawn from ``seed``, score 0: what the same budget buys
    without any reason, so that the reasons' worth can be measured (``benchmarks/bench_season.py``)."""
    order = np.random.default_rng([seed, 1]).permutation(len(window))
    return _picks(window, _unlabelled(window), np.zeros(len(window)), seed, order=order)


def human_flags(window: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Unlabelled rows a person flagged: ``wrong`` (score 2) before ``unsure`` (score 1)."""
    flags = window["flag"] if "flag" in window.columns else pd.Series(None, index=window.index, dtype=object)
    score = flags.map(FLAG_SCORES).fillna(0.0).to_numpy(dtype=float)
    return _picks(window, _unlabelled(window) & (score > 0), score, seed, detail=flags.fillna("").to_numpy())


def slice_rows(window: pd.DataFrame, slices: Sequence[Slice], seed: int = 0) -> pd.DataFrame:
    """Unlabelled rows of the reported slices, taken in turns (one row of the best slice, one of
    the next, ...) so that a small budget still samples every slice; at random within a slice,
    so that the labels give an unbiased error rate of it. A row in several slices belongs to the
    best; score: that slice's SliceLine score, detail: its description."""
    unlabelled = _unlabelled(window)
    owner = np.full(len(window), -1)
    for k, found in enumerate(slices):
        owner[(owner < 0) & found.matches(window) & unlabelled] = k
    turn = np.zeros(len(window))
    rng = np.random.default_rng(seed)
    for k in range(len(slices)):
        members = np.flatnonzero(owner == k)
        turn[members[rng.permutation(len(members))]] = np.arange(len(members)) * len(slices) + k
    score = np.array([slices[k].score if k >= 0 else 0.0 for k in owner])
    detail = np.array([str(slices[k]) if k >= 0 else "" for k in owner], dtype=object)
    return _picks(window, owner >= 0, score, seed, detail=detail, order=turn)
