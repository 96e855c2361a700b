"""Registered evaluation sets and verification as ``decide`` judges them (``registry_hooks.trust``).

Facts as the store gathers them: the required sets with their current registered version, the
candidate's evidence on it, and the verifier's answer; the verdicts and sentences a user sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry_hooks.checks import Outcome
from registry_hooks.decision import Verdict, decide
from registry_hooks.eval_sets import SetVersion
from registry_hooks.trust import SetEvidence, TrustFacts
from tests.support.decisions import (
    BASELINE,
    BETTER,
    CANDIDATE,
    DATA_HASH,
    NEWER_HASH,
    NOW,
    WORSE,
    better_finding,
    cells,
    finding,
    from_cells,
    policy,
)

SETS = {"evaluation": {"sets": ["golden", "hard-cases"], "verify": {"sample": 256}}}
N = sum(BETTER)  # the rows of the simulated evaluation


@dataclass(frozen=True)
class Fact:
    """What a verifier's answer looks like to the gate (``registry_hooks.verification.VerificationFact``)."""

    status: str
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)
    signature: str | None = "f" * 64

    @property
    def trusted(self) -> bool:
        return self.status == "passed"


PASSED = Fact("passed", "verification #1 passed: re-scored 256 of 1,000 rows")


def version(name: str, number: int = 3, content_hash: str = DATA_HASH, n_rows: int = N) -> SetVersion:
    return SetVersion(name=name, version=number, source=f"/data/{name}.parquet", content_hash=content_hash,
                      n_rows=n_rows, columns=(("x", "float64"), ("label", "int64")), label_column="label",
                      keys_digest="0" * 64)


def judged(facts: TrustFacts, rules: dict | None = None):
    deciding = facts.sets[0].finding if facts.sets else None
    return decide(policy(**(rules or SETS)), CANDIDATE, BASELINE, deciding, None, NOW, trust=facts)


def both_sets(golden_finding=None, hard_finding=None, verification=PASSED, **golden) -> TrustFacts:
    golden_finding = golden_finding if golden_finding is not None else better_finding()
    hard_finding = hard_finding if hard_finding is not None else better_finding(run_id="hard-run")
    return TrustFacts(sets=(
        SetEvidence("golden", version("golden", **golden), golden_finding, verification=verification),
        SetEvidence("hard-cases", version("hard-cases", 1), hard_finding, verification=verification),
    ))


def failing(decision) -> list[str]:
    return [c.message for c in decision.checks if c.outcome.failing]


def test_verified_evidence_on_every_current_set_promotes():
    decision = judged(both_sets())
    assert decision.verdict == Verdict.PROMOTE, decision.summary()
    names = [c.name for c in decision.checks]
    assert "verification:golden" in names and "verification:hard-cases" in names
    assert "set:hard-cases:accuracy" in names  # the guard set was compared, not merely looked at
    assert dict(decision.digests)["outcomes"] and dict(decision.digests)["verification:golden"] == "f" * 64


def test_an_unregistered_required_set_refuses_with_the_command_to_register_it():
    facts = TrustFacts(sets=(SetEvidence("golden", None, None),))
    decision = judged(facts)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert any("not registered" in m and "gatekeeper sets register golden" in m for m in failing(decision))


def test_evidence_on_an_older_version_names_the_newer_one():
    facts = TrustFacts(sets=(SetEvidence("golden", version("golden", 4, NEWER_HASH), None, other_versions=(3,)),))
    decision = judged(facts, {"evaluation": {"sets": ["golden"]}})
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert any("set golden has a newer version v4" in m and "evidence is on v3" in m for m in failing(decision))
    assert not any(m.startswith("no evidence: no finished") for m in failing(decision))  # one sentence, not two


def test_evidence_on_unregistered_data_is_refused_by_name():
    facts = TrustFacts(sets=(SetEvidence("golden", version("golden"), None),), unregistered=("subset-run",))
    decision = judged(facts, {"evaluation": {"sets": ["golden"]}})
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert any("evidence on unregistered data (run subset-run)" in m for m in failing(decision))


def test_evidence_on_a_subset_claiming_the_sets_hash_is_refused():
    """A cherry-picked subset that claims the registered hash has fewer rows than the set."""
    facts = TrustFacts(sets=(SetEvidence("golden", version("golden", n_rows=N + 500), better_finding(),
                                         verification=PASSED),))
    decision = judged(facts, {"evaluation": {"sets": ["golden"]}})
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert any(f"covers {N:,} rows" in m and "not a subset" in m for m in failing(decision))


def test_a_set_below_the_policys_minimum_rows_is_refused():
    rules = {"evaluation": {"sets": ["golden"], "min_rows": N + 1}}
    facts = TrustFacts(sets=(SetEvidence("golden", version("golden"), better_finding(), verification=PASSED),))
    decision = judged(facts, rules)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert any(f"requires at least {N + 1:,}" in m for m in failing(decision))


def test_per_set_minimums_apply_to_their_own_set_only():
    """`min_rows: {golden: N + 1, hard-cases: 30}`: golden below its minimum refuses; the small
    guard set above its own passes; names compare normalised."""
    small_guard = {"evaluation": {"sets": ["golden", "hard-cases"], "min_rows": {"Golden": N, "HARD-CASES": 30}}}
    assert judged(both_sets(), small_guard).verdict == Verdict.PROMOTE
    strict = {"evaluation": {"sets": ["golden", "hard-cases"], "min_rows": {"golden": N + 1, "hard-cases": 30}}}
    decision = judged(both_sets(), strict)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert [m for m in failing(decision) if "requires at least" in m] == [
        f"set golden v3 has {N:,} rows; the policy requires at least {N + 1:,}: register a larger version"]
    guard_too_small = {"evaluation": {"sets": ["golden", "hard-cases"], "min_rows": {"hard-cases": N + 1}}}
    decision = judged(both_sets(), guard_too_small)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert any(m.startswith("set hard-cases v1 has") and f"at least {N + 1:,}" in m for m in failing(decision))


def test_pending_failed_forged_or_missing_verification_never_approves():
    for fact in (Fact("pending", "verification pending: request #4 waits for a verifier"),
                 Fact("down", "verifier down: request #4 has not been claimed for 65 s"),
                 Fact("failed", "verification #4 failed: 14 of 256 re-scored rows disagree"),
                 Fact("forged", "verification record #4 is not signed by this server: ignored"),
                 None):
        decision = judged(both_sets(verification=fact))
        assert decision.verdict == Verdict.REFUSE_INSUFFICIENT, fact
        check = next(c for c in decision.checks if c.name == "verification:golden")
        assert check.outcome == Outcome.FAIL_INSUFFICIENT
        assert check.message.startswith("not enough evidence: ")


def test_without_verify_sample_no_verification_is_asked():
    rules = {"evaluation": {"sets": ["golden"], "verify": {"sample": 0}}}
    facts = TrustFacts(sets=(SetEvidence("golden", version("golden"), better_finding()),))
    decision = judged(facts, rules)
    assert decision.verdict == Verdict.PROMOTE
    assert not any(c.name.startswith("verification") for c in decision.checks)


def test_a_guard_set_shown_worse_refuses_the_candidate_as_worse():
    worse = finding(from_cells(cells({"all": WORSE})), run_id="hard-run")
    decision = judged(both_sets(hard_finding=worse))
    assert decision.verdict == Verdict.REFUSE_WORSE
    guard = next(c for c in decision.checks if c.name == "set:hard-cases:accuracy")
    assert guard.outcome == Outcome.FAIL_WORSE and "regressed beyond tolerance on this guard set" in guard.message


def test_guard_set_evidence_must_be_usable_too():
    stale = better_finding(run_id="hard-run", hashes=set())  # logged no dataset input with the claimed hash
    decision = judged(both_sets(hard_finding=stale))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert any(m.startswith("hard-cases v1: evidence run hard-run claims data") for m in failing(decision))


def test_a_guard_set_counts_from_its_first_registration():
    facts = TrustFacts(sets=(SetEvidence("golden", version("golden"), better_finding(), verification=PASSED),
                             SetEvidence("hard-cases", None, None)))
    decision = judged(facts)
    assert decision.verdict == Verdict.PROMOTE, decision.summary()
    skipped = next(c for c in decision.checks if c.name == "set:hard-cases")
    assert skipped.outcome == Outcome.SKIP and "not registered yet" in skipped.message


def test_a_registered_guard_set_without_evidence_refuses_once():
    facts = TrustFacts(sets=(SetEvidence("golden", version("golden"), better_finding(), verification=PASSED),
                             SetEvidence("hard-cases", version("hard-cases", 1), None)))
    decision = judged(facts)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    assert [m for m in failing(decision)] == ["no evidence for churn v2 on hard-cases v1: `mlflow run . -e evaluate "
                                              "-P model=models:/churn/2 -P data=set:hard-cases`"]
