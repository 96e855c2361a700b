"""Tests for registry_hooks.statistics: point values and tests against references, edge cases, API.

scipy.stats, statsmodels and scikit-learn serve as references only; the module
under test must not import them (checked below). The resampling machinery and the
error rates of the tests built on it are in test_resampling.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from statsmodels.stats.contingency_tables import mcnemar

import registry_hooks.statistics as st
from registry_hooks.estimators import LabelSet
from registry_hooks.statistics import METRICS, ModelOutcomes, PairedOutcomes, compare
from tests.support.outcomes import classification, mcnemar_outcomes, probabilistic, regression

MODULE_PATH = Path(st.__file__)


def replicates(metric: str, outcomes: PairedOutcomes, n_resamples: int, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of (baseline, candidate) from roc_auc's estimator."""
    values = (outcomes.label, outcomes.baseline.prediction, outcomes.candidate.prediction)
    labels = LabelSet(np.unique(np.concatenate(values)), 1)
    estimate = METRICS[metric].estimate(outcomes, labels, n_resamples, np.random.default_rng(seed))
    assert estimate.replicates is not None
    return estimate.replicates


# ---------------------------------------------------------------- import budget


def test_module_imports_neither_scipy_stats_nor_heavy_libraries():
    # Loaded by path so that whatever registry_hooks/__init__ imports does not count.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('gk_statistics', {str(MODULE_PATH)!r})\n"
        "sys.modules['gk_statistics'] = module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert module.compare\n"
        "print(' '.join(sys.modules))\n"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = probe.stdout.split()
    assert "scipy.special" in loaded  # the probe does see what the module imports
    heavy = [m for m in loaded if m.split(".")[0] in ("pandas", "statsmodels", "sklearn")]
    heavy += [m for m in loaded if m.startswith("scipy.stats")]
    assert heavy == []

# ------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("wins", "losses"), [(0, 0), (1, 0), (0, 3), (7, 2), (12, 12), (30, 45), (260, 201), (5000, 4870)]
)
def test_mcnemar_midp_matches_binomial_and_statsmodels(wins, losses):
    result = compare("accuracy", mcnemar_outcomes(400, wins, losses, 37))
    m = wins + losses
    assert result.method == "mcnemar-midp"
    if m == 0:
        assert result.p_better == result.p_worse == 1.0
        return
    pmf = stats.binom.pmf(wins, m, 0.5)
    mid_better = stats.binom.sf(wins, m, 0.5) + 0.5 * pmf
    mid_worse = stats.binom.cdf(wins - 1, m, 0.5) + 0.5 * pmf
    assert result.p_better == pytest.approx(mid_better, rel=1e-9, abs=1e-300)
    assert result.p_worse == pytest.approx(mid_worse, rel=1e-9, abs=1e-300)
    # statsmodels' exact two-sided p is twice the smaller one-sided (non-mid) exact p.
    two_sided = mcnemar([[400, losses], [wins, 37]], exact=True).pvalue
    assert two_sided == pytest.approx(min(1.0, 2 * min(result.p_better, result.p_worse) + pmf), rel=1e-9)


@pytest.mark.parametrize("n", [30, 20_000])
def test_paired_t_matches_hand_computation_and_ttest_rel(n):
    outcomes = probabilistic(np.random.default_rng(3), n, 1.0, 1.05)
    result = compare("log_loss", outcomes, margin=0.001, tolerance=0.002, confidence=0.9)
    loss_b = -np.log(outcomes.baseline.proba_label)
    loss_c = -np.log(outcomes.candidate.proba_label)
    diff = loss_b - loss_c
    se, df = diff.std(ddof=1) / math.sqrt(n), n - 1
    assert result.method == "paired-t"
    assert result.improvement == pytest.approx(diff.mean(), rel=1e-12)
    assert result.p_better == pytest.approx(stats.t.cdf((0.001 - diff.mean()) / se, df), rel=1e-9)
    assert result.p_worse == pytest.approx(stats.t.cdf((diff.mean() + 0.002) / se, df), rel=1e-9)
    # One-sided bounds at the confidence (0.9): each is the bound of its one-sided test.
    expected = diff.mean() + np.array([-1, 1]) * stats.t.ppf(0.9, df) * se
    assert (result.ci_low, result.ci_high) == pytest.approx(expected, rel=1e-9)
    t_test = stats.ttest_rel(loss_b, loss_c, alternative="greater")
    assert compare("log_loss", outcomes).p_better == pytest.approx(t_test.pvalue, rel=1e-9)


def _sklearn(metric: str, label, model: ModelOutcomes, average: str) -> float:
    if metric == "accuracy":
        return skm.accuracy_score(label, model.prediction)
    if metric == "error_rate":
        return 1 - skm.accuracy_score(label, model.prediction)
    if metric == "balanced_accuracy":
        return skm.balanced_accuracy_score(label, model.prediction)
    if metric in ("f1", "precision", "recall"):
        scorer = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[metric]
        return scorer(label, model.prediction, average=average, zero_division=0)
    if metric == "roc_auc":
        return skm.roc_auc_score(label, model.score)
    if metric == "log_loss":
        return skm.log_loss(label, np.where(label == 1, model.proba_label, 1 - model.proba_label))
    raise AssertionError(metric)


@pytest.mark.parametrize(
    "metric", ["accuracy", "error_rate", "balanced_accuracy", "f1", "precision", "recall", "roc_auc", "log_loss"]
)
def test_binary_point_estimates_match_sklearn(metric):
    outcomes = probabilistic(np.random.default_rng(5), 3000, 0.8, 1.2)
    # Rounded scores create ties, which roc_auc must count as 1/2.
    base, cand = (
        ModelOutcomes(m.prediction, m.proba_label, np.round(m.score, 2)) for m in (outcomes.baseline, outcomes.candidate)
    )
    outcomes = PairedOutcomes(outcomes.label, base, cand)
    result = compare(metric, outcomes, n_resamples=20)
    assert result.baseline == pytest.approx(_sklearn(metric, outcomes.label, base, "binary"), rel=1e-9)
    assert result.candidate == pytest.approx(_sklearn(metric, outcomes.label, cand, "binary"), rel=1e-9)
    assert result.baseline != result.candidate


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("metric", ["f1", "precision", "recall", "balanced_accuracy"])
def test_multiclass_macro_and_string_labels_match_sklearn(metric):
    rng = np.random.default_rng(6)
    names = np.array(["ant", "bee", "cat", "dog"])
    label = names[rng.integers(0, 4, 2000)]
    baseline = np.where(rng.random(2000) < 0.6, label, names[rng.integers(0, 4, 2000)])
    # The candidate never predicts "dog" but sometimes an unseen class, which
    # scikit-learn's macro average includes with a score of 0.
    mistakes = np.array(["ant", "bee", "cat", "eel"])[rng.integers(0, 4, 2000)]
    candidate = np.where(rng.random(2000) < 0.7, label, mistakes)
    candidate = np.where(candidate == "dog", "cat", candidate)
    outcomes = PairedOutcomes(label, ModelOutcomes(baseline), ModelOutcomes(candidate))
    with pytest.raises(ValueError, match=r"candidate prediction has class\(es\) \['eel'\] outside the label set"):
        compare(metric, outcomes, n_resamples=20)  # the label set is fixed, never widened by a prediction
    result = compare(metric, outcomes, n_resamples=20, classes=["ant", "bee", "cat", "dog", "eel"])
    assert result.baseline == pytest.approx(_sklearn(metric, label, outcomes.baseline, "macro"), rel=1e-9)
    assert result.candidate == pytest.approx(_sklearn(metric, label, outcomes.candidate, "macro"), rel=1e-9)


def test_binary_string_labels_use_positive_label():
    rng = np.random.default_rng(7)
    outcomes = classification(rng, 1000, 0.7, 0.8)
    as_text = np.array(["ham", "spam"])
    text = PairedOutcomes(
        as_text[outcomes.label],
        ModelOutcomes(as_text[outcomes.baseline.prediction]),
        ModelOutcomes(as_text[outcomes.candidate.prediction]),
    )
    for positive, numeric in (("spam", 1), ("ham", 0)):
        result = compare("recall", text, positive_label=positive, n_resamples=10)
        expected = skm.recall_score(outcomes.label, outcomes.candidate.prediction, pos_label=numeric)
        assert result.candidate == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="positive_label=1 is not one of the classes"):
        compare("recall", text)


@pytest.mark.parametrize("metric", ["mae", "mse", "rmse"])
def test_regression_point_estimates_match_sklearn(metric):
    outcomes = regression(np.random.default_rng(8), 2000, 1.0, 0.9)
    reference = {
        "mae": skm.mean_absolute_error,
        "mse": skm.mean_squared_error,
        "rmse": skm.root_mean_squared_error,
    }[metric]
    result = compare(metric, outcomes, n_resamples=20)
    assert result.baseline == pytest.approx(reference(outcomes.label, outcomes.baseline.prediction), rel=1e-12)
    assert result.candidate == pytest.approx(reference(outcomes.label, outcomes.candidate.prediction), rel=1e-12)
    assert result.improvement == pytest.approx(result.baseline - result.candidate, abs=1e-15)
    assert result.improvement > 0  # lower error is better, so the candidate improves


# --------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_identical_models_are_neither_better_nor_worse(metric):
    rng = np.random.default_rng(18)
    model = probabilistic(rng, 500, 1.0, 1.0).baseline
    label = rng.integers(0, 2, 500) if metric not in ("mae", "mse", "rmse") else rng.normal(size=500)
    if metric in ("mae", "mse", "rmse"):
        model = ModelOutcomes(label + rng.normal(size=500))
    outcomes = PairedOutcomes(label, model, model)
    for tolerance in (0.0, 0.01):
        result = compare(metric, outcomes, tolerance=tolerance, n_resamples=50)
        assert result.improvement == 0.0 and math.copysign(1, result.improvement) == 1
        assert result.ci_low == result.ci_high == 0.0
        assert result.p_better == 1.0 and result.p_worse == 1.0
    # Any margin below the (zero) improvement is exceeded for sure.
    lenient = compare(metric, outcomes, margin=-0.01, n_resamples=50)
    assert lenient.p_better == pytest.approx(0.0, abs=1 / 51)


def test_constant_nonzero_difference_is_decided_by_an_exact_sign_test_never_p_zero():
    label = np.zeros(50)
    outcomes = PairedOutcomes(label, ModelOutcomes(label + 1.0), ModelOutcomes(label + 0.5))  # mae 1 vs 0.5
    result = compare("mae", outcomes, margin=0.2)
    assert (result.improvement, result.p_better, result.p_worse) == (0.5, 2.0**-50, 1.0)
    assert compare("mae", outcomes, margin=0.6).p_better == 1.0
    two = PairedOutcomes(label[:2], ModelOutcomes(label[:2] + 1.0), ModelOutcomes(label[:2] + 0.5))
    assert compare("mae", two, margin=0.2).p_better == 0.25  # two equal differences prove nothing


def test_empty_data_raises_a_clear_error():
    outcomes = classification(np.random.default_rng(19), 100, 0.7, 0.7)
    empty = outcomes.subset(np.zeros(100, bool))
    for metric in ("accuracy", "f1", "rmse"):
        with pytest.raises(ValueError, match="0 rows"):
            compare(metric, empty)


def test_single_row_gives_no_evidence_and_serialises():
    label = np.array([1.0])
    outcomes = PairedOutcomes(label, ModelOutcomes(np.array([3.0])), ModelOutcomes(np.array([1.0])))
    result = compare("mae", outcomes)
    assert (result.p_better, result.p_worse) == (1.0, 1.0)
    record = result.to_dict()
    assert record["ci_low"] is None and record["ci_high"] is None and record["improvement"] == 2.0
    json.dumps(record, allow_nan=False)


def test_mcnemar_without_discordant_pairs_even_when_predictions_differ():
    label = np.array([0, 1, 2, 0, 1, 2])
    baseline = np.array([0, 1, 2, 1, 2, 0])  # three right
    candidate = np.array([0, 1, 2, 2, 0, 1])  # the same three right, different mistakes
    result = compare("accuracy", PairedOutcomes(label, ModelOutcomes(baseline), ModelOutcomes(candidate)))
    assert result.method == "mcnemar-midp"
    assert (result.improvement, result.p_better, result.p_worse) == (0.0, 1.0, 1.0)


@pytest.mark.parametrize("metric", ["recall", "precision", "f1"])
def test_one_positive_row_scores_zero_and_proves_nothing(metric):
    """The baseline never predicts a positive (0/0 -> 0, as scikit-learn) and the candidate gets
    the only positive right: a difference of 1 with no spread — no evidence, never NaN."""
    label = np.zeros(40, int)
    label[0] = 1
    baseline = np.zeros(40, int)
    candidate = label.copy()
    outcomes = PairedOutcomes(label, ModelOutcomes(baseline), ModelOutcomes(candidate))
    estimate = METRICS[metric].estimate(outcomes, LabelSet(np.array([0, 1]), 1), 500, np.random.default_rng(0))
    assert not np.isnan(estimate.null).any()
    result = compare(metric, outcomes, n_resamples=500)
    assert (result.baseline, result.candidate, result.improvement) == (0.0, 1.0, 1.0)
    assert (result.p_better, result.p_worse) == (1.0, 1.0)


def test_single_class_data_scores_zero_like_sklearn():
    label = np.zeros(30, int)
    outcomes = PairedOutcomes(label, ModelOutcomes(label), ModelOutcomes(label))
    result = compare("f1", outcomes, n_resamples=20)
    assert result.baseline == skm.f1_score(label, label, zero_division=0) == 0.0
    assert result.p_better == 1.0


def test_roc_auc_needs_both_classes_and_stratifies_resamples():
    rng = np.random.default_rng(20)
    label = np.zeros(50, int)
    label[:2] = 1
    outcomes = PairedOutcomes(
        label, ModelOutcomes(label, score=rng.random(50)), ModelOutcomes(label, score=rng.random(50) + label)
    )
    reps = replicates("roc_auc", outcomes, 300)
    assert np.isfinite(reps).all()  # every resample keeps both positives' stratum
    assert compare("roc_auc", outcomes, n_resamples=300).candidate == 1.0
    with pytest.raises(ValueError, match="roc_auc is undefined"):
        compare("roc_auc", outcomes.subset(label == 0))

# ---------------------------------------------------------- validation and API


def test_missing_fields_are_named():
    outcomes = classification(np.random.default_rng(21), 100, 0.7, 0.7)
    with pytest.raises(ValueError, match=r"'log_loss' needs ModelOutcomes.proba_label, but the baseline"):
        compare("log_loss", outcomes)
    with pytest.raises(ValueError, match=r"'roc_auc' needs ModelOutcomes.score"):
        compare("roc_auc", outcomes)
    with pytest.raises(ValueError, match="unknown metric 'auc'.*roc_auc"):
        compare("auc", outcomes)


def test_invalid_inputs_are_rejected():
    outcomes = probabilistic(np.random.default_rng(22), 100, 1.0, 1.0)
    for kwargs in ({"confidence": 1.0}, {"tolerance": -0.1}, {"margin": float("nan")}, {"n_resamples": 0}):
        with pytest.raises(ValueError):
            compare("f1", outcomes, **kwargs)
    bad_score = ModelOutcomes(outcomes.candidate.prediction, score=np.r_[np.nan, outcomes.candidate.score[1:]])
    with pytest.raises(ValueError, match="score contains NaN"):
        compare("roc_auc", PairedOutcomes(outcomes.label, outcomes.baseline, bad_score))
    with pytest.raises(ValueError, match="same rows"):
        PairedOutcomes(outcomes.label[:-1], outcomes.baseline, outcomes.candidate)
    with pytest.raises(ValueError, match="differ in length"):
        ModelOutcomes(np.zeros(3), proba_label=np.zeros(2))
    with pytest.raises(ValueError, match="mask has shape"):
        outcomes.subset(np.ones(5, bool))


def test_subset_keeps_rows_paired():
    outcomes = probabilistic(np.random.default_rng(23), 200, 1.0, 1.3)
    mask = outcomes.label == 1
    part = outcomes.subset(mask)
    assert len(part) == mask.sum()
    np.testing.assert_array_equal(part.candidate.score, outcomes.candidate.score[mask])
    np.testing.assert_array_equal(part.baseline.proba_label, outcomes.baseline.proba_label[mask])
    assert compare("log_loss", part).baseline == pytest.approx(-np.log(outcomes.baseline.proba_label[mask]).mean())


def test_to_dict_is_json_ready_and_rounded():
    result = compare("log_loss", probabilistic(np.random.default_rng(24), 1000, 1.0, 1.1), margin=0.01)
    record = result.to_dict()
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert record["metric"] == "log_loss" and record["n"] == 1000 and record["margin"] == 0.01
    assert record["baseline"] == pytest.approx(result.baseline, rel=1e-5) and record["baseline"] != result.baseline
    assert record["p_better"] == float(f"{result.p_better:.6g}")


# ---------------------------------------------------------------------- numeric edges


def test_squared_errors_never_overflow_and_the_test_is_scale_free():
    rng = np.random.default_rng(26)
    small = regression(rng, 300, 1.0, 0.9)
    huge = PairedOutcomes(small.label * 1e200, *(ModelOutcomes(m.prediction * 1e200) for m in (small.baseline, small.candidate)))
    for metric in ("mse", "rmse", "mae"):
        tiny, big = compare(metric, small, n_resamples=200), compare(metric, huge, n_resamples=200)
        assert big.p_better == pytest.approx(tiny.p_better, rel=1e-9) and big.p_worse == pytest.approx(tiny.p_worse, rel=1e-9)
        assert 0 < big.p_better < 1 and math.isfinite(big.p_worse)
    assert compare("rmse", huge, n_resamples=50).candidate == pytest.approx(
        math.sqrt(np.mean((small.candidate.prediction - small.label) ** 2)) * 1e200, rel=1e-9)


def test_log_loss_clips_like_sklearn_at_zero_and_one():
    label = np.array([1, 0, 1, 0, 1, 1])
    proba_label = np.array([1.0, 0.0, 0.7, 0.2, 1e-300, 0.5])  # probability given to the true class
    outcomes = PairedOutcomes(label, ModelOutcomes(label, proba_label), ModelOutcomes(label, proba_label))
    proba_positive = np.where(label == 1, proba_label, 1 - proba_label)
    assert compare("log_loss", outcomes).baseline == pytest.approx(skm.log_loss(label, proba_positive), rel=1e-12)



@pytest.mark.parametrize("metric", sorted(METRICS))
def test_bounds_contain_the_estimate_on_small_one_sided_tables(metric):
    """b6606f8's evaluate chart crashed on a slice of 46 rows whose 21 disagreements all went the
    candidate's way: McNemar's upper bound came out one rounding step below the improvement.
    A one-sided bound at confidence >= 0.5 never excludes the estimate."""
    rng = np.random.default_rng(21)
    for n in (30, 46, 77, 130):
        label = rng.integers(0, 2, n)
        base = np.where(rng.random(n) < 0.5, label, 1 - label)
        cand = np.where(rng.random(n) < 0.5, label, base)  # only ever fixes the baseline's mistakes
        p_true = np.where(cand == label, 0.8, 0.3)
        if metric in ("mae", "mse", "rmse"):
            outcomes = PairedOutcomes(label.astype(float), ModelOutcomes(base + 0.5), ModelOutcomes(cand + 0.25))
        else:
            outcomes = PairedOutcomes(label, ModelOutcomes(base, np.where(base == label, 0.8, 0.3), base * 0.6 + 0.2),
                                      ModelOutcomes(cand, p_true, cand * 0.7 + 0.15))
        for swapped in (False, True):
            pair = PairedOutcomes(outcomes.label, outcomes.candidate, outcomes.baseline) if swapped else outcomes
            c = compare(metric, pair, n_resamples=200)
            assert c.ci_low <= c.improvement <= c.ci_high, (metric, n, swapped, c)
