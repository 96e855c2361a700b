"""Tests for registry_hooks.decision: slices (detect and prove, untestable slices, label sets)
and first releases (absolute floors without a baseline)."""

from __future__ import annotations

import numpy as np
import pytest

from registry_hooks.checks import Outcome
from registry_hooks.decision import Verdict
from registry_hooks.statistics import compare
from tests.support.decisions import (
    BETTER, FIRST, SLICE_POLICY, build_evidence, cells, check, finding, first_release_evidence, from_cells, judge, policy,
)


# ---------------------------------------------------------------------------- slices

def test_slice_regression_on_a_small_slice_is_worse_although_better_overall():
    data = cells({"clear": (500, 120, 10, 70), "rain": (200, 60, 5, 35), "fog": (10, 0, 25, 5)})
    decision = judge(policy(**SLICE_POLICY), finding(from_cells(data, slice_column="weather")))
    assert check(decision, "primary:accuracy").outcome == Outcome.PASS
    fog = check(decision, "slice:weather=fog:accuracy")
    assert fog.outcome == Outcome.FAIL_WORSE
    assert fog.numbers["n"] == 40
    assert fog.numbers["baseline"] == pytest.approx(35 / 40)
    assert fog.numbers["candidate"] == pytest.approx(10 / 40)
    assert fog.numbers["p_worse_adjusted"] < 0.05
    assert "regressed beyond tolerance" in fog.message and "n=40" in fog.message
    assert check(decision, "slice:weather=clear:accuracy").outcome == Outcome.PASS
    assert check(decision, "slice:weather=rain:accuracy").outcome == Outcome.PASS
    assert decision.verdict == Verdict.REFUSE_WORSE
    assert decision.reasons == [fog.message]


def test_slice_below_min_size_is_skipped():
    data = cells({"clear": (500, 120, 10, 70), "rain": (200, 60, 5, 35), "fog": (10, 0, 5, 5)})
    decision = judge(policy(**SLICE_POLICY), finding(from_cells(data, slice_column="weather")))
    fog = check(decision, "slice:weather=fog:accuracy")
    assert fog.outcome == Outcome.SKIP
    assert fog.numbers == {"n": 20}
    assert "20 examples, below the minimum 30" in fog.message
    assert decision.verdict == Verdict.PROMOTE


def test_slice_metric_can_differ_from_the_primary():
    data = cells({"clear": (500, 120, 10, 70), "rain": (200, 60, 5, 35)})
    section = {"slices": {"columns": ["weather"], "metric": "error_rate", "min_size": 30, "tolerance": 0.05}}
    decision = judge(policy(**section), finding(from_cells(data, slice_column="weather")))
    assert check(decision, "slice:weather=clear:error_rate").outcome == Outcome.PASS
    assert check(decision, "slice:weather=rain:error_rate").numbers["metric"] == "error_rate"


@pytest.mark.parametrize("present", [True, False])
def test_slice_column_required_by_policy_but_absent_is_insufficient(present):
    data = cells({"clear": (500, 120, 10, 70), "rain": (200, 60, 5, 35)})
    evidence = from_cells(data, slice_column="weather" if present else None)
    section = {"slices": {"columns": ["weather", "region"], "min_size": 30, "tolerance": 0.05}}
    decision = judge(policy(**section), finding(evidence))
    region = check(decision, "slice:region")
    assert region.outcome == Outcome.FAIL_INSUFFICIENT
    assert "requires slice column 'region'" in region.message and "slices=region" in region.message
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    if present:
        assert check(decision, "slice:weather=clear:accuracy").outcome == Outcome.PASS
    else:
        assert check(decision, "slice:weather").outcome == Outcome.FAIL_INSUFFICIENT


def test_slices_are_corrected_for_their_number_in_detect_mode():
    # Slice a: 20 losses against 10 wins, p_worse ~ 0.035 on its own; slice b: only wins.
    data = cells({"a": (100, 10, 20, 10), "b": (40, 30, 0, 0)})
    evidence = from_cells(data, slice_column="grp")
    outcomes = evidence.outcomes
    grp = evidence.slices["grp"]
    raw = {g: compare("accuracy", outcomes.subset(grp.codes == grp.names.index(g))).p_worse for g in ("a", "b")}
    assert 0.025 < raw["a"] < 0.05  # uncorrected, slice a would be significantly worse

    section = {"slices": {"columns": ["grp"], "min_size": 30, "tolerance": 0.0}}
    corrected = judge(policy(**section), finding(evidence))
    a = check(corrected, "slice:grp=a:accuracy")
    assert a.numbers["p_worse"] == pytest.approx(raw["a"], rel=1e-5)  # the raw p-value, as reported
    assert a.numbers["p_worse_adjusted"] == pytest.approx(2 * raw["a"]) and a.numbers["slices_tested"] == 2
    assert a.numbers["ci_high"] > 0  # the one-sided 97.5 % bound (Bonferroni over 2) does not exclude 0
    assert a.outcome == Outcome.WARN and "not significantly" in a.message  # detect: a warning, not a refusal
    assert corrected.verdict == Verdict.PROMOTE and any("warning:" in r for r in corrected.reasons)

    # With slice b below min_size, only slice a is tested: no correction, and it is significantly worse.
    alone = judge(policy(slices={"columns": ["grp"], "min_size": 100, "tolerance": 0.0}), finding(evidence))
    assert check(alone, "slice:grp=b:accuracy").outcome == Outcome.SKIP
    a_alone = check(alone, "slice:grp=a:accuracy")
    assert a_alone.numbers["p_worse_adjusted"] == pytest.approx(raw["a"])
    assert a_alone.outcome == Outcome.FAIL_WORSE and a_alone.numbers["ci_high"] < 0
    assert alone.verdict == Verdict.REFUSE_WORSE


def test_prove_mode_requires_every_slice_shown_within_tolerance():
    data = cells({"a": (100, 10, 20, 10), "b": (40, 30, 0, 0), "c": (400, 40, 10, 50)})
    evidence = from_cells(data, slice_column="grp")
    section = {"slices": {"columns": ["grp"], "min_size": 30, "tolerance": 0.05, "mode": "prove"}}
    decision = judge(policy(**section), finding(evidence))
    a, b, c = (check(decision, f"slice:grp={g}:accuracy") for g in "abc")
    assert a.outcome == Outcome.FAIL_INSUFFICIENT and "cannot show it is within tolerance" in a.message
    assert a.numbers["ci_low_within"] <= -0.05  # the message's bound, at level α, agrees with the outcome
    assert (b.outcome, c.outcome) == (Outcome.PASS, Outcome.PASS) and b.numbers["ci_low_within"] > -0.05
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    detect = judge(policy(slices=section["slices"] | {"mode": "detect"}), finding(evidence))
    assert check(detect, "slice:grp=a:accuracy").outcome in (Outcome.PASS, Outcome.WARN) and detect.verdict == Verdict.PROMOTE


# ------------------------------------------------------------------------- first release



def test_first_release_without_thresholds_is_promoted():
    decision = judge(policy(), first_release_evidence(accuracy_count=100), baseline=FIRST)
    assert decision.verdict == Verdict.PROMOTE
    assert [c.name for c in decision.checks] == ["evidence", "first_release"]
    assert "no absolute thresholds configured" in check(decision, "first_release").message
    assert decision.reasons == ["all checks passed against baseline none (first release)"]


def test_first_release_meeting_the_thresholds_is_promoted():
    section = {"first_release": [{"metric": "accuracy", "min": 0.8}, {"metric": "log_loss", "max": 0.5}]}
    decision = judge(policy(**section), first_release_evidence(proba=True), baseline=FIRST)
    assert decision.verdict == Verdict.PROMOTE
    accuracy = check(decision, "first_release:accuracy")
    assert accuracy.outcome == Outcome.PASS and accuracy.numbers == {"value": pytest.approx(0.85), "min": 0.8, "max": None}
    log_loss = check(decision, "first_release:log_loss")
    expected = 0.85 * -np.log(0.8) + 0.15 * -np.log(0.3)
    assert log_loss.outcome == Outcome.PASS and log_loss.numbers["value"] == pytest.approx(expected)
    assert "accuracy = 0.8500, required ≥ 0.8" in accuracy.message


@pytest.mark.parametrize(
    "threshold, text",
    [
        ({"metric": "accuracy", "min": 0.9}, "accuracy = 0.8500, required ≥ 0.9"),
        ({"metric": "accuracy", "max": 0.8}, "accuracy = 0.8500, required ≤ 0.8"),
        ({"metric": "accuracy", "min": 0.5, "max": 0.8}, "required ≥ 0.5 and ≤ 0.8"),
        ({"metric": "error_rate", "max": 0.1}, "error_rate = 0.1500, required ≤ 0.1"),
    ],
)
def test_first_release_failing_a_threshold_is_worse(threshold, text):
    decision = judge(policy(first_release=[threshold]), first_release_evidence(), baseline=FIRST)
    failed = check(decision, f"first_release:{threshold['metric']}")
    assert failed.outcome == Outcome.FAIL_WORSE and decision.verdict == Verdict.REFUSE_WORSE
    assert text in failed.message
    assert decision.reasons == [failed.message]


def test_first_release_threshold_needing_probabilities_without_them_is_insufficient():
    decision = judge(policy(first_release=[{"metric": "log_loss", "max": 0.5}]), first_release_evidence(), baseline=FIRST)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert "cannot be scored" in decision.reasons[0]


# ------------------------------------------------------ label sets and untestable slices (issue 9)


def _two_slices_one_without_positives():
    rng = np.random.default_rng(31)
    label = np.r_[rng.integers(0, 2, 600), np.zeros(100, int)]
    baseline = np.where(rng.random(700) < 0.8, label, 1 - label)
    candidate = np.where(rng.random(700) < 0.85, label, 1 - label)
    group = np.r_[np.full(600, "day"), np.full(100, "night")]
    return build_evidence(label, {"prediction": candidate}, {"prediction": baseline}, slices={"light": group})


@pytest.mark.parametrize("untestable, outcome, verdict", [("block", Outcome.FAIL_INSUFFICIENT, Verdict.REFUSE_INSUFFICIENT),
                                                          ("skip", Outcome.SKIP, None)])
def test_a_slice_where_f1_is_undefined_is_not_tested_and_the_policy_says_if_that_blocks(untestable, outcome, verdict):
    section = {"primary": {"metric": "f1"}, "slices": {"columns": ["light"], "untestable": untestable}}
    decision = judge(policy(**section), finding(_two_slices_one_without_positives()))
    night = check(decision, "slice:light=night:f1")
    assert night.outcome == outcome
    assert "not tested" in night.message and "0 are class 1" in night.message
    if verdict:
        assert decision.verdict == verdict


def test_declared_classes_turn_an_unexpected_class_into_an_evidence_error():
    data = cells({"all": BETTER})
    stray = data["baseline"].copy()
    stray[:5] = 2
    evidence = build_evidence(data["label"], {"prediction": data["candidate"]}, {"prediction": stray})
    decision = judge(policy(evidence={"classes": [0, 1]}), finding(evidence))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert "predictions [2] outside the policy's evidence.classes [0, 1]" in decision.reasons[0]


def test_more_slices_than_the_bootstrap_can_resolve_is_not_enough_evidence():
    rng = np.random.default_rng(32)
    label = rng.integers(0, 2, 6000)
    base, cand = (np.where(rng.random(6000) < acc, label, 1 - label) for acc in (0.8, 0.85))
    groups = np.repeat([f"g{i}" for i in range(60)], 100)
    evidence = build_evidence(label, {"prediction": cand}, {"prediction": base}, slices={"grp": groups})
    section = {"confidence": 0.95, "slices": {"columns": ["grp"], "metric": "f1"}, "evidence": {"bootstrap_resamples": 500}}
    decision = judge(policy(**section), finding(evidence))
    blind = check(decision, "slices:f1")
