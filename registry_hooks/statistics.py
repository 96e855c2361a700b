"""Paired statistical evidence that a candidate model beats the production model.

The promotion gate must not promote a model because it looked better on one
evaluation set by chance.  Both models are scored on the *same* rows, so every
test here is paired: the per-example noise shared by the two models cancels,
which makes the tests far more powerful than comparing two independent scores.

For each metric ``compare`` answers two one-sided questions:

* ``p_better``: evidence that the candidate improves the metric by more than
  ``margin`` (the promotion criterion for the primary metric);
* ``p_worse``: evidence that the candidate is worse by more than ``tolerance``
  (the non-inferiority guard for secondary metrics and slices).

Tests by metric family:

* mean metrics (the metric is an average of per-example values): paired z-test
  on the per-example differences.  For accuracy / error_rate, a one-sided test
  whose threshold is exactly 0 uses the exact mid-p McNemar test instead.
* aggregate metrics (f1, precision, recall, balanced_accuracy, roc_auc, rmse):
  paired percentile bootstrap.  f1 / precision / recall / balanced_accuracy only
  depend on the table of (label, baseline prediction, candidate prediction)
  cells, so a resample of n rows is exactly a multinomial draw over the cells
  and costs nothing per example.  roc_auc and rmse are resampled per example
  while ``n * n_resamples <= EXACT_BOOTSTRAP_MAX_DRAWS``; above that (where the
  bootstrap would take minutes and its distribution is normal anyway) they use
  the large-sample z-test on per-example influence values: DeLong's paired test
  for roc_auc, the delta method for rmse.

Conventions for degenerate data, chosen so the answer is defined and never
promotes or blocks on no evidence:

* a threshold-test statistic with zero variance (e.g. identical models) is
  decided by the point estimate: a p-value is 1 when the estimate lies in the
  null hypothesis (boundary included) and 0 otherwise.  Identical models thus
  get ``improvement == 0``, ``p_better == 1`` for ``margin >= 0`` and
  ``p_worse == 1`` for any ``tolerance >= 0``: they are neither better nor
  worse.  Caution: constant non-zero differences on a handful of rows are also
  "decided"; the gate must enforce its own minimum sample size.
* a variance that cannot be estimated (a single row, or a single example of one
  class for DeLong) gives p-values of 1 and an infinite interval.
* McNemar with no discordant pairs gives p-values of 1.
* a bootstrap resample in which a precision/recall/f1 ratio is 0/0 scores 0
  (scikit-learn's ``zero_division=0``), and macro averages only cover the
  classes present in that resample, as scikit-learn does.  roc_auc is
  resampled within each class (stratified, as in pROC), so every resample has
  both classes.

Only numpy, scipy.special and the standard library are imported: this module
runs inside every MLflow server worker, and scipy.stats alone costs ~50 MB each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from scipy import special

__all__ = [
    "EXACT_BOOTSTRAP_MAX_DRAWS",
    "METRICS",
    "Comparison",
    "MetricSpec",
    "ModelOutcomes",
    "PairedOutcomes",
    "compare",
    "holm",
]

#: Above this many resampled rows (``n * n_resamples``), roc_auc and rmse use
#: their large-sample z-test.  Their per-example bootstrap costs ~50-70 ns
#: (roc_auc) and ~10 ns (rmse) per row and resample: at most ~1.5 s here.
EXACT_BOOTSTRAP_MAX_DRAWS = 20_000_000

_LOG_LOSS_FLOOR = 1e-15
_CHUNK_ELEMENTS = 2_000_000  # bounds the memory of one block of resamples
_NORMAL = NormalDist()


@dataclass(frozen=True, eq=False)  # eq=False: "==" on arrays is elementwise, not a bool
class ModelOutcomes:
    """What one model produced for each evaluation row (arrays of equal length)."""

    prediction: np.ndarray
    proba_label: np.ndarray | None = None
    score: np.ndarray | None = None

    def __post_init__(self) -> None:
        lengths = {}
        for f in fields(self):
            if (value := getattr(self, f.name)) is not None:
                array = np.asarray(value)
                if array.ndim != 1:
                    raise ValueError(f"ModelOutcomes.{f.name} must be 1-D, got shape {array.shape}")
                object.__setattr__(self, f.name, array)
                lengths[f.name] = len(array)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"ModelOutcomes arrays differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.prediction)

    def subset(self, index: np.ndarray) -> ModelOutcomes:
        """The same model restricted to the rows selected by ``index``."""
        return ModelOutcomes(
            *(None if (v := getattr(self, f.name)) is None else v[index] for f in fields(self))
        )


@dataclass(frozen=True, eq=False)
class PairedOutcomes:
    """Two models scored on the same rows: the unit every paired test needs."""

    label: np.ndarray
    baseline: ModelOutcomes
    candidate: ModelOutcomes

    def __post_init__(self) -> None:
        label = np.asarray(self.label)
        if label.ndim != 1:
            raise ValueError(f"label must be 1-D, got shape {label.shape}")
        object.__setattr__(self, "label", label)
        if not len(self.baseline) == len(self.candidate) == len(label):
            raise ValueError(
                f"rows differ: label {len(label)}, baseline {len(self.baseline)}, "
                f"candidate {len(self.candidate)}; both models must be scored on the same rows"
            )

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, mask: np.ndarray) -> PairedOutcomes:
        """The rows of a slice (boolean mask or integer indices), still paired."""
        index = np.asarray(mask)
        if index.dtype == bool and index.shape != self.label.shape:
            raise ValueError(f"mask has shape {index.shape}, outcomes have {len(self)} rows")
        return PairedOutcomes(self.label[index], self.baseline.subset(index), self.candidate.subset(index))


@dataclass(frozen=True)
class Comparison:
    """Evidence about ``improvement`` (> 0 means the candidate is better).

    ``method`` names the test behind ``p_better``.  For accuracy / error_rate,
    ``p_worse`` uses McNemar when ``tolerance == 0`` and the paired z-test
    otherwise, whatever ``method`` says, because McNemar's conditional test only
    exists for a zero difference; McNemar gives no interval, so the CI is then
    the paired-z (Wald) one.  For roc_auc and rmse, "paired-z" means DeLong's
    test and the delta method respectively.  ``margin``, ``tolerance`` and
    ``confidence`` are recorded because the p-values and the CI mean nothing
    without them.
    """

    metric: str
    method: Literal["mcnemar-midp", "paired-z", "paired-bootstrap"]
    n: int
    baseline: float
    candidate: float
    improvement: float
    ci_low: float
    ci_high: float
    p_better: float
    p_worse: float
    margin: float
    tolerance: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for the audit log: 6 significant digits, non-finite -> None."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        return {key: _json_float(v) if isinstance(v, float) else v for key, v in record.items()}


def _json_float(value: float) -> float | None:
    return float(f"{value:.6g}") if math.isfinite(value) else None


@dataclass(frozen=True)
class _Estimate:
    """An aggregate metric for both models, plus how uncertain the difference is."""

    baseline: float
    candidate: float
    replicates: np.ndarray | None = None  # (n_resamples, 2) bootstrap (baseline, candidate) values
    se: float | None = None  # large-sample standard error of candidate - baseline


PerExample = Callable[[np.ndarray, ModelOutcomes], np.ndarray]
Estimator = Callable[[PairedOutcomes, Any, int, np.random.Generator], _Estimate]


@dataclass(frozen=True)
class MetricSpec:
    """How a metric is computed and tested; ``requires`` lists the optional
    ``ModelOutcomes`` fields it reads, so a missing one is reported by name."""

    name: str
    higher_is_better: bool
    family: Literal["mean", "aggregate"]
    requires: tuple[str, ...] = ()
    per_example: PerExample | None = None  # mean metrics
    estimate: Estimator | None = None  # aggregate metrics
    mcnemar: bool = False  # per-example values are 0/1, so McNemar applies

    def check(self, outcomes: PairedOutcomes) -> None:
        """Fail early, naming the missing field, instead of deep inside numpy."""
        for which in ("baseline", "candidate"):
            for name in self.requires:
                if getattr(getattr(outcomes, which), name) is None:
                    raise ValueError(
                        f"metric {self.name!r} needs ModelOutcomes.{name}, but the {which} model has none"
                    )


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return array


def _correct(label: np.ndarray, model: ModelOutcomes) -> np.ndarray:
    return (model.prediction == label).astype(float)


def _wrong(label: np.ndarray, model: ModelOutcomes) -> np.ndarray:
    return (model.prediction != label).astype(float)


def _log_loss(label: np.ndarray, model: ModelOutcomes) -> np.ndarray:
    return -np.log(np.clip(_finite(model.proba_label, "proba_label"), _LOG_LOSS_FLOOR, 1.0))


def _errors(label: np.ndarray, model: ModelOutcomes) -> np.ndarray:
    return _finite(model.prediction, "prediction") - _finite(label, "label")


# ------------------------------------------------------------------- inference


def _normal_inference(
    improvement: float, se: float, margin: float, tolerance: float, confidence: float
) -> tuple[float, float, float, float]:
    """Two-sided CI and the two one-sided p-values of a normal test."""
    if not math.isfinite(se):
        return -math.inf, math.inf, 1.0, 1.0
    if se == 0.0:
        return improvement, improvement, float(improvement <= margin), float(improvement >= -tolerance)
    half_width = _NORMAL.inv_cdf(0.5 + confidence / 2) * se
    return (
        improvement - half_width,
        improvement + half_width,
        _NORMAL.cdf((margin - improvement) / se),
        _NORMAL.cdf((improvement + tolerance) / se),
    )


def _bootstrap_inference(
    replicates: np.ndarray, margin: float, tolerance: float, confidence: float
) -> tuple[float, float, float, float]:
    """Percentile CI and one-sided bootstrap p-values of the improvement.

    The +1 in numerator and denominator (Davison & Hinkley) keeps a p-value
    from being 0 on finitely many resamples; ties with the threshold count as
    the null, so identical models get p = 1.
    """
    alpha = 1.0 - confidence
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    total = replicates.size + 1
    p_better = (1 + np.count_nonzero(replicates <= margin)) / total
    p_worse = (1 + np.count_nonzero(replicates >= -tolerance)) / total
    return float(low), float(high), float(p_better), float(p_worse)


def _mcnemar_midp(wins: int, losses: int) -> float:
    """One-sided exact mid-p that wins outnumber losses among discordant pairs.

    Under H0 wins ~ Binomial(wins + losses, 1/2); mid-p = P(W > wins) +
    P(W = wins) / 2, which is less conservative than the exact test and keeps
    close to the nominal level.  No discordant pairs: no evidence, p = 1.
    """
    m = wins + losses
    if m == 0:
        return 1.0
    log_pmf = special.gammaln(m + 1) - special.gammaln(wins + 1) - special.gammaln(losses + 1) - m * math.log(2)
    return float(special.bdtrc(wins, m, 0.5) + 0.5 * math.exp(log_pmf))


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


def _confusion_metric(
    per_class: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], balanced: bool = False
) -> Estimator:
    """Estimator for a metric of per-class (true positives, support, predicted).

    Rows are reduced to cells (label, baseline prediction, candidate
    prediction); a bootstrap resample of n rows is exactly a multinomial draw of
    n over the observed cells, so its cost does not depend on n.  With at most
    two classes the metric is for ``positive_label`` (balanced accuracy is
    symmetric and always averages); otherwise it is the macro average over the
    classes present, as in scikit-learn.  The class set is the union over the
    label and both models, so both models are scored the same way.
    """

    def estimate(
        outcomes: PairedOutcomes, positive_label: Any, n_resamples: int, rng: np.random.Generator
    ) -> _Estimate:
        columns = (outcomes.label, outcomes.baseline.prediction, outcomes.candidate.prediction)
        classes = np.unique(np.concatenate([np.unique(c) for c in columns]))
        k = len(classes)
        positive: int | None = None
        if not balanced and k <= 2:
            hits = np.flatnonzero(classes == positive_label)
            if hits.size == 0 and k == 2:
                raise ValueError(f"positive_label={positive_label!r} is not one of the classes {classes.tolist()}")
            positive = int(hits[0]) if hits.size else -1  # -1: no row has the positive class, metric is 0
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
        return _Estimate(float(point[0]), float(point[1]), replicates=replicates)

    return estimate


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


def _roc_auc(
    outcomes: PairedOutcomes, positive_label: Any, n_resamples: int, rng: np.random.Generator
) -> _Estimate:
    """AUC of ``score`` for ``label == positive_label`` against all other labels."""
    positive = outcomes.label == positive_label
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc is undefined: {n_pos} rows have label {positive_label!r} and {n_neg} do not")
    rankings = [_Ranking(_finite(m.score, "score"), positive) for m in (outcomes.baseline, outcomes.candidate)]
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
        return _Estimate(point[0], point[1], replicates=np.concatenate(blocks))
    if min(n_pos, n_neg) < 2:
        return _Estimate(point[0], point[1], se=math.inf)
    delta = rankings[1].placements() - rankings[0].placements()
    variance = delta[positive].var(ddof=1) / n_pos + delta[~positive].var(ddof=1) / n_neg
    return _Estimate(point[0], point[1], se=math.sqrt(variance))


def _rmse(
    outcomes: PairedOutcomes, positive_label: Any, n_resamples: int, rng: np.random.Generator
) -> _Estimate:
    """Root mean squared error of both models; resampling the squared errors
    jointly keeps the pairing."""
    squared = np.column_stack([_errors(outcomes.label, m) ** 2 for m in (outcomes.baseline, outcomes.candidate)])
    n = len(squared)
    point = np.sqrt(squared.mean(axis=0))
    if n * n_resamples <= EXACT_BOOTSTRAP_MAX_DRAWS:
        rows = max(1, _CHUNK_ELEMENTS // n)
        blocks = []
        for done in range(0, n_resamples, rows):
            draws = rng.integers(0, n, size=(min(rows, n_resamples - done), n))  # same rows for both models
            blocks.append(np.sqrt(np.column_stack([column[draws].mean(axis=1) for column in squared.T])))
        return _Estimate(float(point[0]), float(point[1]), replicates=np.concatenate(blocks))
    if n < 2:
        return _Estimate(float(point[0]), float(point[1]), se=math.inf)
    # Delta method: d sqrt(m) = dm / (2 sqrt(m)); a model with rmse 0 has no
    # squared error to resample, so its term is 0.
    slopes = np.divide(0.5, point, out=np.zeros(2), where=point > 0)
    influence = squared @ (slopes * [-1.0, 1.0])
    return _Estimate(float(point[0]), float(point[1]), se=math.sqrt(influence.var(ddof=1) / n))


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("accuracy", True, "mean", per_example=_correct, mcnemar=True),
        MetricSpec("error_rate", False, "mean", per_example=_wrong, mcnemar=True),
        MetricSpec("log_loss", False, "mean", ("proba_label",), per_example=_log_loss),
        MetricSpec("mae", False, "mean", per_example=lambda y, m: np.abs(_errors(y, m))),
        MetricSpec("mse", False, "mean", per_example=lambda y, m: _errors(y, m) ** 2),
        # per-class arguments: (true positives, support, predicted count)
        MetricSpec("f1", True, "aggregate", estimate=_confusion_metric(lambda tp, t, p: _ratio(2 * tp, t + p))),
        MetricSpec("precision", True, "aggregate", estimate=_confusion_metric(lambda tp, t, p: _ratio(tp, p))),
        MetricSpec("recall", True, "aggregate", estimate=_confusion_metric(lambda tp, t, p: _ratio(tp, t))),
        MetricSpec(
            "balanced_accuracy",
            True,
            "aggregate",
            estimate=_confusion_metric(lambda tp, t, p: _ratio(tp, t), balanced=True),
        ),
        MetricSpec("roc_auc", True, "aggregate", ("score",), estimate=_roc_auc),
        MetricSpec("rmse", False, "aggregate", estimate=_rmse),
    )
}


# ---------------------------------------------------------------------- public API


def compare(
    metric: str,
    outcomes: PairedOutcomes,
    *,
    margin: float = 0.0,
    tolerance: float = 0.0,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
    positive_label: Any = 1,
) -> Comparison:
    """Paired comparison of candidate against baseline on ``metric``.

    ``p_better`` tests H0: improvement <= margin (small: promote);
    ``p_worse`` tests H0: improvement >= -tolerance (small: significantly worse
    by more than the tolerance).  The interval is two-sided at ``confidence``.
    ``n_resamples`` and ``seed`` only matter for bootstrapped metrics; the same
    seed always gives the same answer.  ``positive_label`` picks the class of
    binary f1 / precision / recall and of roc_auc.

    Raises ValueError for an unknown metric, invalid arguments, 0 rows, a
    missing ``ModelOutcomes`` field, non-finite numeric inputs, or a metric
    that is undefined on the data (roc_auc with a single class).
    """
    spec = METRICS.get(metric)
    if spec is None:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not (math.isfinite(margin) and math.isfinite(tolerance) and tolerance >= 0.0):
        raise ValueError(f"margin must be finite and tolerance finite and >= 0, got {margin}, {tolerance}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    n = len(outcomes)
    if n == 0:
        raise ValueError(f"cannot compare {metric!r} on 0 rows: the evaluation set (or slice) is empty")
    spec.check(outcomes)
    sign = 1.0 if spec.higher_is_better else -1.0

    if spec.family == "mean":
        values = [spec.per_example(outcomes.label, m) for m in (outcomes.baseline, outcomes.candidate)]
        baseline, candidate = float(values[0].mean()), float(values[1].mean())
        diff = sign * (values[1] - values[0])
        improvement = float(diff.mean()) + 0.0  # + 0.0 turns -0.0 into 0.0
        se = math.sqrt(float(diff.var(ddof=1)) / n) if n > 1 else math.inf
        ci_low, ci_high, p_better, p_worse = _normal_inference(improvement, se, margin, tolerance, confidence)
        method = "paired-z"
        if spec.mcnemar:
            wins, losses = int(np.count_nonzero(diff > 0)), int(np.count_nonzero(diff < 0))
            if margin == 0.0:
                p_better, method = _mcnemar_midp(wins, losses), "mcnemar-midp"
            if tolerance == 0.0:
                p_worse = _mcnemar_midp(losses, wins)
    else:
        estimate = spec.estimate(outcomes, positive_label, n_resamples, np.random.default_rng(seed))
        baseline, candidate = estimate.baseline, estimate.candidate
        improvement = sign * (candidate - baseline) + 0.0
        if estimate.replicates is not None:
            method = "paired-bootstrap"
            replicates = sign * (estimate.replicates[:, 1] - estimate.replicates[:, 0])
            ci_low, ci_high, p_better, p_worse = _bootstrap_inference(replicates, margin, tolerance, confidence)
        else:
            method = "paired-z"
            ci_low, ci_high, p_better, p_worse = _normal_inference(
                improvement, estimate.se, margin, tolerance, confidence
            )

    return Comparison(
        metric=metric,
        method=method,
        n=n,
        baseline=baseline,
        candidate=candidate,
        improvement=improvement,
        ci_low=ci_low,
        ci_high=ci_high,
        p_better=p_better,
        p_worse=p_worse,
        margin=float(margin),
        tolerance=float(tolerance),
        confidence=float(confidence),
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order, capped at 1.

    Controls the family-wise error rate across slices under any dependence,
    and is uniformly more powerful than plain Bonferroni.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or not ((p >= 0) & (p <= 1)).all():
        raise ValueError("p-values must be a flat sequence of numbers in [0, 1]")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * np.arange(len(p), 0, -1)
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted.tolist()
