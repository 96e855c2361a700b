"""Every attempt counts (``registry_hooks.trust``): earlier evaluations on other data weigh on the verdict.

Simulated evaluations go through the public evidence path (outcomes bytes, manifest, parse) and
``decide`` with ``TrustFacts``, as the server's evidence source passes them; the last test is
``benchmarks/bench_attempts.py``'s simulation, smaller, with fixed seeds.
"""

from __future__ import annotations

from dataclasses import replace

from benchmarks.bench_attempts import Case, evaluation, run_case
from benchmarks.simulate import BASELINE, CANDIDATE, NOW, finding, null_se, promotion_policy, rate
from registry_hooks.checks import Kind
from registry_hooks.decision import Decision, Verdict, decide
from registry_hooks.trust import Attempt, EvidenceFinding, TrustFacts

POLICY = promotion_policy("accuracy", 0.0)
NOMINAL = 0.05
PASSING = evaluation(0.05, 2_000, rep=0, attempt=1)  # +5 points on 2,000 rows: passes alone


def judged(*earlier: EvidenceFinding, same_data: tuple = ()) -> Decision:
    """The verdict on ``PASSING`` with ``earlier`` as the candidate's other attempts."""
    attempts = tuple(Attempt(f"data {i}", f) for i, f in enumerate(earlier))
    return decide(POLICY, CANDIDATE, BASELINE, PASSING, None, NOW, trust=TrustFacts(attempts=attempts, same_data=same_data))


def attempt_messages(decision: Decision) -> list[str]:
    return [c.message for c in decision.checks if c.kind == Kind.ATTEMPTS and c.outcome.failing]


def test_the_deciding_evidence_passes_alone():
    assert judged().verdict == Verdict.PROMOTE


def test_an_earlier_failed_attempt_refuses_a_passing_candidate():
    worse = evaluation(-0.05, 2_000, rep=0, attempt=0)  # 5 points worse: fails there
    decision = judged(worse)
    assert decision.verdict == Verdict.REFUSE_WORSE
    [message] = attempt_messages(decision)
    assert "every attempt counts" in message and worse.run_id in message, message
    assert worse.run_id in decision.evidence_run_ids


def test_an_attempt_refused_for_too_little_data_does_not_count():
    """20 rows are below the minimum of 30: no comparison was drawn, so no chance was taken."""
    tiny = evaluation(0.0, 20, rep=0, attempt=0)
    assert judged(tiny).verdict == Verdict.PROMOTE


def test_an_unreadable_earlier_attempt_refuses():
    broken = EvidenceFinding("run-gone", None, "cannot read its artifacts (OSError: gone)", frozenset(), NOW)
    decision = judged(broken)
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    [message] = attempt_messages(decision)
    assert "every attempt counts" in message and "run-gone" in message and "cannot be read" in message, message


def test_runs_on_the_same_data_must_agree():
    """Two runs on one data version: the same predictions pass, one changed prediction refuses."""
    base = PASSING.evidence
    label, baseline = base.label, {"prediction": base.outcomes.baseline.prediction}
    predictions = base.candidate_only.prediction.copy()
    first = replace(finding(label, {"prediction": predictions}, baseline), run_id="run-a")
    predictions[0] = 1 - predictions[0]
    changed = replace(finding(label, {"prediction": predictions}, baseline), run_id="run-b")
    assert judged(same_data=(("data 0", (first, replace(first, run_id="run-c"))),)).verdict == Verdict.PROMOTE
    decision = judged(same_data=(("data 0", (first, changed)),))
    assert decision.verdict == Verdict.REFUSE_INSUFFICIENT
    [message] = attempt_messages(decision)
    assert "inconsistent evidence" in message and "run-a" in message and "run-b" in message, message


def test_shopping_over_fresh_sets_no_longer_promotes_equal_models():
    """Equal models, up to 5 fresh sets of 2,000 rows, 200 users: judged by the newest run alone
    about 1 - 0.95^5 = 23 % are promoted; with every attempt counted, at most the nominal 5 %."""
    counts = run_case(Case("equal models", 0.0, "up to 5 fresh sets of 2,000", (2_000,) * 5), range(200))
    limit = NOMINAL + 3 * null_se(NOMINAL, counts["reps"])
    assert rate(counts, "every attempt counts")["rate"] <= limit, rate(counts, "every attempt counts")
    assert rate(counts, "newest run only")["rate"] > limit, rate(counts, "newest run only")
