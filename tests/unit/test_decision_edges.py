"""The cases issue 9 lists under "Found", each reproduced through the public evidence path.

Outcomes bytes (``outcomes_table``) and a manifest, parsed by ``parse_manifest`` /
``parse_outcomes`` and judged by ``decide`` (via ``benchmarks/simulate.py``, the same path the
calibration benchmark uses). Each test states what must be true. Every one of them failed on
66431b1, the commit before issue 9's fix, for the reason its name gives (the docstring says what
the gate did there), except the two marked "already true", which are kept so they stay true.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.metrics import f1_score, log_loss

from benchmarks.simulate import finding, judge, outcome, policy
from registry_hooks.checks import Kind, Outcome
from registry_hooks.decision import Verdict
from registry_hooks.policy import PolicyError


def pairs(both_right: int, wins: int, losses: int, both_wrong: int, seed: int = 0) -> dict:
    """Binary outcomes with exact counts of (both right, only the candidate right, only the
    baseline right, both wrong), in shuffled order, as the arguments of ``finding``."""
    rng = np.random.default_rng(seed)
    kinds = np.repeat([(1, 1), (0, 1), (1, 0), (0, 0)], [both_right, wins, losses, both_wrong], axis=0)
    kinds = kinds[rng.permutation(len(kinds))]
    label = rng.integers(0, 2, len(kinds))
    right = lambda ok: np.where(ok == 1, label, 1 - label)  # noqa: E731
    return {"label": label, "baseline": {"prediction": right(kinds[:, 0])}, "candidate": {"prediction": right(kinds[:, 1])}}


# ------------------------------------------------------------------ one row, two rows


@pytest.mark.parametrize("metric", ["f1", "precision", "recall", "balanced_accuracy"])
def test_one_row_never_promotes_a_classifier(metric):
    """66431b1: the one-row bootstrap gave p = 1/1001, and a promotion."""
    decision = judge(policy(primary={"metric": metric}), finding([1], {"prediction": [1]}, {"prediction": [0]}))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT


def test_one_row_never_promotes_a_regressor():
    """66431b1: rmse on one row, bootstrapped: p = 1/1001, and a promotion."""
    evidence = finding([0.0], {"prediction": [0.5]}, {"prediction": [1.0]}, task="regression")
    assert judge(policy(primary={"metric": "rmse"}), evidence).verdict == Verdict.REFUSE_INSUFFICIENT


@pytest.mark.parametrize("metric", ["accuracy", "error_rate", "mae", "mse"])
def test_one_row_of_a_mean_metric_is_not_enough_evidence(metric):
    """Already true (a single difference has no variance estimate); kept so it stays true."""
    task = "regression" if metric in ("mae", "mse") else "classification"
    label, better, worse = ([0.0], [0.5], [1.0]) if task == "regression" else ([1], [1], [0])
    evidence = finding(label, {"prediction": better}, {"prediction": worse}, task=task)
    assert judge(policy(primary={"metric": metric}), evidence).verdict == Verdict.REFUSE_INSUFFICIENT


def test_two_rows_never_promote_on_roc_auc():
    """66431b1: one row per class, stratified bootstrap: every resample the same, a promotion."""
    label = [0, 1]
    candidate = {"prediction": [0, 1], "score": [0.1, 0.9]}
    baseline = {"prediction": [1, 0], "score": [0.9, 0.1]}
    decision = judge(policy(primary={"metric": "roc_auc"}), finding(label, candidate, baseline))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT


def test_zero_variance_on_two_rows_never_promotes():
    """66431b1: two rows, both won, a margin of 0.05: zero variance gave p = 0, and a promotion."""
    decision = judge(policy(primary={"metric": "accuracy", "margin": 0.05}), finding(**pairs(0, 2, 0, 0)))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT


def test_zero_variance_never_yields_p_zero():
    """66431b1: 30 rows, all won: p = 0 exactly. A p-value of 0 claims certainty no sample gives."""
    decision = judge(policy(primary={"metric": "accuracy", "margin": 0.05}), finding(**pairs(0, 30, 0, 0)))
    primary = next(c for c in decision.checks if c.name == "primary:accuracy")
    assert 0 < primary.numbers["p_better"] < 0.05


def test_first_release_needs_more_than_one_row():
    """66431b1: a first release passed accuracy >= 0.95 on one row."""
    rules = policy(first_release=[{"metric": "accuracy", "min": 0.95}])
    decision = judge(rules, finding([1], {"prediction": [1]}, None), first_release=True)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT


# --------------------------------------------------------------------------- label sets


def stray_class() -> dict:
    """2,000 balanced rows; the baseline predicts a third class on 5 label-0 rows it had right.

    Binary f1 (positive label 1): baseline 760 true positives, candidate 750, the same false
    positives: the baseline is better. A macro average over {0, 1, 2} instead charges the baseline
    an f1 of 0 for class 2, which the candidate never predicts: "+0.25" for the candidate.
    """
    rng = np.random.default_rng(5)
    label = np.repeat([0, 1], 1000)
    baseline, candidate = label.copy(), label.copy()
    for prediction, wrong_positives, wrong_negatives in ((baseline, 240, 250), (candidate, 250, 250)):
        prediction[rng.choice(1000, wrong_negatives, replace=False)] = 1
        prediction[1000 + rng.choice(1000, wrong_positives, replace=False)] = 0
    stray = rng.choice(np.flatnonzero((label == 0) & (baseline == 0)), 5, replace=False)
    baseline[stray] = 2
    order = rng.permutation(2000)
    return {"label": label[order], "baseline": {"prediction": baseline[order]}, "candidate": {"prediction": candidate[order]}}


def test_stray_class_case_is_the_one_the_issue_describes():
    """The construction, checked with scikit-learn: binary f1 says the baseline is better."""
    data = stray_class()
    label, base, cand = data["label"], data["baseline"]["prediction"], data["candidate"]["prediction"]
    assert len(label) == 2000 and np.count_nonzero(base == 2) == 5 and set(np.unique(cand)) == {0, 1}
    assert f1_score(label == 1, base == 1) > f1_score(label == 1, cand == 1)
    assert f1_score(label, cand, average="macro", zero_division=0) - f1_score(label, base, average="macro", zero_division=0) == pytest.approx(0.25, abs=0.01)


def test_stray_class_never_turns_binary_f1_into_a_promotion():
    """66431b1: f1 became a macro average, +0.248 with p = 0.004: promoted."""
    assert judge(policy(primary={"metric": "f1"}), finding(**stray_class())).verdict != Verdict.PROMOTE


@pytest.mark.parametrize("metric", ["f1", "precision", "recall"])
def test_one_class_slice_never_hides_a_regression(metric):
    """A 100-row all-negative slice where the candidate's accuracy falls from 1.00 to 0.50, on
    top of 1,000 rows where it is far better (0.70 -> 0.90), so the primary check passes.
    66431b1: the metric was 0 for both models on that slice, "within tolerance": promoted."""
    mixed = pairs(630, 270, 70, 30, seed=3)
    label = np.r_[mixed["label"], np.zeros(100, int)]
    baseline = {"prediction": np.r_[mixed["baseline"]["prediction"], np.zeros(100, int)]}
    candidate = {"prediction": np.r_[mixed["candidate"]["prediction"], np.tile([0, 1], 50)]}
    segment = np.repeat(["mixed", "negatives"], [1000, 100])
    rules = policy(slices={"columns": ["segment"], "metric": metric})
    decision = judge(rules, finding(label, candidate, baseline, slices={"segment": segment}))
    assert outcome(decision, Kind.PRIMARY, "accuracy") == Outcome.PASS
    assert decision.verdict != Verdict.PROMOTE


# ------------------------------------------------------------------ messages and levels


def test_a_pass_never_shows_a_bound_below_the_margin():
    """Mid-p McNemar p = 0.035 (58 wins, 40 losses in 1,000): a pass. 66431b1 printed the
    two-sided 95 % Wald interval, which starts at -0.0014."""
    decision = judge(policy(), finding(**pairs(700, 58, 40, 202)))
    primary = next(c for c in decision.checks if c.name == "primary:accuracy")
    assert primary.outcome == Outcome.PASS
    assert primary.numbers["ci_low"] >= 0
    assert all(float(low) >= 0 for low in re.findall(r"CI \[(-?\d+(?:\.\d+)?)", primary.message))


def test_regression_is_called_at_the_same_level_as_promotion():
    """The mirror image of the case above: worse with one-sided p = 0.035. 66431b1 called it
    insufficient: its "worse" needed the two-sided interval, a one-sided 2.5 % test."""
    decision = judge(policy(), finding(**pairs(700, 40, 58, 202)))
    assert outcome(decision, Kind.PRIMARY, "accuracy") == Outcome.FAIL_WORSE
    assert decision.verdict == Verdict.REFUSE_WORSE


# ------------------------------------------------------------------------ input checks


def test_policy_refuses_settings_that_cannot_reach_significance():
    """66431b1: accepted; the smallest bootstrap p is 1/101 > 0.005, so nothing could ever pass."""
    with pytest.raises(PolicyError):
        policy(primary={"metric": "f1"}, confidence=0.995, evidence={"bootstrap_resamples": 100})


def test_overflowing_squared_errors_never_pass():
    """The candidate's errors are 1.5 times the baseline's, on every row; all are finite.
    66431b1: both squared errors overflowed to inf, the difference was NaN, the check passed."""
    rng = np.random.default_rng(2)
    baseline = 1e155 * (1 + rng.random(200))
    evidence = finding(np.zeros(200), {"prediction": 1.5 * baseline}, {"prediction": baseline}, task="regression")
    decision = judge(policy(primary={"metric": "mae"}, secondary=[{"metric": "mse", "tolerance": 0.0}]), evidence)
    assert outcome(decision, Kind.SECONDARY, "mse").failing


def test_nan_labels_in_classification_evidence_are_an_evidence_error():
    """66431b1: accepted, and f1 treated NaN as a class."""
    found = finding([0.0, 1.0, np.nan, 1.0], {"prediction": [0, 1, 1, 1]}, {"prediction": [0, 1, 0, 1]})
    assert found.evidence is None and found.error


@pytest.mark.parametrize("field, value", [("proba_label", 1.2), ("proba_label", -0.1), ("score", 1.5)])
def test_out_of_range_probabilities_are_an_evidence_error(field, value):
    """Already true on the public path (the clipping the issue names is inside compare())."""
    model = {"prediction": [1, 0, 1], field: [0.9, value, 0.8]}
    found = finding([1, 0, 1], model, {"prediction": [1, 0, 1], field: [0.7] * 3})
    assert found.evidence is None and "probabilities in [0, 1]" in found.error


def test_log_loss_agrees_with_scikit_learn_at_probability_zero():
    """66431b1: the floor was 1e-15, scikit-learn's is machine epsilon (-log: 34.5 vs 36.0)."""
    label = np.tile([0, 1], 500)
    proba_label = np.full(1000, 0.8)
    proba_label[1] = 0.0  # a label-1 row given probability 0
    rules = policy(first_release=[{"metric": "log_loss", "max": 100.0}])
    decision = judge(rules, finding(label, {"prediction": label, "proba_label": proba_label}, None), first_release=True)
    value = next(c for c in decision.checks if c.name == "first_release:log_loss").numbers["value"]
    assert value == pytest.approx(log_loss(label, np.where(label == 1, proba_label, 1 - proba_label)), rel=1e-9)
