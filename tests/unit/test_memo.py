"""Judging evidence once (``registry_hooks.memo``): a kept result is the result, never a stale one.

The statistics of parsed evidence are kept per evidence content; these tests hold that a verdict
is the same warm or cold, that changed content, policy or baseline is judged afresh, and that
evidence built in memory (no content identity) is never kept.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.simulate import BASELINE, CANDIDATE, NOW, finding, promotion_policy
from registry_hooks import decision as decision_module
from registry_hooks import evidence as evidence_module
from registry_hooks.decision import Baseline, Verdict, decide
from registry_hooks.memo import Memo, content_key

POLICY = promotion_policy("accuracy", 0.0)


def outcomes(better_by: float, n: int = 2_000, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    right = lambda accuracy: np.where(rng.random(n) < accuracy, label, 1 - label)  # noqa: E731
    return {"label": label, "candidate": {"prediction": right(0.80 + better_by)}, "baseline": {"prediction": right(0.80)}}


@pytest.fixture(autouse=True)
def cold():
    decision_module._STATISTICS.clear()
    yield
    decision_module._STATISTICS.clear()


def test_a_memo_keeps_the_most_recently_used_entries_up_to_its_size():
    memo, calls = Memo(2), []
    compute = lambda value: lambda: calls.append(value) or value  # noqa: E731
    assert [memo.get("a", compute(1)), memo.get("b", compute(2)), memo.get("a", compute(9))] == [1, 2, 1]
    memo.get("c", compute(3))  # evicts "b", the least recently used
    assert memo.get("b", compute(4)) == 4 and memo.get("a", compute(8)) == 8  # "a" went when "b" came back
    assert calls == [1, 2, 3, 4, 8] and len(memo) == 2
    assert memo.get(None, compute(5)) == 5 and memo.get(None, compute(6)) == 6  # no key: never kept
    with pytest.raises(ValueError):
        Memo(0)


def test_threads_sharing_a_memo_get_one_answer_per_key():
    memo, answers = Memo(64), []

    def work(i: int) -> None:
        answers.append(memo.get(i % 8, lambda: (i % 8) * 10))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(answers)) == [k * 10 for k in range(8)] and len(answers) == 64 and len(memo) == 8


def test_a_verdict_is_the_same_judged_cold_and_warm():
    found = finding(**outcomes(0.05))
    cold_decision = decide(POLICY, CANDIDATE, BASELINE, found, None, NOW)
    hits = decision_module._STATISTICS.hits
    warm_decision = decide(POLICY, CANDIDATE, BASELINE, found, None, NOW)
    assert decision_module._STATISTICS.hits == hits + 1  # the statistics were reused...
    assert warm_decision == cold_decision and warm_decision.verdict == Verdict.PROMOTE  # ...and gave the same decision
    unkept = replace(found, evidence=replace(found.evidence, content_identity=None))
    assert decide(POLICY, CANDIDATE, BASELINE, unkept, None, NOW) == cold_decision


def test_changed_outcomes_under_the_same_run_id_are_judged_afresh():
    """A re-logged outcomes file has another sha256, so another manifest: a new key."""
    better, equal = finding(**outcomes(0.06)), finding(**outcomes(0.0, seed=4))
    assert better.run_id == equal.run_id and better.evidence.content_identity != equal.evidence.content_identity
    assert decide(POLICY, CANDIDATE, BASELINE, better, None, NOW).verdict == Verdict.PROMOTE
    assert decide(POLICY, CANDIDATE, BASELINE, equal, None, NOW).verdict != Verdict.PROMOTE


def test_another_policy_or_baseline_is_judged_afresh():
    found = finding(**outcomes(0.02))
    assert decide(POLICY, CANDIDATE, BASELINE, found, None, NOW).verdict == Verdict.PROMOTE
    demanding = promotion_policy("accuracy", 0.2)
    assert decide(demanding, CANDIDATE, BASELINE, found, None, NOW).verdict != Verdict.PROMOTE
    other = Baseline("7", "alias 'champion'")  # the evidence was against v1: stale, whatever the statistics say
    assert decide(POLICY, CANDIDATE, other, found, None, NOW).verdict != Verdict.PROMOTE


def test_evidence_built_in_memory_is_never_kept():
    found = finding(**outcomes(0.05))
    in_memory = replace(found.evidence, content_identity=None)
    assert content_key(in_memory, "x") is None and content_key(found.evidence, "x") is not None
    before = len(decision_module._STATISTICS)
    decide(POLICY, CANDIDATE, BASELINE, replace(found, evidence=in_memory), None, NOW)
    assert len(decision_module._STATISTICS) == before


def test_duplicate_row_ids_are_refused_however_often_the_file_is_parsed():
    """The row-id check is kept per file digest: a file with duplicates stays refused, a good one parses."""
    data = outcomes(0.05, n=100)
    manifest = finding(**data).evidence.manifest
    for row_id, unique in ((["r"] * 100, False), (range(100), True)):
        raw = evidence_module.outcomes_table(row_id=row_id, label=data["label"], candidate=data["candidate"],
                                             baseline=data["baseline"])
        pinned = replace(manifest, outcomes_sha256=hashlib.sha256(raw).hexdigest())
        for _ in range(2):
            if unique:
                assert evidence_module.parse_outcomes(raw, pinned, "run-x").n == 100
            else:
                with pytest.raises(evidence_module.EvidenceError, match="duplicates"):
                    evidence_module.parse_outcomes(raw, pinned, "run-x")
