"""The labelling queue: a budget of rows, shared out across the reasons, each row once.

Why this split (design section 4): a person's flag is the strongest evidence a prediction is
wrong, so flags are served first, up to the whole budget. What is left is shared equally by the
other reasons in ``REASONS`` order (slices first, so rounding favours them), and a reason that
has fewer new rows than its share hands the rest on to the reasons after it; a final pass in the
same order spends whatever is still left. So the budget is spent exactly whenever the reasons
together have that many distinct rows, and no reason can starve the others.

A row picked by several reasons is queued once and keeps them all: a reason walks its ranking
from the top, a row already queued gets the reason's tag and score without using its share, and
the walk stops at the reason's last new row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from .reasons import FLAG, REASONS, SLICE

DEFAULT_FRACTION = 0.02
SEPARATOR = "; "


def budget_rows(fraction: float, window_rows: int) -> int:
    """``ceil(fraction * window_rows)``; the product is rounded to 9 decimals first, so that
    0.02 x 500 is 10 rows, not 11 from a floating-point 10.000000000000002."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the budget fraction must be in (0, 1], got {fraction!r}")
    return math.ceil(round(fraction * window_rows, 9))


class _Walk:
    """The queue being filled: which rows are in it (in order) and each reason's tags
    (``{label: (score, detail)}``). The rankings are read as plain lists once: a walk of a
    million rows stays a loop over lists, not a million ``iloc`` lookups."""

    def __init__(self, picks: Mapping[str, pd.DataFrame]):
        self.picks = picks
        self.rows: list = []
        self.queued: set = set()
        self.cursor = dict.fromkeys(picks, 0)
        self.tags: dict[str, dict] = {reason: {} for reason in picks}
        self._lists = {reason: (ranking.index.tolist(), ranking["score"].tolist(), ranking["detail"].tolist())
                       for reason, ranking in picks.items()}

    def take(self, reason: str, quota: int) -> int:
        """Walk ``reason``'s ranking until ``quota`` new rows are queued (or it ends); returns how many."""
        (labels, scores, details), tags, taken = self._lists[reason], self.tags[reason], 0
        cursor = self.cursor[reason]
        while taken < quota and cursor < len(labels):
            label = labels[cursor]
            tags[label] = (scores[cursor], details[cursor])
            cursor += 1
            if label not in self.queued:
                self.queued.add(label)
                self.rows.append(label)
                taken += 1
        self.cursor[reason] = cursor
        return taken


def allocate(picks: Mapping[str, pd.DataFrame], budget: int) -> _Walk:
    """Share ``budget`` across the reasons of ``picks`` as the module docstring says."""
    unknown = set(picks) - set(REASONS)
    if unknown:
        raise ValueError(f"unknown reasons {sorted(unknown)}; known: {REASONS}")
    walk = _Walk(picks)
    left = budget - walk.take(FLAG, budget) if FLAG in picks else budget
    shared = [r for r in REASONS if r in picks and r != FLAG]
    for position, reason in enumerate(shared):
        left -= walk.take(reason, math.ceil(left / (len(shared) - position)))
    for reason in [r for r in REASONS if r in picks]:
        left -= walk.take(reason, left)
    return walk


def build_queue(window: pd.DataFrame, picks: Mapping[str, pd.DataFrame], budget: int) -> pd.DataFrame:
    """The queue: the window's picked rows (index: their window labels) in the order they
    were queued, with ``reasons``
    (the reasons joined by ``"; "``), ``reason_<name>`` (bool) and ``score_<name>`` (NaN where
    not picked for it) per reason in ``picks``, and ``slice`` (the slice a row was picked from)."""
    walk = allocate(picks, budget)
    return assemble(walk, window)


def assemble(walk: _Walk, rows: pd.DataFrame) -> pd.DataFrame:
    """The queue frame of an allocated ``walk`` (see :func:`build_queue`); ``rows`` holds at least
    the queued rows, indexed by the labels the picks use. Why apart from :func:`build_queue`: the
    Spark engine never holds the window, and fetches only the queued rows once ``walk`` names them."""
    queue = rows.loc[walk.rows].copy()
    names = [r for r in REASONS if r in walk.picks]
    for reason in names:
        tagged = walk.tags[reason]
        queue[f"reason_{reason}"] = [label in tagged for label in walk.rows]
        queue[f"score_{reason}"] = [tagged[label][0] if label in tagged else float("nan") for label in walk.rows]
    slice_tags = walk.tags.get(SLICE, {})
    queue["slice"] = [slice_tags[label][1] if label in slice_tags else "" for label in walk.rows]
    queue["reasons"] = [SEPARATOR.join(r for r in names if label in walk.tags[r]) for label in walk.rows]
    queue.insert(0, "queue_position", range(1, len(queue) + 1))
    return queue


def reason_counts(queue: pd.DataFrame) -> dict[str, int]:
    """Queue rows per reason (a row with two reasons counts for both)."""
    return {c[len("reason_"):]: int(queue[c].sum()) for c in queue.columns if c.startswith("reason_")}
