"""Tests for registry_hooks.statistics: references, calibration, edge cases.

scipy.stats, statsmodels and scikit-learn serve as references only; the module
under test must not import them (checked below).
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

import registry_hooks.estimators as est
import registry_hooks.statistics as st
from registry_hooks.estimators import LabelSet
from registry_hooks.statistics import METRICS, ModelOutcomes, PairedOutcomes, compare

MODULE_PATH = Path(st.__file__)
ALPHA = 0.05


# ----------------------------------------------------------------------- helpers


def mcnemar_outcomes(both_right: int, wins: int, losses: int, both_wrong: int) -> PairedOutcomes:
    """Accuracy data with a given 2x2 table; wins = candidate right, baseline wrong."""
    cells = [(0, 0, both_right), (1, 0, wins), (0, 1, losses), (1, 1, both_wrong)]
    baseline = np.concatenate([np.full(k, b) for b, _, k in cells])
    candidate = np.concatenate([np.full(k, c) for _, c, k in cells])
    return PairedOutcomes(np.zeros(len(baseline), int), ModelOutcomes(baseline), ModelOutcomes(candidate))


def noisy_classifier(rng: np.random.Generator, label: np.ndarray, accuracy: float) -> np.ndarray:
    """Binary predictions that are right with probability ``accuracy``, independently."""
    return np.where(rng.random(len(label)) < accuracy, label, 1 - label)


def classification(rng: np.random.Generator, n: int, acc_base: float, acc_cand: float) -> PairedOutcomes:
    label = rng.integers(0, 2, n)
    return PairedOutcomes(
        label,
        ModelOutcomes(noisy_classifier(rng, label, acc_base)),
        ModelOutcomes(noisy_classifier(rng, label, acc_cand)),
    )


def probabilistic(rng: np.random.Generator, n: int, skill_base: float, skill_cand: float) -> PairedOutcomes:
    """Binary models whose logit for the true class is N(skill, 1); returns every field."""
    label = rng.integers(0, 2, n)

    def model(skill: float) -> ModelOutcomes:
        p_true = 1 / (1 + np.exp(-rng.normal(skill, 1.0, n)))
        score = np.where(label == 1, p_true, 1 - p_true)
        return ModelOutcomes((score > 0.5).astype(int), p_true, score)

    return PairedOutcomes(label, model(skill_base), model(skill_cand))


def regression(
    rng: np.random.Generator, n: int, sd_base: float, sd_cand: float, shared: float = 0.0
) -> PairedOutcomes:
    """Gaussian errors with standard deviations sd_* (= population rmse) and
    correlation ``shared`` between the two models."""
    label = rng.normal(0, 3, n)
    common = rng.normal(size=n)

    def model(sd: float) -> ModelOutcomes:
        error = math.sqrt(shared) * common + math.sqrt(1 - shared) * rng.normal(size=n)
        return ModelOutcomes(label + sd * error)

    return PairedOutcomes(label, model(sd_base), model(sd_cand))


def replicates(metric: str, outcomes: PairedOutcomes, n_resamples: int, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of (baseline, candidate) from roc_auc's estimator."""
    values = (outcomes.label, outcomes.baseline.prediction, outcomes.candidate.prediction)
    labels = LabelSet(np.unique(np.concatenate(values)), 1)
    estimate = METRICS[metric].estimate(outcomes, labels, n_resamples, np.random.default_rng(seed))
    assert estimate.replicates is not None
    return estimate.replicates


def promotion_rate(make, metric: str, sims: int, **kwargs) -> float:
    """Share of seeded simulated comparisons where the gate rule would promote."""
    promoted = sum(compare(metric, make(np.random.default_rng(s)), **kwargs).p_better < ALPHA for s in range(sims))
    return promoted / sims


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



# ------------------------------------------------ bounds agree with tests; numeric edges


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mcnemar_bounds_clear_zero_exactly_when_the_test_rejects(confidence):
    alpha = 1 - confidence
    for wins in range(0, 25, 3):
        for losses in range(0, 25, 4):
            result = compare("accuracy", mcnemar_outcomes(100, wins, losses, 10), confidence=confidence)
            assert (result.ci_low > 0) == (result.p_better < alpha), (wins, losses)
            assert (result.ci_high < 0) == (result.p_worse < alpha), (wins, losses)
            assert result.ci_low - 1e-12 <= result.improvement <= result.ci_high + 1e-12


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
