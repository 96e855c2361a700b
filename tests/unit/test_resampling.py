"""Tests for the resampling behind registry_hooks.statistics (cell permutations, bootstraps,
DeLong) and for the error rates and bounds of the tests built on it: equal models promoted at
most at the level, better ones almost always, bounds that agree with the p-values.

scikit-learn and scipy.stats are references only (see test_statistics.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

import registry_hooks.estimators as est
from registry_hooks.estimators import LabelSet
from registry_hooks.statistics import ModelOutcomes, PairedOutcomes, compare
from tests.support.outcomes import classification, mcnemar_outcomes, probabilistic, regression

ALPHA = 0.05


def promotion_rate(make, metric: str, sims: int, **kwargs) -> float:
    """Share of seeded simulated comparisons where the gate rule would promote."""
    promoted = sum(compare(metric, make(np.random.default_rng(s)), **kwargs).p_better < ALPHA for s in range(sims))
    return promoted / sims

# --------------------------------------------------------- bootstrap machinery


SKLEARN = {
    "f1": skm.f1_score,
    "precision": lambda y, p: skm.precision_score(y, p, zero_division=0),
    "recall": skm.recall_score,
    "balanced_accuracy": skm.balanced_accuracy_score,
    "f1 macro": lambda y, p: skm.f1_score(y, p, average="macro"),
}


def table(metric: str, outcomes: PairedOutcomes) -> est.CellTable:
    classes = np.unique(outcomes.label)
    per_class = {"f1": est._f1, "f1 macro": est._f1, "precision": est._precision}.get(metric, est._recall)
    return est.CellTable(outcomes, LabelSet(classes, 1), per_class, balanced=metric == "balanced_accuracy")


def three_classes(rng: np.random.Generator, n: int) -> PairedOutcomes:
    label = rng.integers(0, 3, n)
    wrong = lambda acc: np.where(rng.random(n) < acc, label, rng.integers(0, 3, n))  # noqa: E731
    return PairedOutcomes(label, ModelOutcomes(wrong(0.7)), ModelOutcomes(wrong(0.75)))


@pytest.mark.parametrize("metric", ["f1", "precision", "recall", "balanced_accuracy", "f1 macro"])
def test_delta_method_se_matches_naive_index_bootstrap(metric):
    """The analytic gradient behind the studentized statistic: its standard error is the
    spread of the difference over naive row resamples scored by scikit-learn."""
    rng = np.random.default_rng(9)
    outcomes = three_classes(rng, 600) if metric == "f1 macro" else classification(rng, 600, 0.75, 0.8)
    cells = table(metric, outcomes)
    values = cells.values(cells.counts[None, :])[0]
    score = SKLEARN[metric]
    models = (outcomes.baseline.prediction, outcomes.candidate.prediction)
    assert values == pytest.approx([score(outcomes.label, m) for m in models], rel=1e-12)
    se = cells.difference(cells.counts[None, :])[1][0]
    draws = rng.integers(0, 600, size=(800, 600))
    naive = [score(outcomes.label[i], models[1][i]) - score(outcomes.label[i], models[0][i]) for i in draws]
    assert se == pytest.approx(np.std(naive), rel=0.1)


@pytest.mark.parametrize("metric", ["f1", "balanced_accuracy", "f1 macro"])
def test_cell_permutations_match_naive_row_swaps(metric):
    """Splitting each cell's count binomially with its mirror is the same distribution as
    exchanging the two models' predictions on each row with probability 1/2."""
    rng = np.random.default_rng(10)
    outcomes = three_classes(rng, 500) if metric == "f1 macro" else classification(rng, 500, 0.7, 0.8)
    cells = table(metric, outcomes)
    fast, _ = cells.difference(cells.permuted(rng, 3000).astype(float))
    assert cells.permuted(rng, 50).sum(axis=1).tolist() == [500] * 50
    score, base, cand = SKLEARN[metric], outcomes.baseline.prediction, outcomes.candidate.prediction
    naive = []
    for _ in range(600):
        swap = rng.random(500) < 0.5
        naive.append(score(outcomes.label, np.where(swap, base, cand)) - score(outcomes.label, np.where(swap, cand, base)))
    assert abs(fast.mean()) < 0.003 and abs(np.mean(naive)) < 0.006  # centred at "no difference"
    assert fast.std() == pytest.approx(np.std(naive), rel=0.12)


def test_studentized_bounds_agree_with_the_p_values_at_every_threshold():
    """A bound clears its threshold exactly when the p-value is below alpha (same order statistic)."""
    outcomes = classification(np.random.default_rng(11), 400, 0.75, 0.8)
    for confidence, resamples in ((0.95, 999), (0.95, 1000), (0.9, 200), (0.99, 4000)):
        for threshold in np.linspace(-0.1, 0.15, 26):
            c = compare("precision", outcomes, margin=threshold, tolerance=max(-threshold, 0.0),
                        confidence=confidence, n_resamples=resamples)
            assert c.method == "paired-permutation"
            assert (c.p_better < 1 - confidence) == (c.ci_low > threshold), (confidence, resamples, threshold)
            if threshold <= 0:
                assert (c.p_worse < 1 - confidence) == (c.ci_high < threshold), (confidence, resamples, threshold)


def test_permutation_test_holds_its_level_for_equal_but_different_models():
    """Equal precision, but the candidate predicts positive far more often (not exchangeable):
    the studentized statistic keeps the test near its level (Chung & Romano 2013)."""
    promoted = refused = 0
    sims = 300
    for seed in range(sims):
        rng = np.random.default_rng(seed)
        label = rng.integers(0, 2, 800)
        # P(predict 1 | y): baseline 0.6 / 0.15, candidate 0.9 / 0.225: both have precision 0.8
        base = (rng.random(800) < np.where(label == 1, 0.6, 0.15)).astype(int)
        cand = (rng.random(800) < np.where(label == 1, 0.9, 0.225)).astype(int)
        c = compare("precision", PairedOutcomes(label, ModelOutcomes(base), ModelOutcomes(cand)), n_resamples=400,
                    seed=seed)
        promoted += c.p_better < ALPHA
        refused += c.p_worse < ALPHA
    limit = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / sims)
    assert promoted / sims <= limit and refused / sims <= limit, (promoted, refused)
    assert promoted + refused > 0  # the test is not vacuously conservative


def test_weighted_auc_matches_sklearn_sample_weight():
    rng = np.random.default_rng(10)
    label = rng.integers(0, 2, 300)
    score = np.round(rng.random(300) + 0.3 * label, 1)  # many ties
    weights = rng.integers(0, 4, size=(5, 300)).astype(float)
    ranking = est._Ranking(score, label == 1)
    expected = [skm.roc_auc_score(label, score, sample_weight=w) for w in weights]
    assert ranking.auc(weights) == pytest.approx(expected, rel=1e-12)


def test_delong_variance_matches_brute_force_structural_components():
    rng = np.random.default_rng(11)
    outcomes = probabilistic(rng, 300, 0.6, 0.8)
    positive = outcomes.label == 1

    def components(score):
        # psi[i, j] for positive i, negative j, computed over all pairs.
        psi = (score[positive][:, None] > score[~positive][None, :]) + 0.5 * (
            score[positive][:, None] == score[~positive][None, :]
        )
        return psi.mean(axis=1), psi.mean(axis=0)

    (v10_b, v01_b), (v10_c, v01_c) = components(outcomes.baseline.score), components(outcomes.candidate.score)
    variance = np.var(v10_c - v10_b, ddof=1) / positive.sum() + np.var(v01_c - v01_b, ddof=1) / (~positive).sum()
    estimate = est.roc_auc(outcomes, LabelSet(np.array([0, 1]), 1), 10**9, np.random.default_rng(0))  # DeLong
    assert estimate.replicates is None
    assert estimate.se == pytest.approx(math.sqrt(variance), rel=1e-10)
    assert estimate.candidate - estimate.baseline == pytest.approx(v10_c.mean() - v10_b.mean(), rel=1e-12)


@pytest.mark.parametrize("metric", ["roc_auc"])
def test_large_sample_path_agrees_with_bootstrap(metric, monkeypatch):
    rng = np.random.default_rng(12)
    # Strongly correlated models, so that losing the pairing would show.
    if metric == "roc_auc":
        label = rng.integers(0, 2, 4000)
        common = rng.normal(size=4000)
        base, cand = (ModelOutcomes(label, score=s * label + common + 0.5 * rng.normal(size=4000)) for s in (1.0, 1.1))
        outcomes = PairedOutcomes(label, base, cand)
    else:
        outcomes = regression(rng, 4000, 1.0, 0.95, shared=0.8)
    boot = compare(metric, outcomes, n_resamples=2000)
    monkeypatch.setattr(est, "EXACT_BOOTSTRAP_MAX_DRAWS", 0)
    asymptotic = compare(metric, outcomes)
    assert (boot.method, asymptotic.method) == ("paired-bootstrap", "paired-z")
    assert asymptotic.improvement == boot.improvement
    assert asymptotic.ci_high - asymptotic.ci_low == pytest.approx(boot.ci_high - boot.ci_low, rel=0.1)
    assert asymptotic.p_better == pytest.approx(boot.p_better, abs=0.02)


def test_bootstrap_ci_covers_true_difference_at_nominal_rate():
    # Symmetric label noise on balanced classes: population f1 = 1 - error rate.
    true_difference = 0.08
    covered = 0
    sims = 200
    for seed in range(sims):
        outcomes = classification(np.random.default_rng(seed), 600, 0.8, 0.88)
        result = compare("f1", outcomes, n_resamples=300, seed=seed)
        covered += result.ci_low <= true_difference <= result.ci_high
    se = math.sqrt(0.90 * 0.10 / sims)  # two one-sided 95 % bounds: a 90 % interval
    assert abs(covered / sims - 0.90) <= 3 * se


@pytest.mark.parametrize("metric", ["roc_auc"])
def test_per_example_bootstrap_ci_coverage(metric):
    if metric == "roc_auc":  # binormal scores: AUC = Phi(shift / sqrt(2))
        true_difference = stats.norm.cdf(1.2 / math.sqrt(2)) - stats.norm.cdf(1.0 / math.sqrt(2))
    else:  # Gaussian errors: rmse = their standard deviation
        true_difference = 1.0 - 0.9
    covered, sims = 0, 150
    for seed in range(sims):
        rng = np.random.default_rng(seed)
        if metric == "roc_auc":
            label = rng.integers(0, 2, 400)
            base, cand = (ModelOutcomes(label, score=shift * label + rng.normal(size=400)) for shift in (1.0, 1.2))
            outcomes = PairedOutcomes(label, base, cand)
        else:
            outcomes = regression(rng, 400, 1.0, 0.9, shared=0.5)
        result = compare(metric, outcomes, n_resamples=300, seed=seed)
        assert result.method == "paired-bootstrap"
        covered += result.ci_low <= true_difference <= result.ci_high
    assert abs(covered / sims - 0.90) <= 3 * math.sqrt(0.90 * 0.10 / sims)


def test_bootstrap_is_deterministic_per_seed():
    outcomes = classification(np.random.default_rng(13), 500, 0.7, 0.72)
    first, again = compare("f1", outcomes, seed=4), compare("f1", outcomes, seed=4)
    other = compare("f1", outcomes, seed=5)
    assert first == again
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)

# ------------------------------------------------- the gate's error rates (issue)


@pytest.mark.parametrize(
    ("metric", "make", "better", "kwargs", "sims"),
    [
        (
            "accuracy",
            lambda b: lambda rng: classification(rng, 2000, 0.8, 0.8 + b),
            0.05,
            {},
            400,
        ),
        (
            "log_loss",
            lambda b: lambda rng: probabilistic(rng, 2000, 1.2, 1.2 + b),
            0.31,  # Phi(1.51) - Phi(1.2): +5 points of accuracy
            {},
            400,
        ),
        (
            "f1",
            lambda b: lambda rng: classification(rng, 2000, 0.8, 0.8 + b),
            0.05,
            {"n_resamples": 200},
            300,
        ),
    ],
)
def test_gate_false_promotion_rate_and_power(metric, make, better, kwargs, sims):
    """Equally good models are promoted at most ~alpha of the time; a model
    5 points better is promoted almost always."""
    false_rate = promotion_rate(make(0.0), metric, sims, **kwargs)
    assert false_rate <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / sims)
    assert false_rate > 0.005  # the test is not vacuously conservative
    assert promotion_rate(make(better), metric, 60, **kwargs) >= 0.9


def test_margin_blocks_promotion_of_small_improvements():
    outcomes = classification(np.random.default_rng(14), 20_000, 0.80, 0.82)
    assert compare("accuracy", outcomes).p_better < 1e-4
    assert compare("accuracy", outcomes, margin=0.05).p_better > 0.99
    bootstrap = [compare("f1", outcomes, margin=m, n_resamples=300).p_better for m in (0.0, 0.02, 0.05)]
    assert bootstrap[0] < 0.01 < bootstrap[1] < 0.99 < bootstrap[2]


def test_tolerance_semantics_for_non_inferiority():
    outcomes = probabilistic(np.random.default_rng(15), 20_000, 1.2, 1.15)  # slightly worse
    strict = compare("log_loss", outcomes)
    lenient = compare("log_loss", outcomes, tolerance=0.05)
    assert strict.improvement < 0
    assert strict.p_worse < ALPHA  # significantly worse at tolerance 0
    assert lenient.p_worse > 1 - ALPHA  # but clearly within 0.05 of the baseline
    assert lenient.p_better == strict.p_better  # tolerance does not touch p_better


def test_mcnemar_thresholds_are_chosen_per_p_value():
    outcomes = mcnemar_outcomes(800, 60, 80, 60)
    exact = compare("accuracy", outcomes)
    mixed = compare("accuracy", outcomes, tolerance=0.01)
    z = compare("accuracy", outcomes, margin=1e-9, tolerance=0.01)
    assert mixed.method == "mcnemar-midp" and mixed.p_better == exact.p_better
    assert mixed.p_worse == z.p_worse != exact.p_worse
    assert z.method == "paired-t"
    assert z.p_better == pytest.approx(exact.p_better, abs=0.02)  # the two tests agree at large n


def test_lower_is_better_orientation():
    outcomes = classification(np.random.default_rng(16), 3000, 0.7, 0.75)
    accuracy, error = compare("accuracy", outcomes), compare("error_rate", outcomes)
    assert error.candidate < error.baseline
    assert error.improvement == pytest.approx(accuracy.improvement, abs=1e-12) and error.improvement > 0
    assert error.p_better == accuracy.p_better
    assert (error.ci_low, error.ci_high) == pytest.approx((accuracy.ci_low, accuracy.ci_high), abs=1e-12)
    swapped = PairedOutcomes(outcomes.label, outcomes.candidate, outcomes.baseline)
    assert compare("error_rate", swapped).improvement == pytest.approx(-error.improvement, abs=1e-12)
    assert compare("rmse", regression(np.random.default_rng(17), 3000, 1.0, 1.3), n_resamples=50).improvement < 0

# ------------------------------------------------ bounds agree with tests; small samples


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mcnemar_bounds_clear_zero_exactly_when_the_test_rejects(confidence):
    alpha = 1 - confidence
    for wins in range(0, 25, 3):
        for losses in range(0, 25, 4):
            result = compare("accuracy", mcnemar_outcomes(100, wins, losses, 10), confidence=confidence)
            assert (result.ci_low > 0) == (result.p_better < alpha), (wins, losses)
            assert (result.ci_high < 0) == (result.p_worse < alpha), (wins, losses)
            assert result.ci_low - 1e-12 <= result.improvement <= result.ci_high + 1e-12



@pytest.mark.parametrize("n", [30, 100])
def test_the_t_reference_holds_the_level_at_small_n(n):
    """Skewed per-example losses at small n: the paired t stays near α where the normal did not."""
    rejections = 0
    sims = 2000
    for seed in range(sims):
        rng = np.random.default_rng(1000 + seed)
        shared = rng.exponential(size=n)
        base, cand = shared + rng.exponential(size=n), shared + rng.exponential(size=n)
        outcomes = PairedOutcomes(np.zeros(n), ModelOutcomes(base), ModelOutcomes(cand))
        rejections += compare("mae", outcomes).p_better < ALPHA
    assert rejections / sims <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / sims)


def test_rmse_is_the_mse_test_at_a_zero_threshold_and_its_bounds_agree_with_its_p_values():
    outcomes = regression(np.random.default_rng(27), 200, 1.0, 0.9, shared=0.5)
    rmse, mse = compare("rmse", outcomes), compare("mse", outcomes)
    assert rmse.method == "paired-t"
    assert (rmse.p_better, rmse.p_worse) == pytest.approx((mse.p_better, mse.p_worse), rel=1e-12)
    assert rmse.improvement == pytest.approx(rmse.baseline - rmse.candidate, abs=1e-15)
    for margin, tolerance in ((0.0, 0.0), (0.05, 0.0), (-0.05, 0.1), (0.2, 0.02)):
        result = compare("rmse", outcomes, margin=margin, tolerance=tolerance)
        assert (result.ci_low > margin) == (result.p_better < ALPHA), margin
        assert (result.ci_high < -tolerance) == (result.p_worse < ALPHA), tolerance
        assert result.ci_low <= result.improvement <= result.ci_high
    assert compare("rmse", outcomes, margin=5.0).p_better == 1.0  # more than the whole baseline rmse