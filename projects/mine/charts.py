"""One chart per reason, for the mining run's artifacts.

Why these charts: a queue is a sample of a ranking, and what a person reviewing the run needs to
see is where the cut fell: for each reason, the scores of every row it could have picked, with
the ones it got into the queue on top. For slices the question is different (is the slice really
worse?), so that chart shows each reported slice's error rate against the rest's.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a training box or in CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .reasons import SLICE  # noqa: E402
from .slices import SliceSearch  # noqa: E402


def reason_chart(reason: str, picks: pd.DataFrame, queued: pd.Index, path: Path, ranked: int | None = None) -> Path:
    """Histogram of ``reason``'s scores over the rows it ranked, the queued ones on top; ``ranked``
    says how many it ranked when ``picks`` holds only the first of them (the Spark engine's)."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    if picks.empty:
        axis.text(0.5, 0.5, f"no rows for '{reason}' in this window", ha="center", va="center")
        axis.set_axis_off()
    else:
        scores = picks["score"]
        bins = min(40, max(5, len(scores.unique())))
        shown = f"first {len(scores):,} of {ranked:,}" if ranked is not None and ranked > len(scores) else f"{len(scores):,}"
        axis.hist(scores, bins=bins, color="0.75", label=f"candidates ({shown})")
        axis.hist(scores[scores.index.isin(queued)], bins=bins, range=(scores.min(), scores.max()), color="tab:red",
                  label=f"queued ({int(scores.index.isin(queued).sum())})")
        axis.set_xlabel(f"{reason} score (higher: more wanted)")
        axis.set_ylabel("rows")
        axis.legend()
    axis.set_title(f"reason: {reason}")
    return _save(figure, path)


def slice_chart(search: SliceSearch, path: Path, top: int = 15) -> Path:
    """Each reported slice's error rate (its support in the label) against the rest's rate."""
    figure, axis = plt.subplots(figsize=(7, 0.4 * max(3, min(top, len(search.slices))) + 1.5))
    shown = search.slices[:top]
    if not shown:
        axis.text(0.5, 0.5, f"no slice passed the test ({search.tested} tested, basis {search.basis})", ha="center", va="center")
        axis.set_axis_off()
    else:
        names = [f"{s} (n={s.support}, q={s.q_value:.1e})" for s in shown][::-1]
        axis.barh(names, [s.error_rate for s in shown][::-1], color="tab:red", label="slice")
        axis.scatter([s.rest_rate for s in shown][::-1], names, color="black", zorder=3, label="rest of the window")
        axis.set_xlabel(f"error rate (basis: {search.basis})")
        axis.legend(loc="lower right")
    axis.set_title(f"reason: {SLICE} ({len(search.slices)} of {search.tested} slices reported)")
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
