"""Tests for registry_hooks.decision: verdicts, the checks behind them and their messages.

Evidence is built the way the server builds it: ``outcomes_table`` bytes plus a manifest, through
``parse_manifest`` / ``parse_outcomes``. Classification outcomes are generated from exact cell
counts (both right, candidate-only right, baseline-only right, both wrong) so that every number a
check reports is known in advance.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from registry_hooks.decision import (
    FAIL_INSUFFICIENT,
    FAIL_WORSE,
    PASS,
    PROMOTE,
    REFUSE_INSUFFICIENT,
    REFUSE_WORSE,
    SKIP,
    WARN,
    Baseline,
    Decision,
    DriftFinding,
    EvidenceFinding,
    decide,
)
from registry_hooks.drift_summary import ColumnDrift, DriftSummary, SchemaChange, TableInfo, parse_drift_summary
from registry_hooks.evidence import FORMAT, Evidence, VersionRef, outcomes_table, parse_manifest, parse_outcomes
from registry_hooks.policy import ModelPolicy, Policy
from registry_hooks.statistics import compare

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
CANDIDATE = VersionRef("churn", "2")
BASELINE = Baseline("1", "alias 'champion'")
FIRST = Baseline(None, "none (first release)")
DATA_HASH = hashlib.sha256(b"evaluation data v1").hexdigest()
NEWER_HASH = hashlib.sha256(b"evaluation data v2").hexdigest()

# (both right, wins: only the candidate right, losses: only the baseline right, both wrong)
BETTER = (700, 150, 30, 120)  # baseline 0.73, candidate 0.85
WORSE = (700, 30, 150, 120)  # baseline 0.85, candidate 0.73


# --------------------------------------------------------------------------- helpers


def policy(**section) -> ModelPolicy:
    """The effective policy for ``section`` as the defaults, through the real parser."""
    return Policy.from_dict({"version": 1, "defaults": section}).default


def cells(groups: dict[str, tuple[int, int, int, int]], seed: int = 0) -> dict[str, np.ndarray]:
    """Binary labels and predictions with exact cell counts per slice value, shuffled."""
    rng = np.random.default_rng(seed)
    base_ok, cand_ok, group = [], [], []
    for name, (both_right, wins, losses, both_wrong) in groups.items():
        for b, c, k in ((1, 1, both_right), (0, 1, wins), (1, 0, losses), (0, 0, both_wrong)):
            base_ok += [b] * k
            cand_ok += [c] * k
            group += [name] * k
    order = rng.permutation(len(group))
    base_ok, cand_ok, group = np.array(base_ok)[order], np.array(cand_ok)[order], np.array(group)[order]
    label = rng.integers(0, 2, len(group))
    return {
        "label": label,
        "baseline": np.where(base_ok == 1, label, 1 - label),
        "candidate": np.where(cand_ok == 1, label, 1 - label),
        "baseline_ok": base_ok,
        "candidate_ok": cand_ok,
        "group": group,
    }


def build_evidence(
    label,
    candidate_outcomes: dict,
    baseline_outcomes: dict | None,
    *,
    slices: dict | None = None,
    candidate: VersionRef = CANDIDATE,
    baseline: tuple[str, str] | None = ("churn", "1"),
    created_at: datetime = NOW - timedelta(hours=1),
    data_hash: str = DATA_HASH,
    task: str = "classification",
    run_id: str = "ev-run",
) -> Evidence:
    n = len(label)
    raw = outcomes_table(row_id=range(n), label=label, candidate=candidate_outcomes, baseline=baseline_outcomes, slices=slices)
    manifest = {
        "format": FORMAT,
        "task": task,
        "candidate": {"name": candidate.name, "version": candidate.version},
        "baseline": {"name": baseline[0], "version": baseline[1]} if baseline else None,
        "data": {"name": "eval", "content_hash": data_hash, "n_rows": n},
        "created_at": created_at.isoformat(),
        "outcomes": {"sha256": hashlib.sha256(raw).hexdigest()},
        "slice_columns": list(slices or ()),
        "evaluator": "unit-test",
    }
    return parse_outcomes(raw, parse_manifest(json.dumps(manifest)), run_id)


def from_cells(data: dict, *, slice_column: str | None = None, candidate_proba=None, baseline_proba=None, **kwargs) -> Evidence:
    cand = {"prediction": data["candidate"]}
    base = {"prediction": data["baseline"]}
    if candidate_proba is not None:
        cand["proba_label"] = candidate_proba
    if baseline_proba is not None:
        base["proba_label"] = baseline_proba
    slices = {slice_column: data["group"]} if slice_column else None
    return build_evidence(data["label"], cand, base, slices=slices, **kwargs)


def finding(
    evidence: Evidence | None,
    *,
    hashes: set[str] | None = None,
    run_time: datetime = NOW - timedelta(hours=1),
    newer: str | None = None,
    error: str | None = None,
    run_id: str = "ev-run",
) -> EvidenceFinding:
    return EvidenceFinding(
        run_id=run_id,
        evidence=evidence,
        error=error,
        logged_data_hashes=frozenset({DATA_HASH} if hashes is None else hashes),
        run_time=run_time,
        newer_data_hash=newer,
    )


def judge(model_policy: ModelPolicy, evidence_finding, *, baseline=BASELINE, drift=None, now=NOW) -> Decision:
    return decide(model_policy, CANDIDATE, baseline, evidence_finding, drift, now)


def check(decision: Decision, name: str):
    matches = [c for c in decision.checks if c.name == name]
    assert len(matches) == 1, [c.name for c in decision.checks]
    return matches[0]


def better_finding(**kwargs) -> EvidenceFinding:
    return finding(from_cells(cells({"all": BETTER})), **kwargs)


# ------------------------------------------------------------------- primary metric


def test_clearly_better_candidate_is_promoted_with_the_numbers():
    decision = judge(policy(), better_finding())
    assert decision.verdict == PROMOTE and decision.approved
    assert [c.name for c in decision.checks] == ["evidence", "primary:accuracy"]
    assert check(decision, "evidence").outcome == PASS
    primary = check(decision, "primary:accuracy")
    assert primary.outcome == PASS
    numbers = primary.numbers
    assert numbers["metric"] == "accuracy" and numbers["n"] == 1000
    assert numbers["candidate"] == pytest.approx(0.85)
    assert numbers["baseline"] == pytest.approx(0.73)
    assert numbers["improvement"] == pytest.approx(0.12)
    assert numbers["method"] == "mcnemar-midp"
    assert numbers["p_better"] < 1e-6
    assert 0 < numbers["ci_low"] < 0.12 < numbers["ci_high"]
    assert numbers["confidence"] == 0.95 and numbers["margin"] == 0.0
    for text in ("candidate 0.8500 vs baseline 0.7300", "improvement 0.1200", "one-sided 95% lower bound", "n=1000",
                 "mcnemar-midp"):
        assert text in primary.message
    assert decision.evidence_run_ids == ["ev-run"]
    assert decision.reasons == ["all checks passed against baseline v1 (alias 'champion')"]


def test_clearly_worse_candidate_is_refused_as_worse():
    decision = judge(policy(), finding(from_cells(cells({"all": WORSE}))))
    assert decision.verdict == REFUSE_WORSE and not decision.approved
    primary = check(decision, "primary:accuracy")
    assert primary.outcome == FAIL_WORSE
    assert primary.numbers["improvement"] == pytest.approx(-0.12)
    assert primary.numbers["ci_high"] < 0
    assert primary.numbers["p_better"] > 0.99
    assert "does not improve by the required margin 0" in primary.message
    assert "candidate 0.7300 vs baseline 0.8500" in primary.message
    assert decision.reasons == [primary.message]


def test_identical_models_are_insufficient_evidence():
    data = cells({"all": (800, 0, 0, 200)})
    decision = judge(policy(), finding(from_cells(data)))
    primary = check(decision, "primary:accuracy")
    assert decision.verdict == REFUSE_INSUFFICIENT
    assert primary.outcome == FAIL_INSUFFICIENT
    assert "0 discordant pairs (rows where exactly one model is right), below the minimum of 10" in primary.message


def test_equally_good_but_different_models_are_insufficient_evidence():
    decision = judge(policy(), finding(from_cells(cells({"all": (700, 50, 50, 200)}))))
    primary = check(decision, "primary:accuracy")
    assert decision.verdict == REFUSE_INSUFFICIENT and primary.outcome == FAIL_INSUFFICIENT
    assert primary.numbers["ci_low"] < 0 < primary.numbers["ci_high"]
    assert 0.3 < primary.numbers["p_better"] < 0.7


def test_small_improvement_on_few_examples_is_insufficient():
    decision = judge(policy(), finding(from_cells(cells({"all": (30, 3, 1, 6)}))))
    assert decision.verdict == REFUSE_INSUFFICIENT
    assert "4 discordant pairs" in check(decision, "primary:accuracy").message
    more = judge(policy(), finding(from_cells(cells({"all": (300, 10, 6, 60)}))))  # enough pairs, still unclear
    assert more.verdict == REFUSE_INSUFFICIENT
    assert check(more, "primary:accuracy").numbers["improvement"] == pytest.approx(4 / 376)


@pytest.mark.parametrize(
    "margin, verdict, outcome",
    [(0.05, PROMOTE, PASS), (0.10, REFUSE_INSUFFICIENT, FAIL_INSUFFICIENT), (0.20, REFUSE_WORSE, FAIL_WORSE)],
)
def test_primary_margin(margin, verdict, outcome):
    decision = judge(policy(primary={"metric": "accuracy", "margin": margin}), better_finding())
    primary = check(decision, "primary:accuracy")
    assert (decision.verdict, primary.outcome) == (verdict, outcome)
    assert primary.numbers["margin"] == margin
    assert primary.numbers["method"] == "paired-t"  # McNemar only tests a zero margin
    assert f"{margin:g}" in primary.message


def test_higher_confidence_can_turn_a_pass_into_insufficient():
    data = cells({"all": (700, 60, 35, 205)})
    evidence = finding(from_cells(data))
    assert judge(policy(confidence=0.95), evidence).verdict == PROMOTE
    strict = judge(policy(confidence=0.999), evidence)
    assert strict.verdict == REFUSE_INSUFFICIENT
    assert check(strict, "primary:accuracy").numbers["confidence"] == 0.999


# ----------------------------------------------------------------- secondary metrics


def probas(ok: np.ndarray, right: float, wrong: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.where(ok == 1, right, wrong) + rng.uniform(-0.02, 0.02, len(ok)), 0.0, 1.0)


def test_secondary_log_loss_regression_beyond_tolerance_is_worse():
    data = cells({"all": BETTER})
    evidence = from_cells(
        data,
        candidate_proba=probas(data["candidate_ok"], 0.55, 0.05, 1),  # right more often, but badly calibrated
        baseline_proba=probas(data["baseline_ok"], 0.90, 0.20, 2),
    )
    decision = judge(policy(secondary=[{"metric": "log_loss", "tolerance": 0.05}]), finding(evidence))
    assert check(decision, "primary:accuracy").outcome == PASS
    secondary = check(decision, "secondary:log_loss")
    assert secondary.outcome == FAIL_WORSE
    assert decision.verdict == REFUSE_WORSE
    assert secondary.numbers["candidate"] > secondary.numbers["baseline"] + 0.05  # log loss: lower is better
    assert secondary.numbers["improvement"] < -0.05
    assert secondary.numbers["tolerance"] == 0.05
    assert secondary.numbers["p_worse"] < 0.05 and secondary.numbers["ci_high"] < -0.05
    assert "regressed beyond tolerance" in secondary.message and "tolerance 0.05" in secondary.message
    assert decision.reasons == [secondary.message]


def test_secondary_within_tolerance_passes():
    data = cells({"all": BETTER})
    evidence = from_cells(
        data,
        candidate_proba=probas(data["candidate_ok"], 0.85, 0.25, 1),
        baseline_proba=probas(data["baseline_ok"], 0.85, 0.25, 2),
    )
    decision = judge(policy(secondary=[{"metric": "log_loss", "tolerance": 0.05}]), finding(evidence))
    assert check(decision, "secondary:log_loss").outcome == PASS
    assert "within tolerance" in check(decision, "secondary:log_loss").message
    assert decision.verdict == PROMOTE


def test_secondary_metric_the_evidence_cannot_support_is_insufficient():
    decision = judge(policy(secondary=[{"metric": "log_loss", "tolerance": 0.05}]), better_finding())
    assert decision.verdict == REFUSE_INSUFFICIENT
    failing = [c for c in decision.checks if c.outcome == FAIL_INSUFFICIENT]
    assert len(failing) == 1 and failing[0].name == "evidence"
    assert "cannot be scored" in failing[0].message and "proba_label" in failing[0].message


# ---------------------------------------------------------------------------- slices

SLICE_POLICY = {"slices": {"columns": ["weather"], "min_size": 30, "tolerance": 0.05}}


def test_slice_regression_on_a_small_slice_is_worse_although_better_overall():
    data = cells({"clear": (500, 120, 10, 70), "rain": (200, 60, 5, 35), "fog": (10, 0, 25, 5)})
    decision = judge(policy(**SLICE_POLICY), finding(from_cells(data, slice_column="weather")))
    assert check(decision, "primary:accuracy").outcome == PASS
    fog = check(decision, "slice:weather=fog:accuracy")
    assert fog.outcome == FAIL_WORSE
    assert fog.numbers["n"] == 40
    assert fog.numbers["baseline"] == pytest.approx(35 / 40)
    assert fog.numbers["candidate"] == pytest.approx(10 / 40)
    assert fog.numbers["p_worse_adjusted"] < 0.05
    assert "regressed beyond tolerance" in fog.message and "n=40" in fog.message
    assert check(decision, "slice:weather=clear:accuracy").outcome == PASS
    assert check(decision, "slice:weather=rain:accuracy").outcome == PASS
    assert decision.verdict == REFUSE_WORSE
    assert decision.reasons == [fog.message]


def test_slice_below_min_size_is_skipped():
    data = cells({"clear": (500, 120, 10, 70), "rain": (200, 60, 5, 35), "fog": (10, 0, 5, 5)})
    decision = judge(policy(**SLICE_POLICY), finding(from_cells(data, slice_column="weather")))
    fog = check(decision, "slice:weather=fog:accuracy")
    assert fog.outcome == SKIP
    assert fog.numbers == {"n": 20}
    assert "20 examples, below the minimum 30" in fog.message
    assert decision.verdict == PROMOTE


def test_slice_metric_can_differ_from_the_primary():
    data = cells({"clear": (500, 120, 10, 70), "rain": (200, 60, 5, 35)})
    section = {"slices": {"columns": ["weather"], "metric": "error_rate", "min_size": 30, "tolerance": 0.05}}
    decision = judge(policy(**section), finding(from_cells(data, slice_column="weather")))
    assert check(decision, "slice:weather=clear:error_rate").outcome == PASS
    assert check(decision, "slice:weather=rain:error_rate").numbers["metric"] == "error_rate"


@pytest.mark.parametrize("present", [True, False])
def test_slice_column_required_by_policy_but_absent_is_insufficient(present):
    data = cells({"clear": (500, 120, 10, 70), "rain": (200, 60, 5, 35)})
    evidence = from_cells(data, slice_column="weather" if present else None)
    section = {"slices": {"columns": ["weather", "region"], "min_size": 30, "tolerance": 0.05}}
    decision = judge(policy(**section), finding(evidence))
    region = check(decision, "slice:region")
    assert region.outcome == FAIL_INSUFFICIENT
    assert "requires slice column 'region'" in region.message and "slices=region" in region.message
    assert decision.verdict == REFUSE_INSUFFICIENT
    if present:
        assert check(decision, "slice:weather=clear:accuracy").outcome == PASS
    else:
        assert check(decision, "slice:weather").outcome == FAIL_INSUFFICIENT


def test_slices_are_corrected_for_their_number_in_detect_mode():
    # Slice a: 20 losses against 10 wins, p_worse ~ 0.035 on its own; slice b: only wins.
    data = cells({"a": (100, 10, 20, 10), "b": (40, 30, 0, 0)})
    evidence = from_cells(data, slice_column="grp")
    outcomes = evidence.outcomes
    raw = {g: compare("accuracy", outcomes.subset(evidence.slices["grp"] == g)).p_worse for g in ("a", "b")}
    assert 0.025 < raw["a"] < 0.05  # uncorrected, slice a would be significantly worse

    section = {"slices": {"columns": ["grp"], "min_size": 30, "tolerance": 0.0}}
    corrected = judge(policy(**section), finding(evidence))
    a = check(corrected, "slice:grp=a:accuracy")
    assert a.numbers["p_worse"] == pytest.approx(raw["a"], rel=1e-5)  # the raw p-value, as reported
    assert a.numbers["p_worse_adjusted"] == pytest.approx(2 * raw["a"]) and a.numbers["slices_tested"] == 2
    assert a.numbers["ci_high"] > 0  # the one-sided 97.5 % bound (Bonferroni over 2) does not exclude 0
    assert a.outcome == WARN and "not significantly" in a.message  # detect: a warning, not a refusal
    assert corrected.verdict == PROMOTE and any("warning:" in r for r in corrected.reasons)

    # With slice b below min_size, only slice a is tested: no correction, and it is significantly worse.
    alone = judge(policy(slices={"columns": ["grp"], "min_size": 100, "tolerance": 0.0}), finding(evidence))
    assert check(alone, "slice:grp=b:accuracy").outcome == SKIP
    a_alone = check(alone, "slice:grp=a:accuracy")
    assert a_alone.numbers["p_worse_adjusted"] == pytest.approx(raw["a"])
    assert a_alone.outcome == FAIL_WORSE and a_alone.numbers["ci_high"] < 0
    assert alone.verdict == REFUSE_WORSE


def test_prove_mode_requires_every_slice_shown_within_tolerance():
    data = cells({"a": (100, 10, 20, 10), "b": (40, 30, 0, 0), "c": (400, 40, 10, 50)})
    evidence = from_cells(data, slice_column="grp")
    section = {"slices": {"columns": ["grp"], "min_size": 30, "tolerance": 0.05, "mode": "prove"}}
    decision = judge(policy(**section), finding(evidence))
    a, b, c = (check(decision, f"slice:grp={g}:accuracy") for g in "abc")
    assert a.outcome == FAIL_INSUFFICIENT and "cannot show it is within tolerance" in a.message
    assert a.numbers["ci_low_within"] <= -0.05  # the message's bound, at level α, agrees with the outcome
    assert (b.outcome, c.outcome) == (PASS, PASS) and b.numbers["ci_low_within"] > -0.05
    assert decision.verdict == REFUSE_INSUFFICIENT
    detect = judge(policy(slices=section["slices"] | {"mode": "detect"}), finding(evidence))
    assert check(detect, "slice:grp=a:accuracy").outcome in (PASS, WARN) and detect.verdict == PROMOTE


# ------------------------------------------------------------------------- first release


def first_release_evidence(accuracy_count: int = 850, n: int = 1000, proba: bool = False) -> EvidenceFinding:
    rng = np.random.default_rng(9)
    label = rng.integers(0, 2, n)
    ok = np.zeros(n, int)
    ok[rng.permutation(n)[:accuracy_count]] = 1
    outcomes = {"prediction": np.where(ok == 1, label, 1 - label)}
    if proba:
        outcomes["proba_label"] = np.where(ok == 1, 0.8, 0.3)
    return finding(build_evidence(label, outcomes, None, baseline=None))


def test_first_release_without_thresholds_is_promoted():
    decision = judge(policy(), first_release_evidence(accuracy_count=100), baseline=FIRST)
    assert decision.verdict == PROMOTE
    assert [c.name for c in decision.checks] == ["evidence", "first_release"]
    assert "no absolute thresholds configured" in check(decision, "first_release").message
    assert decision.reasons == ["all checks passed against baseline none (first release)"]


def test_first_release_meeting_the_thresholds_is_promoted():
    section = {"first_release": [{"metric": "accuracy", "min": 0.8}, {"metric": "log_loss", "max": 0.5}]}
    decision = judge(policy(**section), first_release_evidence(proba=True), baseline=FIRST)
    assert decision.verdict == PROMOTE
    accuracy = check(decision, "first_release:accuracy")
    assert accuracy.outcome == PASS and accuracy.numbers == {"value": pytest.approx(0.85), "min": 0.8, "max": None}
    log_loss = check(decision, "first_release:log_loss")
    expected = 0.85 * -np.log(0.8) + 0.15 * -np.log(0.3)
    assert log_loss.outcome == PASS and log_loss.numbers["value"] == pytest.approx(expected)
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
    assert failed.outcome == FAIL_WORSE and decision.verdict == REFUSE_WORSE
    assert text in failed.message
    assert decision.reasons == [failed.message]


def test_first_release_threshold_needing_probabilities_without_them_is_insufficient():
    decision = judge(policy(first_release=[{"metric": "log_loss", "max": 0.5}]), first_release_evidence(), baseline=FIRST)
    assert decision.verdict == REFUSE_INSUFFICIENT
    assert "cannot be scored" in decision.reasons[0]


# -------------------------------------------------------------------------- evidence


def test_missing_evidence_is_insufficient():
    decision = judge(policy(), None)
    assert decision.verdict == REFUSE_INSUFFICIENT
    assert [c.name for c in decision.checks] == ["evidence"]
    assert "no evidence" in decision.reasons[0] and "churn v2" in decision.reasons[0]
    assert "models:/churn/2" in decision.reasons[0]  # tells the user how to produce it
    assert decision.evidence_run_ids == []


def test_unusable_evidence_reports_its_error():
    decision = judge(policy(), finding(None, error="outcomes.row_id has duplicates", run_id="bad-run"))
    assert decision.verdict == REFUSE_INSUFFICIENT
    assert check(decision, "evidence").numbers == {"run_id": "bad-run"}
    assert decision.reasons == ["evidence run bad-run is unusable: outcomes.row_id has duplicates"]
    assert decision.evidence_run_ids == ["bad-run"]


def test_evidence_about_another_candidate_is_insufficient():
    evidence = from_cells(cells({"all": BETTER}), candidate=VersionRef("churn", "3"))
    decision = judge(policy(), finding(evidence))
    assert decision.verdict == REFUSE_INSUFFICIENT
    assert "is about churn v3, not churn v2" in decision.reasons[0]


def test_stale_evidence_when_the_baseline_changed():
    decision = judge(policy(), better_finding(), baseline=Baseline("5", "alias 'champion'"))
    assert decision.verdict == REFUSE_INSUFFICIENT
    assert [c.name for c in decision.checks] == ["evidence"]  # nothing is scored against the wrong baseline
    message = decision.reasons[0]
    assert message.startswith("stale evidence")
    assert "compared against v1" in message and "now v5 (alias 'champion')" in message


def test_stale_evidence_when_a_baseline_appeared_after_a_first_release_evaluation():
    evidence = first_release_evidence()
    decision = judge(policy(), evidence, baseline=BASELINE)
    assert decision.verdict == REFUSE_INSUFFICIENT
    assert "stale evidence" in decision.reasons[0]
    assert "no baseline (first release)" in decision.reasons[0] and "now v1" in decision.reasons[0]


def test_stale_evidence_when_the_baseline_is_gone():
    decision = judge(policy(), better_finding(), baseline=FIRST)
    assert decision.verdict == REFUSE_INSUFFICIENT
    assert "stale evidence" in decision.reasons[0] and "no production version" in decision.reasons[0]


def test_evidence_against_a_baseline_of_another_model_is_stale():
    evidence = from_cells(cells({"all": BETTER}), baseline=("other-model", "1"))
    decision = judge(policy(), finding(evidence))
    assert decision.verdict == REFUSE_INSUFFICIENT
    assert "compared against vother-model/1" in decision.reasons[0]


def test_data_hash_not_among_logged_inputs_is_insufficient():
    decision = judge(policy(), better_finding(hashes={NEWER_HASH}))
    assert decision.verdict == REFUSE_INSUFFICIENT
    message = decision.reasons[0]
    assert f"claims data {DATA_HASH[:12]}" in message and "cannot be verified" in message
    assert judge(policy(), better_finding(hashes=set())).verdict == REFUSE_INSUFFICIENT


def test_newer_data_hash_makes_the_evidence_stale():
    decision = judge(policy(), better_finding(newer=NEWER_HASH))
    assert decision.verdict == REFUSE_INSUFFICIENT
    message = decision.reasons[0]
    assert message.startswith("stale evidence") and "evaluation data 'eval' changed" in message
    assert DATA_HASH[:12] in message and NEWER_HASH[:12] in message
    # the newest evaluation used the same data: not stale
    assert judge(policy(), better_finding(newer=DATA_HASH)).verdict == PROMOTE


def test_old_evidence_is_stale():
    evidence = from_cells(cells({"all": BETTER}), created_at=NOW - timedelta(days=8))
    decision = judge(policy(), finding(evidence, run_time=NOW - timedelta(days=8)))
    assert decision.verdict == REFUSE_INSUFFICIENT
    ev = check(decision, "evidence")
    assert ev.numbers["age_seconds"] == pytest.approx(8 * 86400)
    assert ev.numbers["max_age_seconds"] == 7 * 86400
    assert "stale evidence" in ev.message and "192.0 h old, the policy allows 168.0 h" in ev.message


def test_evidence_age_uses_the_older_of_manifest_time_and_run_time():
    fresh_manifest = from_cells(cells({"all": BETTER}), created_at=NOW - timedelta(hours=1))
    assert judge(policy(), finding(fresh_manifest, run_time=NOW - timedelta(days=8))).verdict == REFUSE_INSUFFICIENT
    old_manifest = from_cells(cells({"all": BETTER}), created_at=NOW - timedelta(days=8))
    assert judge(policy(), finding(old_manifest, run_time=NOW - timedelta(hours=1))).verdict == REFUSE_INSUFFICIENT


def test_evidence_max_age_comes_from_the_policy():
    evidence = finding(from_cells(cells({"all": BETTER}), created_at=NOW - timedelta(hours=3)), run_time=NOW - timedelta(hours=3))
    assert judge(policy(evidence={"max_age": "4h"}), evidence).verdict == PROMOTE
    short = judge(policy(evidence={"max_age": "2h"}), evidence)
    assert short.verdict == REFUSE_INSUFFICIENT and "3.0 h old, the policy allows 2.0 h" in short.reasons[0]


def test_fresh_evidence_check_has_the_numbers():
    ev = check(judge(policy(), better_finding()), "evidence")
    assert ev.outcome == PASS
    assert ev.numbers == {"run_id": "ev-run", "age_seconds": 3600.0, "max_age_seconds": 7 * 86400, "n": 1000}
    assert "1000 examples" in ev.message and DATA_HASH[:12] in ev.message


# ---------------------------------------------------------------------------- drift

DRIFT_COLUMNS = ["age", "income", "tenure", "plan", "region", "calls", "visits", "spend", "device", "channel"]


def drift_finding(
    drifted: tuple[str, ...] = (),
    *,
    version: str = "2",
    created_at: datetime = NOW - timedelta(hours=2),
    schema_changes: list | None = None,
    run_id: str = "drift-run",
) -> DriftFinding:
    """A real ``gatekeeper.drift/1`` document (as projects.drift writes it), parsed as the gate does."""
    changes = [SchemaChange(**c) for c in schema_changes or []]
    changed = {c.column for c in changes}
    columns = [
        ColumnDrift(column=c, type="num", method="schema" if c in changed else "wasserstein",
                    score=None if c in changed else (0.3 if c in drifted else 0.01), threshold=0.1,
                    drifted=c in drifted or c in changed, missing_share_current=0.0)
        for c in DRIFT_COLUMNS + sorted(changed - set(DRIFT_COLUMNS))
    ]
    table = TableInfo(name="t", source="s", content_hash="0" * 64, n_rows=1000)
    summary = DriftSummary(candidate_name="churn", candidate_version=version, created_at=created_at.isoformat(),
                           reference=table, current=table, columns=columns, schema_changes=changes)
    return DriftFinding(run_id, parse_drift_summary(json.dumps(summary.to_dict())), None, created_at)


def drift_policy(mode: str = "block", **rules) -> ModelPolicy:
    return policy(drift={"required": True, "mode": mode, "max_share_drifted": 0.3, **rules})


def test_drift_not_required_adds_no_check():
    decision = judge(policy(), better_finding(), drift=drift_finding(tuple(DRIFT_COLUMNS)))
    assert [c.name for c in decision.checks] == ["evidence", "primary:accuracy"]
    assert decision.verdict == PROMOTE
    assert decision.evidence_run_ids == ["ev-run", "drift-run"]


def test_drift_within_policy_passes_with_numbers():
    decision = judge(drift_policy(), better_finding(), drift=drift_finding(("calls", "visits")))
    drift = check(decision, "drift")
    assert drift.outcome == PASS and decision.verdict == PROMOTE
    assert drift.numbers["share_drifted"] == pytest.approx(0.2)
    assert drift.numbers["n_drifted"] == 2 and drift.numbers["n_columns"] == 10
    assert drift.numbers["drifted_columns"] == ["calls", "visits"]
    assert drift.numbers["age_seconds"] == pytest.approx(7200)
    assert "2 of 10 columns drifted, within policy" in drift.message


@pytest.mark.parametrize("mode, outcome, verdict", [("block", FAIL_INSUFFICIENT, REFUSE_INSUFFICIENT), ("warn", WARN, PROMOTE)])
def test_missing_drift_report(mode, outcome, verdict):
    decision = judge(drift_policy(mode), better_finding(), drift=None)
    drift = check(decision, "drift")
    assert (drift.outcome, decision.verdict) == (outcome, verdict)
    assert "no drift report for churn v2" in drift.message
    assert decision.evidence_run_ids == ["ev-run"]


def test_unusable_drift_report():
    bad = DriftFinding("drift-run", None, "gatekeeper/drift.json is not valid JSON", NOW)
    decision = judge(drift_policy(), better_finding(), drift=bad)
    assert decision.verdict == REFUSE_INSUFFICIENT
    assert check(decision, "drift").message == "drift report run drift-run is unusable: gatekeeper/drift.json is not valid JSON"


@pytest.mark.parametrize("mode, outcome, verdict", [("block", FAIL_INSUFFICIENT, REFUSE_INSUFFICIENT), ("warn", WARN, PROMOTE)])
def test_stale_drift_report(mode, outcome, verdict):
    decision = judge(drift_policy(mode, max_age="1d"), better_finding(), drift=drift_finding(created_at=NOW - timedelta(days=2)))
    drift = check(decision, "drift")
    assert (drift.outcome, decision.verdict) == (outcome, verdict)
    assert "stale drift report" in drift.message and "48.0 h old, the policy allows 24.0 h" in drift.message


@pytest.mark.parametrize("mode, outcome, verdict", [("block", FAIL_WORSE, REFUSE_WORSE), ("warn", WARN, PROMOTE)])
def test_share_drifted_above_the_maximum(mode, outcome, verdict):
    decision = judge(drift_policy(mode), better_finding(), drift=drift_finding(("age", "income", "tenure", "plan")))
    drift = check(decision, "drift")
    assert (drift.outcome, decision.verdict) == (outcome, verdict)
    assert "4 of 10 columns drifted (40% > allowed 30%: age, income, tenure, plan)" in drift.message
    assert drift.numbers["share_drifted"] == pytest.approx(0.4)


def test_share_drifted_equal_to_the_maximum_passes():
    decision = judge(drift_policy(), better_finding(), drift=drift_finding(("age", "income", "tenure")))
    assert check(decision, "drift").outcome == PASS


def test_critical_column_drifted_blocks_even_below_the_share():
    decision = judge(drift_policy(critical_columns=["income", "age"]), better_finding(), drift=drift_finding(("income",)))
    drift = check(decision, "drift")
    assert drift.outcome == FAIL_WORSE and decision.verdict == REFUSE_WORSE
    assert "critical column(s) drifted: income" in drift.message
    assert "columns drifted (" not in drift.message  # the share itself is within policy


def test_schema_change_of_a_critical_column_counts_as_drift():
    changes = [{"column": "age", "change": "missing", "detail": "absent from the current table"}]
    decision = judge(drift_policy(critical_columns=["age"]), better_finding(), drift=drift_finding((), schema_changes=changes))
    drift = check(decision, "drift")
    assert drift.outcome == FAIL_WORSE
    assert "critical column(s) drifted: age" in drift.message
    assert drift.numbers["schema_changes"] == changes
    assert "age" in drift.numbers["drifted_columns"]


def test_drift_report_for_the_right_candidate_passes():
    assert check(judge(drift_policy(), better_finding(), drift=drift_finding(version="2")), "drift").outcome == PASS


def test_drift_report_for_another_candidate_version_is_not_accepted():
    decision = judge(drift_policy(), better_finding(), drift=drift_finding(version="1"))
    assert check(decision, "drift").outcome != PASS
    assert decision.verdict != PROMOTE


def test_drift_warning_appears_in_the_summary():
    decision = judge(drift_policy("warn"), better_finding(), drift=drift_finding(("age", "income", "tenure", "plan")))
    assert decision.verdict == PROMOTE
    assert "drift" in decision.summary()
    assert not any("all checks passed" in r for r in decision.reasons)


# ------------------------------------------------------------------------ precedence


def test_worse_beats_insufficient():
    # primary is worse, a required slice column is missing (insufficient), drift report missing (insufficient)
    decision = judge(
        policy(slices={"columns": ["region"]}, drift={"required": True}),
        finding(from_cells(cells({"all": WORSE}))),
        drift=None,
    )
    outcomes = {c.name: c.outcome for c in decision.checks}
    assert outcomes == {"evidence": PASS, "primary:accuracy": FAIL_WORSE, "slice:region": FAIL_INSUFFICIENT, "drift": FAIL_INSUFFICIENT}
    assert decision.verdict == REFUSE_WORSE
    assert len(decision.reasons) == 3  # every failing check is a reason, not only the decisive one


def test_insufficient_drift_beats_a_passing_comparison():
    decision = judge(drift_policy(), better_finding(), drift=None)
    assert check(decision, "primary:accuracy").outcome == PASS
    assert decision.verdict == REFUSE_INSUFFICIENT


def test_drift_block_is_worse_even_when_the_evidence_is_insufficient():
    decision = judge(drift_policy(), None, drift=drift_finding(tuple(DRIFT_COLUMNS[:5])))
    assert check(decision, "evidence").outcome == FAIL_INSUFFICIENT
    assert check(decision, "drift").outcome == FAIL_WORSE
    assert decision.verdict == REFUSE_WORSE


def test_skip_and_warn_do_not_refuse():
    data = cells({"clear": (500, 120, 10, 70), "fog": (5, 0, 5, 5)})
    decision = judge(
        policy(slices={"columns": ["weather"], "min_size": 30}, drift={"required": True, "mode": "warn"}),
        finding(from_cells(data, slice_column="weather")),
        drift=None,
    )
    assert {c.outcome for c in decision.checks} == {PASS, SKIP, WARN}
    assert decision.verdict == PROMOTE


# ------------------------------------------------------------------ summary / to_dict


def test_summary_of_a_refusal_has_the_reasons_and_numbers():
    data = cells({"all": WORSE})
    decision = judge(policy(), finding(from_cells(data)))
    summary = decision.summary()
    lines = summary.splitlines()
    assert lines[0] == "Promotion refused: the candidate is worse than production (churn v2 vs baseline v1 (alias 'champion'))."
    assert lines[1].startswith("- accuracy: candidate 0.7300 vs baseline 0.8500, improvement -0.1200")
    assert "n=1000" in lines[1]
    assert len(lines) == 2


def test_summary_heads():
    assert judge(policy(), better_finding()).summary().startswith("Promotion approved (churn v2 vs baseline v1")
    insufficient = judge(policy(), None).summary()
    assert insufficient.startswith("Promotion refused: not enough evidence to tell (churn v2 vs baseline v1")
    assert "\n- no evidence" in insufficient
    first = judge(policy(), first_release_evidence(), baseline=FIRST).summary()
    assert "vs baseline none (first release))" in first
    assert "- all checks passed against baseline none (first release)" in first


def test_summary_of_an_override():
    decision = judge(policy(), finding(from_cells(cells({"all": WORSE}))))
    decision.action = "override"
    assert decision.summary().startswith(
        "Override applied (without it: promotion refused: the candidate is worse than production) (churn v2"
    )


def test_to_dict_is_json_ready_and_complete():
    data = cells({"clear": (500, 120, 10, 70), "fog": (10, 0, 25, 5)})
    decision = judge(
        policy(slices={"columns": ["weather"], "min_size": 30, "tolerance": 0.05}, drift={"required": True}),
        finding(from_cells(data, slice_column="weather")),
        drift=drift_finding(("age",)),
    )
    record = json.loads(json.dumps(decision.to_dict()))
    assert record["verdict"] == REFUSE_WORSE and record["action"] is None
    assert record["candidate"] == {"name": "churn", "version": "2"}
    assert record["baseline"] == {"version": "1", "source": "alias 'champion'"}
    assert record["evidence_run_ids"] == ["ev-run", "drift-run"]
    names = [c["name"] for c in record["checks"]]
    assert names == ["evidence", "primary:accuracy", "slice:weather=clear:accuracy", "slice:weather=fog:accuracy", "drift"]
    primary = record["checks"][1]
    assert set(primary) == {"name", "outcome", "message", "numbers"}
    assert primary["numbers"]["candidate"] == pytest.approx(decision.checks[1].numbers["candidate"])
    fog = record["checks"][3]
    assert fog["outcome"] == FAIL_WORSE and fog["numbers"]["n"] == 40
    assert record["reasons"] == [fog["message"]]
    assert record["checks"][4]["numbers"]["drifted_columns"] == ["age"]


# ------------------------------------------------------------- advice agrees with the verdict


def test_an_inconclusive_primary_under_a_worse_verdict_does_not_ask_for_more_examples():
    # Overall a tie (no improvement shown), but the fog slice is clearly worse: refused as worse,
    # so "evaluate on more examples" would be advice that cannot lift the refusal.
    data = cells({"clear": (500, 30, 5, 65), "fog": (10, 0, 25, 5)})
    decision = judge(policy(**SLICE_POLICY), finding(from_cells(data, slice_column="weather")))
    primary = check(decision, "primary:accuracy")
    assert decision.verdict == REFUSE_WORSE and primary.outcome == FAIL_INSUFFICIENT
    assert "more examples" not in primary.message.replace("more examples will not change it", "")
    assert "the refusal rests on slice:weather=fog:accuracy" in primary.message
    alone = judge(policy(), finding(from_cells(cells({"all": (700, 40, 35, 120)}))))
    assert alone.verdict == REFUSE_INSUFFICIENT
    assert "evaluate on more examples" in check(alone, "primary:accuracy").message


def test_a_rollback_says_what_happened_not_that_checks_passed():
    from registry_hooks.decision import ROLLBACK, Check

    decision = Decision(ROLLBACK, CANDIDATE, Baseline("3", "production before the rollback"),
                        [Check("rollback", PASS, "rolled back to v2, the version approved before v3")], [])
    assert decision.reasons == ["rolled back to v2, the version approved before v3"]
    assert "all checks passed" not in decision.summary()


# ------------------------------------------------------ label sets and untestable slices (issue 9)


def _two_slices_one_without_positives():
    rng = np.random.default_rng(31)
    label = np.r_[rng.integers(0, 2, 600), np.zeros(100, int)]
    baseline = np.where(rng.random(700) < 0.8, label, 1 - label)
    candidate = np.where(rng.random(700) < 0.85, label, 1 - label)
    group = np.r_[np.full(600, "day"), np.full(100, "night")]
    return build_evidence(label, {"prediction": candidate}, {"prediction": baseline}, slices={"light": group})


@pytest.mark.parametrize("untestable, outcome, verdict", [("block", FAIL_INSUFFICIENT, REFUSE_INSUFFICIENT),
                                                          ("skip", SKIP, None)])
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
    assert decision.verdict == REFUSE_INSUFFICIENT
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
    assert blind.outcome == FAIL_INSUFFICIENT and "set evidence.bootstrap_resamples to at least 1200" in blind.message
