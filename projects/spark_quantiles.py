"""Exact quantiles of Spark columns, equal to ``numpy.quantile(values, q)`` (method ``linear``).

Why not Spark's own: ``approxQuantile`` is approximate by design, and ``percentile`` is exact but
keeps every distinct value of a column in one aggregation buffer (50M doubles: gigabytes). A
mining run on Spark must cut numeric columns into the same bins as the local engine, to the bit,
or it reports other slices. So: ``approxQuantile`` brackets the two order statistics numpy
interpolates between, one aggregation counts the values below each bracket and collects those inside
(a few thousand per quantile at a relative error of 1e-4), and the order statistics are picked
from them and interpolated with numpy's own formula (``_lerp`` in numpy's quantile code, gamma as
numpy computes it). Should a bracket miss (it cannot, if ``approxQuantile`` keeps its guarantee),
it is widened and the pass repeated (``_settle``). NaN and null values are left out, as the miner leaves out NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RELATIVE_ERROR = 1e-4
_WIDEN = 16  # a missed bracket's margin grows this many times over, per try


@dataclass(frozen=True)
class _Target:
    """One column's order statistics to find: ranks ``previous``/``following`` (0-based) and gamma."""

    n: int
    previous: np.ndarray
    following: np.ndarray
    gamma: np.ndarray

    @classmethod
    def of(cls, n: int, points: Sequence[float]) -> _Target:
        virtual = (n - 1) * np.asarray(points, dtype=float)  # numpy's virtual index for "linear"
        previous = np.floor(virtual)
        above = virtual >= n - 1
        previous[above] = -1  # numpy takes the last value there, and computes gamma from -1
        gamma = virtual - previous
        previous = np.where(above, n - 1, previous).astype(np.int64)
        following = np.where(above, n - 1, previous + 1).astype(np.int64)
        return cls(n, previous, following, gamma)

    def interpolate(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """numpy's ``_lerp``: ``a + (b - a) * g``, or ``b - (b - a) * (1 - g)`` where g >= 0.5."""
        diff = high - low
        return np.where(self.gamma >= 0.5, high - diff * (1 - self.gamma), low + diff * self.gamma)


def exact_quantiles(frame, columns: Sequence[str], points: Sequence[float],
                    relative_error: float = RELATIVE_ERROR) -> dict[str, np.ndarray | None]:
    """``{column: numpy.quantile(its non-NaN values, points)}`` over a Spark DataFrame; None for a
    column without a value. ``points`` must lie in [0, 1]."""
    from pyspark.sql import functions as F

    clean = frame.select([F.when(F.isnan(F.col(c).cast("double")), None).otherwise(F.col(c).cast("double")).alias(c)
                          for c in columns])
    sizes = clean.agg(*[F.count(c).alias(c) for c in columns]).first() if columns else {}
    targets = {c: _Target.of(int(sizes[c]), points) for c in columns if sizes[c]}
    result: dict[str, np.ndarray | None] = {c: None for c in columns}
    if not targets or not len(points):
        return {c: (np.zeros(0) if c in targets else None) for c in columns}
    margin = 3 * relative_error
    result.update(_settle(clean, targets, _approximate(clean, targets, margin, relative_error), margin, relative_error))
    return result


def _settle(clean, targets: dict[str, _Target], brackets: dict[str, np.ndarray], margin: float,
            relative_error: float = RELATIVE_ERROR) -> dict[str, np.ndarray]:
    """Pick the order statistics inside ``brackets``; a column whose bracket missed is bracketed
    again at a ``_WIDEN`` times wider margin (joined with the old bracket), and at a margin of
    1 or more by the whole line, so the loop ends."""
    result: dict[str, np.ndarray] = {}
    while brackets:
        found, missed = _pick(clean, targets, brackets)
        result.update(found)
        margin *= _WIDEN
        if margin >= 1:
            brackets = {c: np.tile([-np.inf, np.inf], (len(targets[c].gamma), 1)) for c in missed}
            continue
        wider = _approximate(clean, {c: targets[c] for c in missed}, margin, relative_error) if missed else {}
        brackets = {c: np.column_stack([np.minimum(wider[c][:, 0], missed[c][:, 0]), np.maximum(wider[c][:, 1], missed[c][:, 1])])
                    for c in missed}
    return result


def _approximate(clean, targets: dict[str, _Target], margin: float, relative_error: float) -> dict[str, np.ndarray]:
    """Per column, (low, high) value pairs per point from ``approxQuantile`` at ranks a margin
    below ``previous`` and above ``following``."""
    probabilities = {c: (np.clip(t.previous / t.n - margin, 0, 1), np.clip((t.following + 1) / t.n + margin, 0, 1))
                     for c, t in targets.items()}
    wanted = sorted({float(p) for low, high in probabilities.values() for p in (*low, *high)})
    values = clean.approxQuantile(list(targets), wanted, relative_error)
    brackets = {}
    for column, found in zip(targets, values):
        at = dict(zip(wanted, found))
        low, high = probabilities[column]
        brackets[column] = np.column_stack([[at[float(p)] for p in low], [at[float(p)] for p in high]])
    return brackets


def _pick(clean, targets: dict[str, _Target], brackets: dict[str, np.ndarray]):
    """One pass (one aggregation in the JVM): per column and point, the values below the bracket
    counted, those inside collected; the order statistics picked where the bracket holds them.
    Returns the quantiles found and, per column with a missed point, its brackets."""
    from pyspark.sql import functions as F

    wanted = [(column, point, float(low), float(high)) for column in brackets
              for point, (low, high) in enumerate(brackets[column])]
    aggregates = []
    for k, (column, _, low, high) in enumerate(wanted):
        value = F.col(column)
        aggregates += [F.count(F.when(value < F.lit(low), 1)).alias(f"below{k}"),
                       F.collect_list(F.when((value >= F.lit(low)) & (value <= F.lit(high)), value)).alias(f"inside{k}")]
    row = clean.agg(*aggregates).first()
    found, missed = {}, {}
    for column, bracket in brackets.items():
        target = targets[column]
        picked = np.zeros((len(bracket), 2))
        ok = np.ones(len(bracket), dtype=bool)
        for k, (name, point, _, _) in enumerate(wanted):
            if name != column:
                continue
            below, inside = int(row[f"below{k}"]), np.sort(np.asarray(row[f"inside{k}"], dtype=float))
            first, last = target.previous[point] - below, target.following[point] - below
            if first < 0 or last >= len(inside):
                ok[point] = False
            else:
                picked[point] = inside[first], inside[last]
        if ok.all():
            found[column] = target.interpolate(picked[:, 0], picked[:, 1])
        else:
            missed[column] = bracket
    return found, missed
