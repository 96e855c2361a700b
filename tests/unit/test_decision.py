"""Tests for registry_hooks.decision: verdicts, the checks behind them and their messages —
primary and secondary metrics, precedence, summaries and the REST form, the typed decision.

Evidence is built the way the server builds it (``tests/support/decisions.py``); slices and
first releases are in ``test_decision_slices.py``, evidence freshness and drift in
``test_decision_evidence.py``.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from registry_hooks.checks import Kind, Outcome, SliceRef
from registry_hooks.decision import Action, Baseline, Production, RecordedDecision, Verdict, decide, rolled_back
from registry_hooks.evidence import VersionRef
from tests.support.decisions import (
    BASELINE, BETTER, CANDIDATE, DRIFT_COLUMNS, FIRST, NOW, SLICE_POLICY, WORSE, better_finding, cells, check,
    drift_finding, drift_policy, finding, first_release_evidence, from_cells, judge, policy,
)

CHAMPION, PRODUCTION = "alias 'champion'", "stage Production"


# ------------------------------------------------------------------- primary metric


def test_clearly_better_candidate_is_promoted_with_the_numbers():
    decision = judge(policy(), better_finding())
    assert decision.verdict == Verdict.PROMOTE and decision.approved
    assert [c.name for c in decision.checks] == ["evidence", "primary:accuracy"]
    assert check(decision, "evidence").outcome == Outcome.PASS
    primary = check(decision, "primary:accuracy")
    assert primary.outcome == Outcome.PASS
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
    assert decision.evidence_run_ids == ("ev-run",)
    assert decision.reasons == ["all checks passed against baseline v1 (alias 'champion')"]


def test_clearly_worse_candidate_is_refused_as_worse():
    decision = judge(policy(), finding(from_cells(cells({"all": WORSE}))))
    assert decision.verdict == Verdict.REFUSE_WORSE and not decision.approved
    primary = check(decision, "primary:accuracy")
    assert primary.outcome == Outcome.FAIL_WORSE
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
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert primary.outcome == Outcome.FAIL_INSUFFICIENT
    assert "0 discordant pairs (rows where exactly one model is right), below the minimum of 10" in primary.message


def test_equally_good_but_different_models_are_insufficient_evidence():
    decision = judge(policy(), finding(from_cells(cells({"all": (700, 50, 50, 200)}))))
    primary = check(decision, "primary:accuracy")
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT and primary.outcome == Outcome.FAIL_INSUFFICIENT
    assert primary.numbers["ci_low"] < 0 < primary.numbers["ci_high"]
    assert 0.3 < primary.numbers["p_better"] < 0.7


def test_small_improvement_on_few_examples_is_insufficient():
    decision = judge(policy(), finding(from_cells(cells({"all": (30, 3, 1, 6)}))))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert "4 discordant pairs" in check(decision, "primary:accuracy").message
    more = judge(policy(), finding(from_cells(cells({"all": (300, 10, 6, 60)}))))  # enough pairs, still unclear
    assert more.verdict == Verdict.REFUSE_INSUFFICIENT
    assert check(more, "primary:accuracy").numbers["improvement"] == pytest.approx(4 / 376)


@pytest.mark.parametrize(
    "margin, verdict, outcome",
    [(0.05, Verdict.PROMOTE, Outcome.PASS), (0.10, Verdict.REFUSE_INSUFFICIENT, Outcome.FAIL_INSUFFICIENT), (0.20, Verdict.REFUSE_WORSE, Outcome.FAIL_WORSE)],
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
    assert judge(policy(confidence=0.95), evidence).verdict == Verdict.PROMOTE
    strict = judge(policy(confidence=0.999), evidence)
    assert strict.verdict == Verdict.REFUSE_INSUFFICIENT
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
    assert check(decision, "primary:accuracy").outcome == Outcome.PASS
    secondary = check(decision, "secondary:log_loss")
    assert secondary.outcome == Outcome.FAIL_WORSE
    assert decision.verdict == Verdict.REFUSE_WORSE
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
    assert check(decision, "secondary:log_loss").outcome == Outcome.PASS
    assert "within tolerance" in check(decision, "secondary:log_loss").message
    assert decision.verdict == Verdict.PROMOTE


def test_secondary_metric_the_evidence_cannot_support_is_insufficient():
    decision = judge(policy(secondary=[{"metric": "log_loss", "tolerance": 0.05}]), better_finding())
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    failing = [c for c in decision.checks if c.outcome == Outcome.FAIL_INSUFFICIENT]
    assert len(failing) == 1 and failing[0].name == "evidence"
    assert "cannot be scored" in failing[0].message and "proba_label" in failing[0].message


# ------------------------------------------------------------------------ precedence


def test_worse_beats_insufficient():
    # primary is worse, a required slice column is missing (insufficient), drift report missing (insufficient)
    decision = judge(
        policy(slices={"columns": ["region"]}, drift={"required": True}),
        finding(from_cells(cells({"all": WORSE}))),
        drift=None,
    )
    outcomes = {c.name: c.outcome for c in decision.checks}
    assert outcomes == {"evidence": Outcome.PASS, "primary:accuracy": Outcome.FAIL_WORSE, "slice:region": Outcome.FAIL_INSUFFICIENT, "drift": Outcome.FAIL_INSUFFICIENT}
    assert decision.verdict == Verdict.REFUSE_WORSE
    assert len(decision.reasons) == 3  # every failing check is a reason, not only the decisive one


def test_insufficient_drift_beats_a_passing_comparison():
    decision = judge(drift_policy(), better_finding(), drift=None)
    assert check(decision, "primary:accuracy").outcome == Outcome.PASS
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT


def test_drift_block_is_worse_even_when_the_evidence_is_insufficient():
    decision = judge(drift_policy(), None, drift=drift_finding(tuple(DRIFT_COLUMNS[:5])))
    assert check(decision, "evidence").outcome == Outcome.FAIL_INSUFFICIENT
    assert check(decision, "drift").outcome == Outcome.FAIL_WORSE
    assert decision.verdict == Verdict.REFUSE_WORSE


def test_skip_and_warn_do_not_refuse():
    data = cells({"clear": (500, 120, 10, 70), "fog": (5, 0, 5, 5)})
    decision = judge(
        policy(slices={"columns": ["weather"], "min_size": 30}, drift={"required": True, "mode": "warn"}),
        finding(from_cells(data, slice_column="weather")),
        drift=None,
    )
    assert {c.outcome for c in decision.checks} == {Outcome.PASS, Outcome.SKIP, Outcome.WARN}
    assert decision.verdict == Verdict.PROMOTE


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
    overridden = RecordedDecision(decision, Action.OVERRIDE, decision_id=9, actor="alice")
    assert overridden.summary().startswith(
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
    assert record["verdict"] == Verdict.REFUSE_WORSE and record["action"] is None
    assert record["candidate"] == {"name": "churn", "version": "2"}
    assert record["baseline"] == {"version": "1", "source": "alias 'champion'"}
    assert record["evidence_run_ids"] == ["ev-run", "drift-run"]
    names = [c["name"] for c in record["checks"]]
    assert names == ["evidence", "primary:accuracy", "slice:weather=clear:accuracy", "slice:weather=fog:accuracy", "drift"]
    primary = record["checks"][1]
    assert set(primary) == {"name", "outcome", "message", "numbers"}
    assert primary["numbers"]["candidate"] == pytest.approx(decision.checks[1].numbers["candidate"])
    fog = record["checks"][3]
    assert fog["outcome"] == Outcome.FAIL_WORSE and fog["numbers"]["n"] == 40
    assert record["reasons"] == [fog["message"]]
    assert record["checks"][4]["numbers"]["drifted_columns"] == ["age"]


# ------------------------------------------------------------- advice agrees with the verdict


def test_an_inconclusive_primary_under_a_worse_verdict_does_not_ask_for_more_examples():
    # Overall a tie (no improvement shown), but the fog slice is clearly worse: refused as worse,
    # so "evaluate on more examples" would be advice that cannot lift the refusal.
    data = cells({"clear": (500, 30, 5, 65), "fog": (10, 0, 25, 5)})
    decision = judge(policy(**SLICE_POLICY), finding(from_cells(data, slice_column="weather")))
    primary = check(decision, "primary:accuracy")
    assert decision.verdict == Verdict.REFUSE_WORSE and primary.outcome == Outcome.FAIL_INSUFFICIENT
    assert "more examples" not in primary.message.replace("more examples will not change it", "")
    assert "the refusal rests on slice:weather=fog:accuracy" in primary.message
    alone = judge(policy(), finding(from_cells(cells({"all": (700, 40, 35, 120)}))))
    assert alone.verdict == Verdict.REFUSE_INSUFFICIENT
    advice = check(alone, "primary:accuracy").message  # every attempt counts: no "re-evaluate on more data"
    assert "improve the model" in advice and "every attempt counts" in advice


def test_a_rollback_says_what_happened_not_that_checks_passed():
    decision = rolled_back(VersionRef("churn", "2"), "3")
    assert decision.verdict == Verdict.ROLLBACK and decision.baseline == Baseline("3", "production before the rollback")
    assert decision.reasons == ["rolled back to v2, the version approved before v3"]
    assert "all checks passed" not in decision.summary()


# ---------------------------------------------- the typed decision: fields, enums, immutability


def test_checks_say_what_they_are_about_in_typed_fields_and_their_names_follow():
    data = cells({"clear": (500, 120, 10, 70), "fog": (10, 0, 25, 5)})
    section = SLICE_POLICY | {"secondary": [{"metric": "error_rate", "tolerance": 0.05}], "drift": {"required": True}}
    decision = judge(policy(**section), finding(from_cells(data, slice_column="weather")), drift=drift_finding())
    typed = [(c.kind, c.metric, c.slice, c.name) for c in decision.checks]
    assert typed == [
        (Kind.EVIDENCE, None, None, "evidence"),
        (Kind.PRIMARY, "accuracy", None, "primary:accuracy"),
        (Kind.SECONDARY, "error_rate", None, "secondary:error_rate"),
        (Kind.SLICE, "accuracy", SliceRef("weather", "clear"), "slice:weather=clear:accuracy"),
        (Kind.SLICE, "accuracy", SliceRef("weather", "fog"), "slice:weather=fog:accuracy"),
        (Kind.DRIFT, None, None, "drift"),
    ]
    fog = decision.checks[4]
    assert fog.outcome == Outcome.FAIL_WORSE and fog.outcome.failing and fog.numbers["n"] == 40
    missing = judge(policy(slices={"columns": ["region"]}), better_finding()).checks[-1]
    assert (missing.kind, missing.slice, missing.metric, missing.name) == (Kind.SLICE, SliceRef("region"), None, "slice:region")


def test_verdicts_and_outcomes_are_enums_that_read_as_the_strings_the_log_has_always_had():
    decision = judge(policy(), better_finding())
    assert isinstance(decision.verdict, Verdict) and isinstance(decision.checks[0].outcome, Outcome)
    assert json.dumps([Verdict.REFUSE_INSUFFICIENT, Outcome.FAIL_WORSE]) == '["refuse_insufficient_evidence", "fail_worse"]'
    assert f"{Verdict.PROMOTE} {Outcome.PASS} {Action.OVERRIDE}" == "promote pass override"
    payload = decision.to_dict()
    assert type(payload["verdict"]) is str and all(type(c["outcome"]) is str for c in payload["checks"])


def test_a_decision_and_its_checks_cannot_be_changed_after_decide():
    decision = judge(policy(), finding(from_cells(cells({"all": WORSE}))))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.verdict = Verdict.PROMOTE
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.checks[1].outcome = Outcome.PASS
    with pytest.raises(TypeError):
        decision.checks[1].numbers["improvement"] = 1.0
    with pytest.raises(AttributeError):
        decision.checks.append(decision.checks[0])


def test_a_recorded_decision_adds_action_id_and_actor_in_the_same_places_of_the_payload():
    decision = judge(policy(), better_finding())
    recorded = RecordedDecision(decision, Action.PROMOTE, decision_id=7, actor=None)
    payload = recorded.to_dict()
    assert list(payload) == list(decision.to_dict())
    assert (payload["action"], payload["decision_id"], payload["actor"]) == ("promote", 7, None)
    assert payload | {"action": None, "decision_id": None} == decision.to_dict()
    assert recorded.summary() == decision.summary()


# ------------------------------------- already production: extended without evidence, by decide


def test_a_candidate_that_alone_is_production_is_extended_to_another_target_without_evidence():
    sole = Production(held=(CHAMPION,), requested=(PRODUCTION,))
    decision = decide(policy(), CANDIDATE, FIRST, None, None, NOW, sole)
    assert decision.verdict == Verdict.PROMOTE
    [only] = decision.checks
    assert (only.kind, only.outcome) == (Kind.EVIDENCE, Outcome.PASS)
    assert only.message == "already production through alias 'champion'; extending it to stage Production"


@pytest.mark.parametrize("production", [
    Production(held=(CHAMPION,), requested=(PRODUCTION,), other_holders=frozenset({"1"})),  # another version serves
    Production(held=(), requested=(PRODUCTION,)),  # the candidate serves nowhere yet
    Production(held=(CHAMPION,), requested=()),  # nothing to extend to: explain of the champion itself
])
def test_the_extension_needs_the_candidate_to_be_all_of_production_and_something_to_extend_to(production):
    decision = decide(policy(), CANDIDATE, BASELINE, finding(from_cells(cells({"all": WORSE}))), None, NOW, production)
    assert decision.verdict == Verdict.REFUSE_WORSE
    assert check(decision, "primary:accuracy").outcome == Outcome.FAIL_WORSE


def test_an_approved_candidate_keeps_its_checks_when_it_is_also_extended():
    sole = Production(held=(CHAMPION,), requested=(PRODUCTION,))
    decision = decide(policy(), CANDIDATE, BASELINE, better_finding(), None, NOW, sole)
    assert decision.verdict == Verdict.PROMOTE and [c.name for c in decision.checks] == ["evidence", "primary:accuracy"]
