"""One window mined: the slice search on the champion's rows, every reason, the queue.

Pure pandas/numpy/scipy, no MLflow: the entry point (``projects.mine.__main__``) reads the log,
the registry and the feedback and hands the results here, so everything that decides which rows
a person labels is tested on constructed windows (``tests/unit/test_mine_*.py``).

Why the slice search sees only the champion's rows: a slice is a claim about one model (the one
serving now); rows a candidate or an older version served would mix their errors into it. The
other reasons rank rows of every model in the window: a row is worth labelling whoever served it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from registry_hooks.inference_records import MODEL_RUN_ID

from . import reasons
from .queue import DEFAULT_FRACTION, budget_rows, build_queue
from .slices import UNCERTAIN, SliceOptions, SliceSearch, find_slices


@dataclass(frozen=True)
class Mined:
    """A window's queue and how it came about."""

    queue: pd.DataFrame
    search: SliceSearch
    picks: dict[str, pd.DataFrame]  # each reason's ranking (the charts show what was left out)
    budget: int
    window_rows: int
    champion_rows: int
    candidates: dict[str, int] = field(default_factory=dict)  # rows each reason ranked; its picks may hold
    # fewer: the Spark engine brings back only the first 2 x budget (all the queue can use)

    def ranked(self, reason: str) -> int:
        return self.candidates.get(reason, len(self.picks.get(reason, ())))


def mine_window(window: pd.DataFrame, *, champion_run_id: str | None = None, candidate: pd.DataFrame | None = None,
                fraction: float = DEFAULT_FRACTION, options: SliceOptions = SliceOptions(), seed: int = 0,
                selection: str = "reasons") -> Mined:
    """Mine ``window`` (the log's rows with ``label``/``flag`` attached, see
    ``projects.mine.feedback.attach``); ``champion_run_id`` None searches slices on every row;
    ``candidate`` is the shadow-scored frame for the disagreement reason (None: no candidate).
    ``selection`` "random" spends the budget on unlabelled rows at random instead of by reason
    (the slices are still searched and reported, but queue no row)."""
    if selection not in reasons.SELECTIONS:
        raise ValueError(f"selection must be one of {reasons.SELECTIONS}, got {selection!r}")
    window = window.reset_index(drop=True)
    if window.empty:
        return Mined(window.assign(queue_position=[], reasons=[]), SliceSearch(UNCERTAIN, 0, 0, 0), {}, 0, 0, 0)
    champion = window if champion_run_id is None else window[window[MODEL_RUN_ID] == champion_run_id]
    search = find_slices(champion, options)
    picks = {reasons.RANDOM: reasons.random_rows(window, seed)} if selection == "random" else {
        reasons.FLAG: reasons.human_flags(window, seed),
        reasons.SLICE: reasons.slice_rows(window, search.slices, seed),
        reasons.LOW_CONFIDENCE: reasons.lowest_confidence(window, seed),
        reasons.DISAGREEMENT: reasons.disagreement(window, candidate, seed),
        reasons.HIGH_LOSS: reasons.highest_loss(window, seed),
    }
    budget = budget_rows(fraction, len(window)) if len(window) else 0
    return Mined(build_queue(window, picks, budget), search, picks, budget, len(window), len(champion))
