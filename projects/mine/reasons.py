"""Why a row deserves a label: one function per reason, each ranking the rows it would pick.

Every reason returns its rows best first as a :data:`Picks` frame: indexed by the window's row
labels, with the reason's ``score`` (higher: more wanted) and a ``detail`` (the slice a row was
picked from, the flag word; empty otherwise). The queue (``projects.mine.queue``) takes each
reason's first rows up to its share of the budget, so the order is what matters; ties are broken
by a keyed hash of each row's request id (:func:`draws`), so the same window and seed give the
same queue, whichever engine mined it and whatever order the log was read in.

Why already-labelled rows are left to ``highest_loss``: a label answers every other reason's
question already; the one thing left to ask of it is whether the label itself is wrong, and a
row the model finds very unlikely under its label is where that shows.

The window holds ``prediction``, ``confidence``, the ``p_<class>`` columns and, after
``projects.mine.feedback.attach``, ``label`` and ``flag`` (None where there is none).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from registry_hooks.inference_records import (CONFIDENCE, PREDICTION, PROBABILITY_PREFIX, REQUEST_ID, TIME,
                                              probability_columns)

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


@dataclass(frozen=True)
class Ranking:
    """What a reason knows of each row on its own: whether the row is one of its candidates, its
    ``score``, ``detail``, and its sort key ``order`` (smaller first; None: highest score first).

    Why row by row: a row's ranking needs nothing from the other rows, so the Spark engine
    (``projects.mine.spark_engine``) computes it partition by partition with these very functions
    and only the sort is left to Spark; the local engine sorts with :func:`ranked`."""

    rows: np.ndarray
    score: np.ndarray
    detail: np.ndarray | None = None
    order: np.ndarray | None = None

    @property
    def primary(self) -> np.ndarray:
        return -np.asarray(self.score, dtype=float) if self.order is None else np.asarray(self.order, dtype=float)


def draws(request_ids, seed: int, reason: str) -> np.ndarray:
    """Each row's tie-break: SipHash-2-4 of its request id (pandas' ``hash_pandas_object``) keyed
    by ``seed`` and ``reason``, shifted to a non-negative int64 (Spark sorts signed longs).

    Why a keyed hash, not a permutation of the window: a row's draw depends on its id alone, so it
    is the same whichever engine computes it, in whatever partition, and whatever order the log's
    files are read in; the same window and seed give the same queue. A reason's own key keeps the
    reasons' tie-breaks independent of each other."""
    key = hashlib.sha256(f"{seed}:{reason}".encode()).hexdigest()[:16]
    ids = pd.Series(np.asarray(request_ids, dtype=object), dtype=object).astype(str)
    hashed = pd.util.hash_pandas_object(ids, index=False, hash_key=key).to_numpy(dtype=np.uint64)
    return (hashed >> np.uint64(1)).astype(np.int64)


def tie_keys(window: pd.DataFrame, seed: int, reason: str) -> list[np.ndarray]:
    """The keys that order rows with the same primary key, most significant first: the row's draw,
    then its ``time`` (rows sharing a request id share the draw), then its place in the window."""
    keys = [draws(window[REQUEST_ID], seed, reason)]
    if TIME in window.columns:
        keys.append(window[TIME].to_numpy(dtype="datetime64[ns]"))
    return [*keys, np.arange(len(window))]


def ranked(window: pd.DataFrame, ranking: Ranking, reason: str, seed: int) -> pd.DataFrame:
    """The :data:`Picks` of ``ranking``: its candidate rows sorted by the primary key, ties by
    :func:`tie_keys`."""
    keys = [ranking.primary, *tie_keys(window, seed, reason)]
    order = np.lexsort(keys[::-1])
    order = order[np.asarray(ranking.rows, dtype=bool)[order]]
    detail = np.full(len(window), "", dtype=object) if ranking.detail is None else np.asarray(ranking.detail, dtype=object)
    return pd.DataFrame({"score": np.asarray(ranking.score, dtype=float)[order], "detail": detail[order]},
                        index=window.index[order])


def _unlabelled(window: pd.DataFrame) -> np.ndarray:
    return window["label"].isna().to_numpy() if "label" in window.columns else np.ones(len(window), dtype=bool)


def _nothing(window: pd.DataFrame) -> Ranking:
    return Ranking(np.zeros(len(window), dtype=bool), np.zeros(len(window)))


def confidence_ranking(window: pd.DataFrame) -> Ranking:
    """Unlabelled rows, score ``1 - confidence``."""
    confidence = window[CONFIDENCE].to_numpy(dtype=float)
    return Ranking(_unlabelled(window) & ~np.isnan(confidence), 1.0 - confidence)


def disagreement_ranking(window: pd.DataFrame, candidate: pd.DataFrame | None) -> Ranking:
    """Unlabelled rows where the candidate's class differs from the served one's; score: the total
    variation distance between the two probability vectors."""
    if candidate is None or candidate.empty:
        return _nothing(window)
    shadow = candidate.drop_duplicates(REQUEST_ID, keep="last").set_index(REQUEST_ID).reindex(window[REQUEST_ID])
    classes = [c for c in probability_columns(window.columns) if c in shadow.columns]
    distance = 0.5 * np.abs(window[classes].to_numpy(dtype=float) - shadow[classes].to_numpy(dtype=float)).sum(axis=1)
    differs = shadow[PREDICTION].notna().to_numpy() & (shadow[PREDICTION].to_numpy() != window[PREDICTION].to_numpy())
    return Ranking(_unlabelled(window) & differs, np.nan_to_num(distance))


def loss_ranking(window: pd.DataFrame) -> Ranking:
    """Labelled rows, score ``-log p_<label>`` (see :func:`highest_loss`)."""
    if "label" not in window.columns:
        return _nothing(window)
    labels = window["label"].to_numpy(dtype=object)
    column = {c[len(PROBABILITY_PREFIX):]: k for k, c in enumerate(probability_columns(window.columns))}
    probabilities = window[probability_columns(window.columns)].to_numpy(dtype=float)
    known = np.array([isinstance(label, str) and label in column for label in labels], dtype=bool)
    p_label = np.ones(len(window))
    p_label[known] = probabilities[np.flatnonzero(known), [column[label] for label in labels[known]]]
    loss = -np.log(np.clip(np.nan_to_num(p_label, nan=LOSS_FLOOR), LOSS_FLOOR, 1.0))
    return Ranking(known, loss)


def random_ranking(window: pd.DataFrame) -> Ranking:
    """Unlabelled rows, score 0, all tied: the draw alone orders them."""
    return Ranking(_unlabelled(window), np.zeros(len(window)), order=np.zeros(len(window)))


def flag_ranking(window: pd.DataFrame) -> Ranking:
    """Unlabelled flagged rows: ``wrong`` scores 2, ``unsure`` 1; detail: the flag."""
    flags = window["flag"] if "flag" in window.columns else pd.Series(None, index=window.index, dtype=object)
    score = flags.map(FLAG_SCORES).fillna(0.0).to_numpy(dtype=float)
    return Ranking(_unlabelled(window) & (score > 0), score, detail=flags.fillna("").to_numpy())


def slice_ranking(window: pd.DataFrame, slices: Sequence[Slice]) -> Ranking:
    """Unlabelled rows of the reported slices, ``order`` the index of the best slice a row is in
    (its owner); score: that slice's SliceLine score, detail: its description. The turns are
    :func:`slice_turns`' (they need the owner's other rows)."""
    unlabelled = _unlabelled(window)
    owner = np.full(len(window), -1)
    for k, found in enumerate(slices):
        owner[(owner < 0) & found.matches(window) & unlabelled] = k
    score = np.array([*(found.score for found in slices), 0.0])[owner]  # owner -1: the last, 0.0 / ""
    detail = np.array([*(str(found) for found in slices), ""], dtype=object)[owner]
    return Ranking(owner >= 0, score, detail=detail, order=owner.astype(float))


def slice_turns(owner: np.ndarray, ties: Sequence[np.ndarray], n_slices: int) -> np.ndarray:
    """Turns across slices: slice k's j-th row (by ``ties``, most significant first) gets turn
    ``j * n_slices + k``, so sorting by turn takes one row of each slice in turn."""
    turn = np.zeros(len(owner))
    for k in range(n_slices):
        members = np.flatnonzero(owner == k)
        members = members[np.lexsort([key[members] for key in ties][::-1])]
        turn[members] = np.arange(len(members)) * n_slices + k
    return turn


def lowest_confidence(window: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Unlabelled rows, least confident first; score ``1 - confidence``."""
    return ranked(window, confidence_ranking(window), LOW_CONFIDENCE, seed)


def disagreement(window: pd.DataFrame, candidate: pd.DataFrame | None, seed: int = 0) -> pd.DataFrame:
    """Unlabelled rows where the candidate's class differs from the served one's (the candidate
    scored in the shadow: ``request_id``, ``prediction``, ``p_<class>``); score: the total
    variation distance between the two probability vectors, so a confident flip ranks first."""
    return ranked(window, disagreement_ranking(window, candidate), DISAGREEMENT, seed)


def highest_loss(window: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Labelled rows, highest log loss first: ``-log p_<label>``, p clipped to ``LOSS_FLOOR``
    (a label that is no class of the model's is skipped: it has no probability)."""
    return ranked(window, loss_ranking(window), HIGH_LOSS, seed)


def random_rows(window: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Unlabelled rows in a random order drawn from ``seed``, score 0: what the same budget buys
    without any reason, so that the reasons' worth can be measured (``benchmarks/bench_season.py``)."""
    return ranked(window, random_ranking(window), RANDOM, seed)


def human_flags(window: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Unlabelled rows a person flagged: ``wrong`` (score 2) before ``unsure`` (score 1)."""
    return ranked(window, flag_ranking(window), FLAG, seed)


def slice_rows(window: pd.DataFrame, slices: Sequence[Slice], seed: int = 0) -> pd.DataFrame:
    """Unlabelled rows of the reported slices, taken in turns (one row of the best slice, one of
    the next, ...) so that a small budget still samples every slice; at random within a slice,
    so that the labels give an unbiased error rate of it. A row in several slices belongs to the
    best; score: that slice's SliceLine score, detail: its description."""
    ranking = slice_ranking(window, slices)
    turn = slice_turns(ranking.order.astype(int), tie_keys(window, seed, SLICE), len(slices))
    return ranked(window, Ranking(ranking.rows, ranking.score, ranking.detail, turn), SLICE, seed)
