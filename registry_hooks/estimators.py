"""The aggregate metrics' estimators: point values for both models plus bootstrap replicates
(or a large-sample standard error) of their difference.

f1 / precision / recall / balanced_accuracy depend only on the table of (label, baseline
prediction, candidate prediction) cells, so a resample of n rows is exactly a multinomial draw
over the cells and costs nothing per example. roc_auc is resampled per example while
``n * n_resamples <= EXACT_BOOTSTRAP_MAX_DRAWS``; above that (where the bootstrap would take
minutes and its distribution is normal anyway) it uses DeLong's paired test on per-example
placement values.

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
    se: float | None = None  # large-sample standard error of candidate - baseline


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
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


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


def confusion_metric(
    per_class: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], balanced: bool = False
) -> Estimator:
    """Estimator for a metric of per-class (true positives, support, predicted).

    Rows are reduced to cells (label, baseline prediction, candidate prediction); a bootstrap
    resample of n rows is exactly a multinomial draw of n over the observed cells, so its cost
    does not depend on n. For a binary label set the metric is for the positive class (balanced
    accuracy is symmetric and always averages); otherwise it is the macro average over the
    classes present in the resample, as in scikit-learn. Every value must belong to the label
    set (checked by ``compare``).
    """

    def estimate(outcomes: PairedOutcomes, labels: LabelSet, n_resamples: int, rng: np.random.Generator) -> Estimate:
        classes, k = labels.classes, len(labels.classes)
        hits = np.flatnonzero(classes == labels.positive)
        # -1: no class is the positive one (a one-class set), so the binary metric is 0 throughout
        positive = None if balanced or not labels.binary else int(hits[0]) if hits.size else -1
        columns = (outcomes.label, outcomes.baseline.prediction, outcomes.candidate.prediction)
        codes = [np.searchsorted(classes, c) for c in columns]
        cells, counts = np.unique((codes[0] * k + codes[1]) * k + codes[2], return_counts=True)
        truth = cells // (k * k)
        by_truth = _Groups(truth)
        models = [(_Groups(pred), (pred == truth).astype(float)) for pred in ((cells // k) % k, cells % k)]

        def metric(weights: np.ndarray) -> np.ndarray:
            """(resamples, 2) metric of both models from cell weights."""
            support = by_truth.per_class(weights, k)
            result = []
            for by_prediction, hit in models:
                predicted = by_prediction.per_class(weights, k)
                value = per_class(by_truth.per_class(weights * hit, k), support, predicted)
                if positive is None:
                    present = support > 0 if balanced else support + predicted > 0
                    result.append((value * present).sum(axis=1) / present.sum(axis=1))
                else:
                    result.append(value[:, positive] if positive >= 0 else np.zeros(len(weights)))
            return np.column_stack(result)

        n = len(outcomes)
        point = metric(counts[None, :].astype(float))[0]
        rows = max(1, _CHUNK_ELEMENTS // len(cells))
        replicates = np.concatenate(
            [
                metric(rng.multinomial(n, counts / n, size=min(rows, n_resamples - done)).astype(float))
                for done in range(0, n_resamples, rows)
            ]
        )
        return Estimate(float(point[0]), float(point[1]), replicates=replicates)

    return estimate


# Per-class arguments: (true positives, support, predicted count).
f1 = confusion_metric(lambda tp, t, p: _ratio(2 * tp, t + p))
precision = confusion_metric(lambda tp, t, p: _ratio(tp, p))
recall = confusion_metric(lambda tp, t, p: _ratio(tp, t))
balanced_accuracy = confusion_metric(lambda tp, t, p: _ratio(tp, t), balanced=True)


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
