"""Paired statistical evidence that a candidate model beats the production model.

The promotion gate must not promote a model because it looked better on one evaluation set by
chance. Both models are scored on the *same* rows, so every test here is paired: the
per-example noise shared by the two models cancels, which makes the tests far more powerful
than comparing two independent scores.

For each metric ``compare`` answers two one-sided questions at the same level α = 1 − confidence:

* ``p_better``: evidence that the candidate improves the metric by more than ``margin`` (the
  promotion criterion for the primary metric); ``ci_low`` is the matching one-sided lower bound;
* ``p_worse``: evidence that the candidate is worse by more than ``tolerance`` (the
  non-inferiority guard for secondary metrics and slices); ``ci_high`` is the matching upper bound.

Tests by metric family (see ``registry_hooks.inference`` for the conventions):

* mean metrics (an average of per-example values): paired t-test on the per-example
  differences; for accuracy / error_rate, a zero threshold uses the exact mid-p McNemar test
  and the bound that inverts it.
* rmse: the paired t-test on squared errors, with the margin and tolerance carried over to the
  squared scale at the baseline's rmse (``_rmse_comparison``): with a zero threshold it is
  exactly the mse test, which holds its level where rmse's percentile bootstrap did not (7 %
  false promotions at n = 30 and 100 with heavy-tailed errors, nominal 5 %).
* confusion metrics (f1, precision, recall, balanced_accuracy): studentized paired permutation
  test (``registry_hooks.estimators``), exact for exchangeable models at a zero threshold;
* roc_auc: paired percentile bootstrap, or DeLong above ``EXACT_BOOTSTRAP_MAX_DRAWS``.

Classification metrics are defined over a fixed label set (the ``classes`` argument, else the
labels present) and a fixed positive class: a value outside the set is an error, never a reason
to change how the metric averages. How much evidence is *enough* is not decided here but in
``registry_hooks.sufficiency``; this module answers for any non-empty input.

Only numpy, scipy.special and the standard library are imported: this module runs inside every
MLflow server worker, and scipy.stats alone costs ~50 MB each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from registry_hooks import estimators, inference
from registry_hooks.estimators import EXACT_BOOTSTRAP_MAX_DRAWS, LabelSet, finite, scaled_errors
from registry_hooks.outcomes import ModelOutcomes, PairedOutcomes

__all__ = [
    "EXACT_BOOTSTRAP_MAX_DRAWS",
    "METRICS",
    "Comparison",
    "MetricSpec",
    "ModelOutcomes",
    "PairedOutcomes",
    "compare",
]

_LOG_LOSS_EPS = float(np.finfo(np.float64).eps)  # scikit-learn's clipping of probabilities


@dataclass(frozen=True)
class Comparison:
    """Evidence about ``improvement`` (> 0 means the candidate is better).

    ``ci_low`` / ``ci_high`` are one-sided bounds at ``confidence`` (together a two-sided
    interval at 2·confidence − 1): ``ci_low > margin`` exactly when ``p_better < 1 − confidence``
    and ``ci_high < -tolerance`` exactly when ``p_worse < 1 − confidence`` (for roc_auc's
    bootstrap, up to its granularity). ``method`` names the test behind ``p_better``; for accuracy / error_rate,
    ``p_worse`` uses McNemar when ``tolerance == 0`` and the paired t-test otherwise. For roc_auc
    above the bootstrap limit "paired-z" means DeLong's test.
    """

    metric: str
    method: Literal["mcnemar-midp", "paired-t", "paired-z", "paired-permutation", "paired-bootstrap"]
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


#: Mean metrics: (baseline values, candidate values, unit) — the per-example values may be
#: scaled (squared errors), ``unit`` turns their mean back into the metric's own units.
PerExample = Callable[[PairedOutcomes], tuple[np.ndarray, np.ndarray, float]]


@dataclass(frozen=True)
class MetricSpec:
    """How a metric is computed and tested; ``requires`` lists the optional ``ModelOutcomes``
    fields it reads, so a missing one is reported by name; ``classes`` marks the metrics that
    are defined over a label set (and need rows of every class, see ``sufficiency``)."""

    name: str
    higher_is_better: bool
    family: Literal["mean", "root_mean", "aggregate"]
    requires: tuple[str, ...] = ()
    per_example: PerExample | None = None  # mean metrics
    estimate: estimators.Estimator | None = None  # aggregate metrics
    mcnemar: bool = False  # per-example values are 0/1, so McNemar applies
    classes: bool = False

    def check(self, outcomes: PairedOutcomes) -> None:
        """Fail early, naming the missing field, instead of deep inside numpy."""
        for which in ("baseline", "candidate"):
            for name in self.requires:
                if getattr(getattr(outcomes, which), name) is None:
                    raise ValueError(f"metric {self.name!r} needs ModelOutcomes.{name}, but the {which} model has none")


def _hits(outcomes: PairedOutcomes, right: bool) -> tuple[np.ndarray, np.ndarray, float]:
    return tuple((m.prediction == outcomes.label) == right for m in (outcomes.baseline, outcomes.candidate)) + (1.0,)


def _log_loss(outcomes: PairedOutcomes) -> tuple[np.ndarray, np.ndarray, float]:
    def loss(model: ModelOutcomes) -> np.ndarray:  # in place: one array of n per model at 10M rows, not three
        values = np.clip(finite(model.proba_label, "proba_label"), _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)
        return np.negative(np.log(values, out=values), out=values)

    return loss(outcomes.baseline), loss(outcomes.candidate), 1.0


def _absolute_errors(outcomes: PairedOutcomes) -> tuple[np.ndarray, np.ndarray, float]:
    (base, cand), scale = scaled_errors(outcomes.label, outcomes.baseline, outcomes.candidate)
    return np.abs(base), np.abs(cand), scale


def _squared_errors(outcomes: PairedOutcomes) -> tuple[np.ndarray, np.ndarray, float]:
    (base, cand), scale = scaled_errors(outcomes.label, outcomes.baseline, outcomes.candidate)
    return base**2, cand**2, scale * scale  # may be inf for the report; the test itself stays finite


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("accuracy", True, "mean", per_example=lambda o: _hits(o, True), mcnemar=True),
        MetricSpec("error_rate", False, "mean", per_example=lambda o: _hits(o, False), mcnemar=True),
        MetricSpec("log_loss", False, "mean", ("proba_label",), per_example=_log_loss),
        MetricSpec("mae", False, "mean", per_example=_absolute_errors),
        MetricSpec("mse", False, "mean", per_example=_squared_errors),
        MetricSpec("f1", True, "aggregate", estimate=estimators.f1, classes=True),
        MetricSpec("precision", True, "aggregate", estimate=estimators.precision, classes=True),
        MetricSpec("recall", True, "aggregate", estimate=estimators.recall, classes=True),
        MetricSpec("balanced_accuracy", True, "aggregate", estimate=estimators.balanced_accuracy, classes=True),
        MetricSpec("roc_auc", True, "aggregate", ("score",), estimate=estimators.roc_auc, classes=True),
        MetricSpec("rmse", False, "root_mean", per_example=_squared_errors),
    )
}


def label_set(outcomes: PairedOutcomes, classes: Sequence[Any] | None, positive_label: Any) -> LabelSet:
    """The fixed label set of a classification metric, checked against every value.

    ``classes`` (the policy's) or else the labels present; a label or a prediction outside it
    is an error naming the values, never a silent switch from binary to macro averaging.
    """
    known = np.unique(np.asarray(list(classes))) if classes is not None else np.unique(outcomes.label)
    for which, values in (("label", outcomes.label), ("baseline prediction", outcomes.baseline.prediction),
                          ("candidate prediction", outcomes.candidate.prediction)):
        extra = np.setdiff1d(np.unique(values), known)
        if extra.size:
            raise ValueError(
                f"the {which} has class(es) {extra.tolist()[:5]} outside the label set {known.tolist()[:10]}; "
                "declare every class in the policy (evidence.classes) or fix the model's output"
            )
    if len(known) == 2 and positive_label not in known.tolist():
        raise ValueError(f"positive_label={positive_label!r} is not one of the classes {known.tolist()}")
    return LabelSet(classes=known, positive=positive_label)


def _mean_comparison(spec: MetricSpec, outcomes: PairedOutcomes, margin: float, tolerance: float,
                     confidence: float) -> tuple[str, float, float, inference.Inference]:
    """(method, baseline, candidate, inference) of a mean metric, in the metric's units."""
    base, cand, unit = spec.per_example(outcomes)
    diff = np.subtract(cand, base, dtype=float)  # one array of n, not a float copy of each side first
    if not spec.higher_is_better:
        np.negative(diff, out=diff)
    found = inference.t_test(diff, margin / unit, tolerance / unit, confidence)
    found = inference.Inference(found.lower * unit, found.upper * unit, found.p_better, found.p_worse)
    method = "paired-t"
    if spec.mcnemar:
        wins, losses = int(np.count_nonzero(diff > 0)), int(np.count_nonzero(diff < 0))
        low, high = inference.mcnemar_bounds(wins, losses, len(diff), confidence)
        if margin == 0.0:
            method = "mcnemar-midp"
            found = inference.Inference(low, found.upper, inference.mcnemar_midp(wins, losses), found.p_worse)
        if tolerance == 0.0:
            found = inference.Inference(found.lower, high, found.p_better, inference.mcnemar_midp(losses, wins))
    return method, float(base.mean()) * unit, float(cand.mean()) * unit, found


def _rmse_comparison(outcomes: PairedOutcomes, margin: float, tolerance: float,
                     confidence: float) -> tuple[str, float, float, inference.Inference]:
    """rmse tested as a paired t-test on squared errors.

    rmse improvement = √mse_b − √mse_c rises with Δ = mse_b − mse_c, so "improves by more than
    the margin m" is "Δ > mse_b − (√mse_b − m)²" and "worse by more than the tolerance t" is
    "Δ < mse_b − (√mse_b + t)²", taking the baseline's mse as measured. Bounds on Δ map back
    through the same function, so each bound agrees with its p-value.
    """
    (base_error, cand_error), scale = scaled_errors(outcomes.label, outcomes.baseline, outcomes.candidate)
    base, cand = base_error**2, cand_error**2
    mse_b, root_b = float(base.mean()), math.sqrt(float(base.mean()))
    m, t = margin / scale, tolerance / scale
    # mse_b − (√mse_b − m)² and (√mse_b + t)² − mse_b, written so that m = 0 gives exactly 0
    margin_mse = m * (2 * root_b - m) if root_b >= m else math.inf  # rmse cannot fall below 0
    found = inference.t_test(base - cand, margin_mse, t * (2 * root_b + t), confidence)

    def to_rmse(delta: float) -> float:
        return (root_b - math.sqrt(max(mse_b - delta, 0.0))) * scale if math.isfinite(delta) else delta

    bounds = inference.Inference(to_rmse(found.lower), to_rmse(found.upper), found.p_better, found.p_worse)
    return "paired-t", root_b * scale, math.sqrt(float(cand.mean())) * scale, bounds


def _aggregate_comparison(spec: MetricSpec, outcomes: PairedOutcomes, labels: LabelSet | None, margin: float,
                          tolerance: float, confidence: float, n_resamples: int,
                          seed: int) -> tuple[str, float, float, inference.Inference]:
    estimate = spec.estimate(outcomes, labels, n_resamples, np.random.default_rng(seed))
    sign = 1.0 if spec.higher_is_better else -1.0
    if estimate.null is not None:
        improvement = sign * (estimate.candidate - estimate.baseline)
        return "paired-permutation", estimate.baseline, estimate.candidate, inference.studentized(
            improvement, estimate.se, sign * estimate.null, margin, tolerance, confidence)
    if estimate.replicates is not None:
        replicates = sign * (estimate.replicates[:, 1] - estimate.replicates[:, 0])
        return "paired-bootstrap", estimate.baseline, estimate.candidate, inference.bootstrap(
            replicates, margin, tolerance, confidence)
    improvement = sign * (estimate.candidate - estimate.baseline)
    return "paired-z", estimate.baseline, estimate.candidate, inference.normal_test(
        improvement, estimate.se, margin, tolerance, confidence)


def _check_arguments(metric: str, n: int, margin: float, tolerance: float, confidence: float,
                     n_resamples: int) -> MetricSpec:
    spec = METRICS.get(metric)
    if spec is None:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not (math.isfinite(margin) and math.isfinite(tolerance) and tolerance >= 0.0):
        raise ValueError(f"margin must be finite and tolerance finite and >= 0, got {margin}, {tolerance}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if n == 0:
        raise ValueError(f"cannot compare {metric!r} on 0 rows: the evaluation set (or slice) is empty")
    return spec


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
    classes: Sequence[Any] | None = None,
) -> Comparison:
    """Paired comparison of candidate against baseline on ``metric``.

    ``p_better`` tests H0: improvement <= margin (small: promote); ``p_worse`` tests H0:
    improvement >= -tolerance (small: significantly worse by more than the tolerance); both at
    one-sided level 1 − confidence, with the matching one-sided bounds. ``n_resamples`` and
    ``seed`` only matter for bootstrapped metrics; the same seed always gives the same answer.
    ``classes`` and ``positive_label`` fix the label set of classification metrics.

    Raises ValueError for an unknown metric, invalid arguments, 0 rows, a missing
    ``ModelOutcomes`` field, non-finite numeric inputs, a value outside the label set, or a
    metric that is undefined on the data (roc_auc with a single class).
    """
    n = len(outcomes)
    spec = _check_arguments(metric, n, margin, tolerance, confidence, n_resamples)
    spec.check(outcomes)
    if spec.family == "mean":
        method, baseline, candidate, found = _mean_comparison(spec, outcomes, margin, tolerance, confidence)
    elif spec.family == "root_mean":
        method, baseline, candidate, found = _rmse_comparison(outcomes, margin, tolerance, confidence)
    else:
        labels = label_set(outcomes, classes, positive_label) if spec.classes else None
        method, baseline, candidate, found = _aggregate_comparison(
            spec, outcomes, labels, margin, tolerance, confidence, n_resamples, seed)
    sign = 1.0 if spec.higher_is_better else -1.0
    improvement = sign * (candidate - baseline) + 0.0  # + 0.0 turns -0.0 into 0.0
    low, high = found.lower, found.upper
    if confidence >= 0.5 and math.isfinite(improvement):
        # A one-sided bound at confidence >= 1/2 contains the estimate; where a bound equals it
        # (every discordant pair one way) its arithmetic may land one rounding step outside.
        low, high = min(low, improvement), max(high, improvement)
    return Comparison(
        metric=metric,
        method=method,
        n=n,
        baseline=baseline,
        candidate=candidate,
        improvement=improvement,
        ci_low=low,
        ci_high=high,
        p_better=float(found.p_better),
        p_worse=float(found.p_worse),
        margin=float(margin),
        tolerance=float(tolerance),
        confidence=float(confidence),
    )
