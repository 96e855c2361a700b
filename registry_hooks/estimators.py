"""The aggregate metrics' estimators: point values for both models plus what their test needs —
a permutation distribution, bootstrap replicates or a large-sample standard error.

f1 / precision / recall / balanced_accuracy depend only on the table of (label, baseline
prediction, candidate prediction) cells (``CellTable``). They are tested by a studentized paired
permutation test: exchanging the two models' predictions on a row is what "equally good" allows,
so the test is exact when the models are exchangeable (as McNemar's is for accuracy), and
studentizing keeps it valid in large samples when they are merely equal on the metric (Chung &
Romano 2013). Their percentile bootstrap was not: equal models were refused by a precision or
balanced-accuracy guard 6-7 % of the time at n = 100 (nominal 5 %).

roc_auc is resampled per example while ``n * n_resamples <= EXACT_BOOTSTRAP_MAX_DRAWS``; above
that (where the bootstrap would take minutes and its distribution is normal anyway) it uses
DeLong's paired test on per-example placement values.

The class set and the positive class are fixed by the caller (``LabelSet``), never inferred from
what the models predicted: a stray predicted class must not turn a binary f1 into a macro average.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from registry_hooks.outcomes import ModelOutcomes, PairedOutcomes

#: Above this many resampled rows (``n * n_resamples``), roc_auc and rmse use
#: their large-sample z-test.  Their per-example bootstrap costs ~50-70 ns
#: (roc_auc) and ~10 ns (rmse) per row and resample: at most ~1.5 s here.
EXACT_BOOTSTRAP_MAX_DRAWS = 20_000_000
_CHUNK_ELEMENTS = 2_000_000  # bounds the memory of one block of resamples


@dataclass(frozen=True)
class Estimate:
    """An aggregate metric for both models, plus how uncertain the difference is."""

    baseline: float
    candidate: float
    replicates: np.ndarray | None = None  # (n_resamples, 2) bootstrap (baseline, candidate) values
    se: float | None = None  # (large-sample) standard error of candidate - baseline
    null: np.ndarray | None = None  # permutation distribution of (candidate - baseline) / se


@dataclass(frozen=True, eq=False)
class LabelSet:
    """The classes a classification metric is defined over, and the positive one.

    ``positive`` is the class binary f1 / precision / recall and roc_auc are about; with more
    than two classes f1 / precision / recall are macro averages and ``positive`` only serves
    roc_auc (one class against the rest).
    """

    classes: np.ndarray
    positive: Any

    @property
    def binary(self) -> bool:
        return len(self.classes) <= 2


Estimator = Callable[[PairedOutcomes, LabelSet, int, np.random.Generator], Estimate]


def finite(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return array


def scaled_errors(label: np.ndarray, *models: ModelOutcomes) -> tuple[list[np.ndarray], float]:
    """Each model's errors divided by one power-of-two scale, and that scale.

    Squaring an error above ~1.3e154 overflows to infinity (and a difference of infinities is
    NaN); errors scaled to at most 1 in magnitude square safely, and a power of two scales
    exactly. Test statistics are scale-free; reported values are multiplied back.
    """
    truth = finite(label, "label")
    errors = [finite(m.prediction, "prediction") - truth for m in models]
    if not all(np.isfinite(e).all() for e in errors):  # finite inputs whose difference overflows
        errors = [finite(m.prediction, "prediction") / 2 - truth / 2 for m in models]
        extra = 2.0
    else:
        extra = 1.0
    largest = max(float(np.abs(e).max(initial=0.0)) for e in errors)
    scale = math.ldexp(1.0, math.frexp(largest)[1]) if largest > 0 else 1.0
    return [e / scale for e in errors], scale * extra


# ------------------------------------------------------- contingency-table metrics


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with 0/0 -> 0 (scikit-learn's zero_division=0)."""
    numerator = np.broadcast_to(np.asarray(numerator, dtype=float), np.shape(denominator))
    return np.divide(numerator, denominator, out=np.zeros(np.shape(denominator)), where=denominator > 0)


class _Groups:
    """Rows with equal keys, grouped by one stable sort so that every resample
    only has to sum (the sort is the expensive part)."""

    def __init__(self, keys: np.ndarray) -> None:
        self.order = np.argsort(keys, kind="stable")
        ranked = keys[self.order]
        self.starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        self.keys = ranked[self.starts]
        self.sizes = np.diff(np.r_[self.starts, len(keys)])

    def sums(self, weights: np.ndarray) -> np.ndarray:
        """Per-group sums of the last axis of ``weights``, groups ascending by key."""
        return np.add.reduceat(weights[..., self.order], self.starts, axis=-1)

    def per_class(self, weights: np.ndarray, n_classes: int) -> np.ndarray:
        """Sums scattered to one column per class code 0..n_classes-1."""
        totals = np.zeros((len(weights), n_classes))
        totals[:, self.keys] = self.sums(weights)
        return totals


#: A per-class metric of (true positives, support, predicted count), elementwise over classes:
#: its value and its three partial derivatives (for the delta-method standard error).
PerClass = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _f1(tp: np.ndarray, t: np.ndarray, p: np.ndarray):
    value = _ratio(2 * tp, t + p)
    return value, _ratio(2.0, t + p), -_ratio(value, t + p), -_ratio(value, t + p)


def _precision(tp: np.ndarray, t: np.ndarray, p: np.ndarray):
    value = _ratio(tp, p)
    return value, _ratio(1.0, p), np.zeros_like(value), -_ratio(value, p)


def _recall(tp: np.ndarray, t: np.ndarray, p: np.ndarray):
    value = _ratio(tp, t)
    return value, _ratio(1.0, t), -_ratio(value, t), np.zeros_like(value)


class CellTable:
    """The evaluation reduced to cells (label, baseline prediction, candidate prediction), with
    each cell's mirror (the two predictions exchanged), for one metric over one label set.

    A metric of per-class totals is a function of the cell counts alone, so both resampling
    schemes cost nothing per example: a paired permutation (exchanging the two models'
    predictions on each row with probability 1/2) splits each cell's count binomially between
    the cell and its mirror. The standard error of the difference is the delta method's: the
    metric is homogeneous of degree 0 in the counts, so Var ≈ Σ_c w_c (∂Δ/∂w_c)².
    """

    def __init__(self, outcomes: PairedOutcomes, labels: LabelSet, per_class: PerClass, balanced: bool) -> None:
        classes, k = labels.classes, len(labels.classes)
        self.k, self.per_class, self.balanced = k, per_class, balanced
        hits = np.flatnonzero(classes == labels.positive)
        # -1: no class is the positive one (a one-class set), so the binary metric is 0 throughout
        self.positive = None if balanced or not labels.binary else int(hits[0]) if hits.size else -1
        truth, base, cand = (np.searchsorted(classes, c) for c in
                             (outcomes.label, outcomes.baseline.prediction, outcomes.candidate.prediction))
        observed, counts = np.unique((truth * k + base) * k + cand, return_counts=True)
        mirrors = (observed // (k * k) * k + observed % k) * k + observed // k % k
        self.cells = np.union1d(observed, mirrors)
        self.counts = np.zeros(len(self.cells))
        self.counts[np.searchsorted(self.cells, observed)] = counts
        self.mirror = np.searchsorted(self.cells, (self.cells // (k * k) * k + self.cells % k) * k
                                      + self.cells // k % k)
        self.truth = self.cells // (k * k)
        self.by_truth = _Groups(self.truth)
        self.models = [(pred, _Groups(pred), (pred == self.truth).astype(float))
                       for pred in (self.cells // k % k, self.cells % k)]

    def _one_model(self, weights: np.ndarray, model: int) -> tuple[np.ndarray, np.ndarray]:
        """(value, gradient) of one model's metric: (B,) and (B, cells)."""
        pred, by_prediction, hit = self.models[model]
        support = self.by_truth.per_class(weights, self.k)
        predicted = by_prediction.per_class(weights, self.k)
        value, d_tp, d_t, d_p = self.per_class(self.by_truth.per_class(weights * hit, self.k), support, predicted)
        if self.positive is None:  # macro average over the classes present, as scikit-learn
            present = (support > 0 if self.balanced else support + predicted > 0).astype(float)
            share = present / np.maximum(present.sum(axis=1, keepdims=True), 1.0)
        else:
            share = np.zeros_like(value)
            if self.positive >= 0:
                share[:, self.positive] = 1.0
        gradient = (share * d_t)[:, self.truth] + hit * (share * d_tp)[:, self.truth] + (share * d_p)[:, pred]
        return (share * value).sum(axis=1), gradient

    def values(self, weights: np.ndarray) -> np.ndarray:
        """(B, 2): both models' metric for each row of cell ``weights``."""
        return self.values_and_se(weights)[0]

    def difference(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidate − baseline and its delta-method standard error, per row of ``weights``."""
        values, se = self.values_and_se(weights)
        return values[:, 1] - values[:, 0], se

    def values_and_se(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 2) values of both models and the (B,) standard error of their difference."""
        (base, g_base), (cand, g_cand) = (self._one_model(weights, m) for m in (0, 1))
        g = g_cand - g_base
        n = weights.sum(axis=1)
        variance = (weights * g * g).sum(axis=1) - (weights * g).sum(axis=1) ** 2 / np.maximum(n, 1.0)
        return np.column_stack([base, cand]), np.sqrt(np.maximum(variance, 0.0))

    def permuted(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """(size, cells) weights of random paired permutations of the rows."""
        swapped = rng.binomial(np.broadcast_to(self.counts.astype(np.int64), (size, len(self.cells))), 0.5)
        return self.counts - swapped + swapped[:, self.mirror]

    def studentized_null(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """The permutation distribution of (candidate − baseline) / se: 0 where a permutation
        leaves both at 0, ±inf where it has a difference but no spread."""
        blocks, rows = [], max(1, _CHUNK_ELEMENTS // len(self.cells))
        for done in range(0, size, rows):
            diff, se = self.difference(self.permuted(rng, min(rows, size - done)).astype(float))
            with np.errstate(divide="ignore", invalid="ignore"):
                blocks.append(np.where(se > 0, diff / se, np.sign(diff) * np.inf * (diff != 0)))
        return np.nan_to_num(np.concatenate(blocks), nan=0.0, posinf=np.inf, neginf=-np.inf)


def confusion_metric(per_class: PerClass, balanced: bool = False) -> Estimator:
    """Estimator for a metric of per-class (true positives, support, predicted): both models'
    values, the delta-method standard error of their difference, and the permutation
    distribution of the studentized difference (``CellTable``).

    For a binary label set the metric is for the positive class (balanced accuracy is symmetric
    and always averages); otherwise it is the macro average over the classes present, as in
    scikit-learn. Every value must belong to the label set (checked by ``compare``).
    """

    def estimate(outcomes: PairedOutcomes, labels: LabelSet, n_resamples: int, rng: np.random.Generator) -> Estimate:
        table = CellTable(outcomes, labels, per_class, balanced)
        values, se = table.values_and_se(table.counts[None, :])
        return Estimate(float(values[0, 0]), float(values[0, 1]), se=float(se[0]),
                        null=table.studentized_null(rng, n_resamples))

    return estimate


f1 = confusion_metric(_f1)
precision = confusion_metric(_precision)
recall = confusion_metric(_recall)
balanced_accuracy = confusion_metric(_recall, balanced=True)


# ------------------------------------------------------------------ roc_auc and rmse


def _multinomial_counts(rng: np.random.Generator, rows: int, m: int) -> np.ndarray:
    """How often each of m items is drawn in each of ``rows`` resamples of size m."""
    draws = rng.integers(0, m, size=(rows, m)) + (np.arange(rows) * m)[:, None]
    return np.bincount(draws.ravel(), minlength=rows * m).reshape(rows, m)


class _Ranking:
    """One model's scores in tie groups, sorted once and reused by every resample."""

    def __init__(self, score: np.ndarray, positive: np.ndarray) -> None:
        self.groups = _Groups(score)
        self.positive = positive

    def _weights(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative weight of each tie group, ascending by score."""
        pos = self.groups.sums(weights * self.positive)
        return pos, self.groups.sums(weights) - pos

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """Weighted AUC (ties count 1/2), one per row of ``weights``."""
        pos, neg = self._weights(weights)
        below = np.cumsum(neg, axis=-1) - neg
        return (pos * (below + 0.5 * neg)).sum(axis=-1) / (pos.sum(axis=-1) * neg.sum(axis=-1))

    def placements(self) -> np.ndarray:
        """DeLong's structural components per row, in the original row order:
        for a positive, the share of negatives scored below it; for a negative,
        the share of positives scored above it (ties count 1/2)."""
        pos, neg = self._weights(np.ones(len(self.positive)))
        of_positive = np.repeat((np.cumsum(neg) - 0.5 * neg) / neg.sum(), self.groups.sizes)
        of_negative = np.repeat((pos.sum() - np.cumsum(pos) + 0.5 * pos) / pos.sum(), self.groups.sizes)
        result = np.empty(len(self.positive))
        result[self.groups.order] = np.where(self.positive[self.groups.order], of_positive, of_negative)
        return result


def roc_auc(outcomes: PairedOutcomes, labels: LabelSet, n_resamples: int, rng: np.random.Generator) -> Estimate:
    """AUC of ``score`` for ``label == labels.positive`` against all other labels."""
    positive = outcomes.label == labels.positive
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc is undefined: {n_pos} rows have label {labels.positive!r} and {n_neg} do not")
    rankings = [_Ranking(finite(m.score, "score"), positive) for m in (outcomes.baseline, outcomes.candidate)]
    point = [float(r.auc(np.ones(len(positive)))) for r in rankings]
    n = len(positive)
    if n * n_resamples <= EXACT_BOOTSTRAP_MAX_DRAWS:
        index_pos, index_neg = np.flatnonzero(positive), np.flatnonzero(~positive)
        blocks = []
        rows = max(1, _CHUNK_ELEMENTS // n)
        for done in range(0, n_resamples, rows):
            chunk = min(rows, n_resamples - done)
            weights = np.zeros((chunk, n))
            weights[:, index_pos] = _multinomial_counts(rng, chunk, n_pos)
            weights[:, index_neg] = _multinomial_counts(rng, chunk, n_neg)
            blocks.append(np.column_stack([r.auc(weights) for r in rankings]))
        return Estimate(point[0], point[1], replicates=np.concatenate(blocks))
    if min(n_pos, n_neg) < 2:
        return Estimate(point[0], point[1], se=math.inf)
    delta = rankings[1].placements() - rankings[0].placements()
    variance = delta[positive].var(ddof=1) / n_pos + delta[~positive].var(ddof=1) / n_neg
    return Estimate(point[0], point[1], se=math.sqrt(variance))
