"""Tests for registry_hooks.decision: whether the evidence is usable and fresh, and the drift check."""

from __future__ import annotations

from datetime import timedelta

import pytest

from registry_hooks.checks import Outcome
from registry_hooks.decision import Baseline, DriftFinding, Verdict
from registry_hooks.evidence import VersionRef
from tests.support.decisions import (
    BASELINE, BETTER, DATA_HASH, DRIFT_COLUMNS, FIRST, NEWER_HASH, NOW, About, better_finding, cells, check,
    drift_finding, drift_policy, finding, first_release_evidence, from_cells, judge, policy,
)


# -------------------------------------------------------------------------- evidence


def test_missing_evidence_is_insufficient():
    decision = judge(policy(), None)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert [c.name for c in decision.checks] == ["evidence"]
    assert "no evidence" in decision.reasons[0] and "churn v2" in decision.reasons[0]
    assert "models:/churn/2" in decision.reasons[0]  # tells the user how to produce it
    assert decision.evidence_run_ids == ()


def test_unusable_evidence_reports_its_error():
    decision = judge(policy(), finding(None, error="outcomes.row_id has duplicates", run_id="bad-run"))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert check(decision, "evidence").numbers == {"run_id": "bad-run"}
    assert decision.reasons == ["evidence run bad-run is unusable: outcomes.row_id has duplicates"]
    assert decision.evidence_run_ids == ("bad-run",)


def test_evidence_about_another_candidate_is_insufficient():
    evidence = from_cells(cells({"all": BETTER}), about=About(candidate=VersionRef("churn", "3")))
    decision = judge(policy(), finding(evidence))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert "is about churn v3, not churn v2" in decision.reasons[0]


def test_stale_evidence_when_the_baseline_changed():
    decision = judge(policy(), better_finding(), baseline=Baseline("5", "alias 'champion'"))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert [c.name for c in decision.checks] == ["evidence"]  # nothing is scored against the wrong baseline
    message = decision.reasons[0]
    assert message.startswith("stale evidence")
    assert "compared against v1" in message and "now v5 (alias 'champion')" in message


def test_stale_evidence_when_a_baseline_appeared_after_a_first_release_evaluation():
    evidence = first_release_evidence()
    decision = judge(policy(), evidence, baseline=BASELINE)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert "stale evidence" in decision.reasons[0]
    assert "no baseline (first release)" in decision.reasons[0] and "now v1" in decision.reasons[0]


def test_stale_evidence_when_the_baseline_is_gone():
    decision = judge(policy(), better_finding(), baseline=FIRST)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert "stale evidence" in decision.reasons[0] and "no production version" in decision.reasons[0]


def test_evidence_against_a_baseline_of_another_model_is_stale():
    evidence = from_cells(cells({"all": BETTER}), about=About(baseline=("other-model", "1")))
    decision = judge(policy(), finding(evidence))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert "compared against vother-model/1" in decision.reasons[0]


def test_data_hash_not_among_logged_inputs_is_insufficient():
    decision = judge(policy(), better_finding(hashes={NEWER_HASH}))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    message = decision.reasons[0]
    assert f"claims data {DATA_HASH[:12]}" in message and "cannot be verified" in message
    assert judge(policy(), better_finding(hashes=set())).verdict == Verdict.REFUSE_INSUFFICIENT


def test_newer_data_hash_makes_the_evidence_stale():
    decision = judge(policy(), better_finding(newer=NEWER_HASH))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    message = decision.reasons[0]
    assert message.startswith("stale evidence") and "evaluation data 'eval' changed" in message
    assert DATA_HASH[:12] in message and NEWER_HASH[:12] in message
    # the newest evaluation used the same data: not stale
    assert judge(policy(), better_finding(newer=DATA_HASH)).verdict == Verdict.PROMOTE


def test_old_evidence_is_stale():
    evidence = from_cells(cells({"all": BETTER}), about=About(created_at=NOW - timedelta(days=8)))
    decision = judge(policy(), finding(evidence, run_time=NOW - timedelta(days=8)))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    ev = check(decision, "evidence")
    assert ev.numbers["age_seconds"] == pytest.approx(8 * 86400)
    assert ev.numbers["max_age_seconds"] == 7 * 86400
    assert "stale evidence" in ev.message and "192.0 h old, the policy allows 168.0 h" in ev.message


def test_evidence_age_uses_the_older_of_manifest_time_and_run_time():
    fresh_manifest = from_cells(cells({"all": BETTER}), about=About(created_at=NOW - timedelta(hours=1)))
    assert judge(policy(), finding(fresh_manifest, run_time=NOW - timedelta(days=8))).verdict == Verdict.REFUSE_INSUFFICIENT
    old_manifest = from_cells(cells({"all": BETTER}), about=About(created_at=NOW - timedelta(days=8)))
    assert judge(policy(), finding(old_manifest, run_time=NOW - timedelta(hours=1))).verdict == Verdict.REFUSE_INSUFFICIENT


def test_evidence_max_age_comes_from_the_policy():
    evidence = finding(from_cells(cells({"all": BETTER}), about=About(created_at=NOW - timedelta(hours=3))), run_time=NOW - timedelta(hours=3))
    assert judge(policy(evidence={"max_age": "4h"}), evidence).verdict == Verdict.PROMOTE
    short = judge(policy(evidence={"max_age": "2h"}), evidence)
    assert short.verdict == Verdict.REFUSE_INSUFFICIENT and "3.0 h old, the policy allows 2.0 h" in short.reasons[0]


def test_fresh_evidence_check_has_the_numbers():
    ev = check(judge(policy(), better_finding()), "evidence")
    assert ev.outcome == Outcome.PASS
    assert ev.numbers == {"run_id": "ev-run", "age_seconds": 3600.0, "max_age_seconds": 7 * 86400, "n": 1000}
    assert "1000 examples" in ev.message and DATA_HASH[:12] in ev.message


# ---------------------------------------------------------------------------- drift


def test_drift_not_required_adds_no_check():
    decision = judge(policy(), better_finding(), drift=drift_finding(tuple(DRIFT_COLUMNS)))
    assert [c.name for c in decision.checks] == ["evidence", "primary:accuracy"]
    assert decision.verdict == Verdict.PROMOTE
    assert decision.evidence_run_ids == ("ev-run", "drift-run")


def test_drift_within_policy_passes_with_numbers():
    decision = judge(drift_policy(), better_finding(), drift=drift_finding(("calls", "visits")))
    drift = check(decision, "drift")
    assert drift.outcome == Outcome.PASS and decision.verdict == Verdict.PROMOTE
    assert drift.numbers["share_drifted"] == pytest.approx(0.2)
    assert drift.numbers["n_drifted"] == 2 and drift.numbers["n_columns"] == 10
    assert drift.numbers["drifted_columns"] == ["calls", "visits"]
    assert drift.numbers["age_seconds"] == pytest.approx(7200)
    assert "2 of 10 columns drifted, within policy" in drift.message


@pytest.mark.parametrize("mode, outcome, verdict", [("block", Outcome.FAIL_INSUFFICIENT, Verdict.REFUSE_INSUFFICIENT), ("warn", Outcome.WARN, Verdict.PROMOTE)])
def test_missing_drift_report(mode, outcome, verdict):
    decision = judge(drift_policy(mode), better_finding(), drift=None)
    drift = check(decision, "drift")
    assert (drift.outcome, decision.verdict) == (outcome, verdict)
    assert "no drift report for churn v2" in drift.message
    assert decision.evidence_run_ids == ("ev-run",)


def test_unusable_drift_report():
    bad = DriftFinding("drift-run", None, "gatekeeper/drift.json is not valid JSON", NOW)
    decision = judge(drift_policy(), better_finding(), drift=bad)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert check(decision, "drift").message == "drift report run drift-run is unusable: gatekeeper/drift.json is not valid JSON"


@pytest.mark.parametrize("mode, outcome, verdict", [("block", Outcome.FAIL_INSUFFICIENT, Verdict.REFUSE_INSUFFICIENT), ("warn", Outcome.WARN, Verdict.PROMOTE)])
def test_stale_drift_report(mode, outcome, verdict):
    decision = judge(drift_policy(mode, max_age="1d"), better_finding(), drift=drift_finding(created_at=NOW - timedelta(days=2)))
    drift = check(decision, "drift")
    assert (drift.outcome, decision.verdict) == (outcome, verdict)
    assert "stale drift report" in drift.message and "48.0 h old, the policy allows 24.0 h" in drift.message


@pytest.mark.parametrize("mode, outcome, verdict", [("block", Outcome.FAIL_WORSE, Verdict.REFUSE_WORSE), ("warn", Outcome.WARN, Verdict.PROMOTE)])
def test_share_drifted_above_the_maximum(mode, outcome, verdict):
    decision = judge(drift_policy(mode), better_finding(), drift=drift_finding(("age", "income", "tenure", "plan")))
    drift = check(decision, "drift")
    assert (drift.outcome, decision.verdict) == (outcome, verdict)
    assert "4 of 10 columns drifted (40% > allowed 30%: age, income, tenure, plan)" in drift.message
    assert drift.numbers["share_drifted"] == pytest.approx(0.4)


def test_share_drifted_equal_to_the_maximum_passes():
    decision = judge(drift_policy(), better_finding(), drift=drift_finding(("age", "income", "tenure")))
    assert check(decision, "drift").outcome == Outcome.PASS


def test_critical_column_drifted_blocks_even_below_the_share():
    decision = judge(drift_policy(critical_columns=["income", "age"]), better_finding(), drift=drift_finding(("income",)))
    drift = check(decision, "drift")
    assert drift.outcome == Outcome.FAIL_WORSE and decision.verdict == Verdict.REFUSE_WORSE
    assert "critical column(s) drifted: income" in drift.message
    assert "columns drifted (" not in drift.message  # the share itself is within policy


def test_schema_change_of_a_critical_column_counts_as_drift():
    changes = [{"column": "age", "change": "missing", "detail": "absent from the current table"}]
    decision = judge(drift_policy(critical_columns=["age"]), better_finding(), drift=drift_finding((), schema_changes=changes))
    drift = check(decision, "drift")
    assert drift.outcome == Outcome.FAIL_WORSE
    assert "critical column(s) drifted: age" in drift.message
    assert drift.numbers["schema_changes"] == changes
    assert "age" in drift.numbers["drifted_columns"]


def test_drift_report_for_the_right_candidate_passes():
    assert check(judge(drift_policy(), better_finding(), drift=drift_finding(version="2")), "drift").outcome == Outcome.PASS


def test_drift_report_for_another_candidate_version_is_not_accepted():
    decision = judge(drift_policy(), better_finding(), drift=drift_finding(version="1"))
    assert check(decision, "drift").outcome != Outcome.PASS
    assert decision.verdict != Verdict.PROMOTE


def test_drift_warning_appears_in_the_summary():
    decision = judge(drift_policy("warn"), better_finding(), drift=drift_finding(("age", "income", "tenure", "plan")))
    assert decision.verdict == Verdict.PROMOTE
    assert "drift" in decision.summary()
    assert not any("all checks passed" in r for r in decision.reasons)


