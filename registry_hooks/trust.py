"""Can this evidence be trusted? Every check about the evidence itself, before any statistics.

- **The run**: it exists, parses, is about this candidate and this baseline, logged the data it
  claims, is fresh (``evidence_check``).
- **Registered sets** (policy ``evaluation.sets``): the evidence is on the current registered
  version of every required set and covers all its rows; a guard set shows no regression.
- **Every attempt counts**: each other version of the data the candidate was evaluated on
  against this baseline is an earlier attempt, and the candidate must have passed there too — an
  intersection–union rule, so evaluating an equally good model on ten data sets until one passes
  promotes it at most α of the time, while a better model evaluated once keeps its full power.
  A comparison refused for too little data (a sufficiency shortfall) is not an attempt: no
  chance was drawn. Runs on the *same* data must agree on every prediction.
- **Verification**: a verifier process re-scored a secret sample of the rows and found the logged
  outcomes genuine (``registry_hooks.verification``).

Pure functions of facts the store gathers, like ``decide`` which calls them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

import numpy as np

from registry_hooks import comparison_checks
from registry_hooks.checks import Check, Kind, Outcome
from registry_hooks.eval_sets import SetVersion
from registry_hooks.evidence import Evidence, VersionRef
from registry_hooks.memo import Memo, content_key
from registry_hooks.policy import ModelPolicy

_STATISTICS = Memo(256)  # guard and earlier-attempt checks, once per evidence content (registry_hooks.memo)


@dataclass(frozen=True)
class Baseline:
    """The version a candidate must beat, and how it was found (for the messages and the log)."""

    version: str | None
    source: str  # e.g. "alias 'champion'", "stage Production", "audit log", "none (first release)"


@dataclass(frozen=True)
class EvidenceFinding:
    """One evaluation run found for the candidate, with the facts needed to judge its freshness."""

    run_id: str
    evidence: Evidence | None
    error: str | None
    logged_data_hashes: frozenset[str]
    run_time: datetime
    newer_data_hash: str | None = None  # a newer evaluation of the same data set used other rows
    error_numbers: Mapping[str, Any] = field(default_factory=dict)  # the figures behind ``error`` (e.g. rows over the budget)


def evidence_check(
    policy: ModelPolicy, candidate: VersionRef, baseline: Baseline, finding: EvidenceFinding | None, now: datetime
) -> Check:
    """Is there usable, fresh evidence for *this* candidate against *this* baseline?"""
    evaluate_hint = (
        f"run `mlflow run . -e evaluate -P model=models:/{candidate.name}/{candidate.version} ...` "
        "(or log evidence with registry_hooks.evidence.log_evidence)"
    )
    if finding is None:
        return Check(Kind.EVIDENCE, Outcome.FAIL_INSUFFICIENT, f"no evidence: no finished evaluation run for {candidate}; {evaluate_hint}")
    numbers = {"run_id": finding.run_id}
    if finding.evidence is None:
        return Check(Kind.EVIDENCE, Outcome.FAIL_INSUFFICIENT, f"evidence run {finding.run_id} is unusable: {finding.error}",
                     numbers | dict(finding.error_numbers))
    manifest = finding.evidence.manifest
    if (manifest.candidate.name, manifest.candidate.version) != (candidate.name, candidate.version):
        return Check(
            Kind.EVIDENCE, Outcome.FAIL_INSUFFICIENT,
            f"evidence run {finding.run_id} is about {manifest.candidate}, not {candidate}", numbers,
        )
    evidence_baseline = manifest.baseline.version if manifest.baseline else None
    if manifest.baseline and manifest.baseline.name != candidate.name:
        evidence_baseline = f"{manifest.baseline.name}/{manifest.baseline.version}"
    if evidence_baseline != baseline.version:
        against = f"v{evidence_baseline}" if evidence_baseline else "no baseline (first release)"
        now_text = f"v{baseline.version} ({baseline.source})" if baseline.version else "no production version"
        return Check(
            Kind.EVIDENCE, Outcome.FAIL_INSUFFICIENT,
            f"stale evidence: run {finding.run_id} compared against {against}, but the baseline is now "
            f"{now_text}; re-evaluate against it: {evaluate_hint}",
            numbers,
        )
    data_hash = manifest.data.content_hash
    if data_hash not in finding.logged_data_hashes:
        return Check(
            Kind.EVIDENCE, Outcome.FAIL_INSUFFICIENT,
            f"evidence run {finding.run_id} claims data {data_hash[:12]}… but logged no dataset input with "
            "that gatekeeper.content_hash, so the data cannot be verified",
            numbers,
        )
    if finding.newer_data_hash and finding.newer_data_hash != data_hash:
        return Check(
            Kind.EVIDENCE, Outcome.FAIL_INSUFFICIENT,
            f"stale evidence: evaluation data '{manifest.data.name}' changed since run {finding.run_id} "
            f"(evidence used {data_hash[:12]}…, newest is {finding.newer_data_hash[:12]}…); re-evaluate on the current data",
            numbers,
        )
    age = (now - min(manifest.created_at, finding.run_time)).total_seconds()
    numbers.update(age_seconds=round(age, 1), max_age_seconds=policy.evidence.max_age_seconds, n=finding.evidence.n)
    if age > policy.evidence.max_age_seconds:
        return Check(
            Kind.EVIDENCE, Outcome.FAIL_INSUFFICIENT,
            f"stale evidence: run {finding.run_id} is {age / 3600:.1f} h old, the policy allows "
            f"{policy.evidence.max_age_seconds / 3600:.1f} h; re-evaluate",
            numbers,
        )
    return Check(Kind.EVIDENCE, Outcome.PASS, f"evidence run {finding.run_id}: {finding.evidence.n} examples on data {data_hash[:12]}…", numbers)


@dataclass(frozen=True)
class SetEvidence:
    """One required set: its current registered version, and this candidate's evidence on it."""

    required: str  # the policy's spelling
    current: SetVersion | None  # None: not registered
    finding: EvidenceFinding | None  # evidence on the current version, against this baseline
    other_versions: tuple[int, ...] = ()  # versions of the set the candidate has older evidence on
    verification: Any = None  # a registry_hooks.verification.VerificationFact, when required

    @property
    def label(self) -> str:
        return str(self.current) if self.current else self.required


@dataclass(frozen=True)
class Attempt:
    """Evidence of this candidate against this baseline on other data than the deciding evidence."""

    data: str  # for people: "golden v2", or a data name and hash prefix
    finding: EvidenceFinding


@dataclass(frozen=True)
class TrustFacts:
    """What the store found beyond the deciding evidence run (empty: nothing more to judge)."""

    sets: tuple[SetEvidence, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    same_data: tuple[tuple[str, tuple[EvidenceFinding, ...]], ...] = ()  # runs on one data version, distinct files
    unregistered: tuple[str, ...] = ()  # evidence runs on data that is no registered set (set mode)


NO_TRUST_FACTS = TrustFacts()


def predictions_digest(evidence: Evidence) -> str:
    """SHA-256 of every row's id, label and predictions, in row-id order: two honest evaluations of
    the same models on the same rows agree on it, whatever the file's layout or compression."""
    order = np.argsort(evidence.row_ids.astype(str), kind="stable")
    digest = hashlib.sha256()
    columns = [evidence.row_ids, evidence.label, evidence.candidate_only.prediction]
    if evidence.outcomes is not None:
        columns.append(evidence.outcomes.baseline.prediction)
    for column in columns:
        digest.update("\x1f".join(map(str, np.asarray(column)[order])).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def _set_check(policy: ModelPolicy, candidate: VersionRef, found: SetEvidence, guard: bool) -> Check | None:
    """Is the evidence on this set's current version, and all of it? None: yes. A guard set
    (not the first) that was never registered is skipped: a failure found once is tested from
    then on, and nothing before it was."""
    made = lambda outcome, message, numbers=None: Check(  # noqa: E731 - one place for the set's name
        Kind.SET, outcome, message, numbers or {}, evaluation_set=found.required)
    evaluate = (f"`mlflow run . -e evaluate -P model=models:/{candidate.name}/{candidate.version} "
                f"-P data=set:{found.required}`")
    if found.current is None and guard:
        return made(Outcome.SKIP, f"guard set {found.required!r} is not registered yet: nothing to guard (it counts "
                    "from its first registration on, for every later candidate)")
    if found.current is None:
        return made(Outcome.FAIL_INSUFFICIENT, f"the policy requires evaluation set {found.required!r}, which is not "
                    f"registered: `gatekeeper sets register {found.required} DATA_URI --label COLUMN`")
    numbers = {"set": found.current.name, "version": found.current.version, "n_rows": found.current.n_rows}
    minimum = policy.evaluation.minimum_rows(found.required)
    if found.current.n_rows < minimum:
        return made(Outcome.FAIL_INSUFFICIENT, f"set {found.label} has {found.current.n_rows:,} rows; the policy "
                    f"requires at least {minimum:,}: register a larger version", numbers | {"minimum": minimum})
    if found.finding is None:
        if found.other_versions:
            older = ", ".join(f"v{v}" for v in found.other_versions)
            return made(Outcome.FAIL_INSUFFICIENT, f"set {found.current.name} has a newer version v{found.current.version}: "
                        f"the evidence is on {older}; re-evaluate: {evaluate}", numbers)
        return made(Outcome.FAIL_INSUFFICIENT, f"no evidence for {candidate} on {found.label}: {evaluate}", numbers)
    evidence = found.finding.evidence
    if evidence is not None and evidence.n != found.current.n_rows:
        return made(Outcome.FAIL_INSUFFICIENT, f"evidence run {found.finding.run_id} covers {evidence.n:,} rows, but "
                    f"{found.label} has {found.current.n_rows:,}: evidence must score every row of the set, not a "
                    f"subset; {evaluate}", numbers | {"evidence_rows": evidence.n})
    return None


def _verification_check(found: SetEvidence) -> Check:
    fact = found.verification
    if fact is None:
        return Check(Kind.VERIFICATION, Outcome.FAIL_INSUFFICIENT, f"not enough evidence: the outcomes on "
                     f"{found.label} are not verified yet", evaluation_set=found.required)
    outcome = Outcome.PASS if fact.trusted else Outcome.FAIL_INSUFFICIENT
    prefix = "" if fact.trusted else "not enough evidence: "
    numbers = dict(fact.numbers) | {"status": fact.status, "request_id": getattr(fact, "request_id", None)}
    return Check(Kind.VERIFICATION, outcome, prefix + fact.message, numbers, evaluation_set=found.required)


def _guard_checks(policy: ModelPolicy, candidate: VersionRef, baseline: Baseline, guards: list[SetEvidence],
                  now: datetime) -> list[Check]:
    """Each further required set: usable evidence, and the primary metric not shown worse."""
    checks, tested = [], sum(1 for g in guards if g.current is not None)
    for found in guards:
        if found.current is None or found.finding is None:
            continue  # not registered yet, or no evidence on it: _set_check says so
        usable = evidence_check(policy, candidate, baseline, found.finding, now)
        if usable.outcome != Outcome.PASS:
            checks.append(Check(Kind.SET, usable.outcome, f"{found.label}: {usable.message}", usable.numbers,
                                evaluation_set=found.required))
        elif baseline.version is not None:
            evidence = found.finding.evidence
            checks.append(_STATISTICS.get(content_key(evidence, policy, found.required, tested),
                                          lambda: comparison_checks.guard_check(policy, found.required, evidence, tested)))
    return checks


def _primary(policy: ModelPolicy, evidence: Evidence) -> Check:
    try:
        labels = comparison_checks.evidence_labels(policy, evidence)
        return comparison_checks.primary_check(policy, evidence.outcomes, labels, [])
    except ValueError as exc:
        return Check(Kind.PRIMARY, Outcome.FAIL_INSUFFICIENT, f"cannot be scored: {exc}")


def _attempt_check(policy: ModelPolicy, baseline: Baseline, attempt: Attempt) -> Check | None:
    """An earlier attempt that did not pass refuses the candidate; None when it passed or drew no chance."""
    finding, against = attempt.finding, f"v{baseline.version}"
    numbers = {"run_id": finding.run_id, "data": attempt.data}
    if finding.evidence is None:
        return Check(Kind.ATTEMPTS, Outcome.FAIL_INSUFFICIENT, f"every attempt counts: evidence run {finding.run_id} "
                     f"on {attempt.data} cannot be read ({finding.error}), so whether the candidate passed there "
                     "cannot be known; evaluate a new candidate version", numbers)
    if not finding.evidence.compared:
        return None  # first-release evidence: no comparison against this baseline was drawn
    primary = _STATISTICS.get(content_key(finding.evidence, policy, "attempt"), lambda: _primary(policy, finding.evidence))
    if primary.outcome == Outcome.PASS or "minimum" in primary.numbers:
        return None
    return Check(Kind.ATTEMPTS, Outcome.FAIL_WORSE if primary.outcome == Outcome.FAIL_WORSE else Outcome.FAIL_INSUFFICIENT,
                 f"every attempt counts: against {against} the candidate was also evaluated on {attempt.data} (run "
                 f"{finding.run_id}) and did not pass there ({primary.message}). A candidate is promoted only if it "
                 "passes on every data version it was evaluated on, so re-evaluating cannot shop for a lucky sample; "
                 "train or choose a new candidate version", numbers | {"primary": dict(primary.numbers)})


def _agreement_checks(trust: TrustFacts) -> list[Check]:
    checks = []
    for data, findings in trust.same_data:
        parsed = [f for f in findings if f.evidence is not None]
        digests = {f.run_id: predictions_digest(f.evidence) for f in parsed}
        if len(set(digests.values())) > 1:
            runs = ", ".join(digests)
            checks.append(Check(Kind.ATTEMPTS, Outcome.FAIL_INSUFFICIENT,
                                f"inconsistent evidence: runs {runs} evaluated {data} and disagree on the predictions "
                                "or labels; the same models on the same rows must give the same outcomes — find out "
                                "which run is wrong (the audit log keeps both run ids)", {"runs": list(digests)}))
    return checks


def trust_checks(policy: ModelPolicy, candidate: VersionRef, baseline: Baseline, trust: TrustFacts,
                 now: datetime) -> list[Check]:
    """Every check about registered sets, earlier attempts, agreement and verification."""
    checks = [c for c in (_set_check(policy, candidate, found, guard=i > 0) for i, found in enumerate(trust.sets))
              if c is not None]
    if trust.sets and trust.sets[0].finding is None and trust.unregistered:
        checks.append(Check(Kind.SET, Outcome.FAIL_INSUFFICIENT, f"evidence on unregistered data (run "
                            f"{', '.join(trust.unregistered[:3])}): the policy accepts only evidence on the current "
                            f"version of {', '.join(s.label for s in trust.sets)}", evaluation_set=trust.sets[0].required))
    checks += _guard_checks(policy, candidate, baseline, list(trust.sets[1:]), now)
    if policy.evaluation.verified:
        checks += [_verification_check(found) for found in trust.sets if found.finding is not None]
    checks += [c for c in (_attempt_check(policy, baseline, a) for a in trust.attempts) if c is not None]
    return checks + _agreement_checks(trust)


def evidence_digests(evidence: EvidenceFinding | None, trust: TrustFacts) -> tuple[tuple[str, str], ...]:
    """What the audit log records a decision rested on: the deciding manifest and outcomes file,
    every guard set's outcomes, and each verification's signature."""
    digests = []
    for label, finding in [("", evidence)] + [(f":{s.required}", s.finding) for s in trust.sets[1:]]:
        if finding is not None and finding.evidence is not None:
            manifest = finding.evidence.manifest
            text = json.dumps(manifest.to_dict(), sort_keys=True, separators=(",", ":"))
            digests += [(f"manifest{label}", hashlib.sha256(text.encode()).hexdigest()),
                        (f"outcomes{label}", manifest.outcomes_sha256)]
    digests += [(f"verification:{s.required}", s.verification.signature) for s in trust.sets
                if s.verification is not None and getattr(s.verification, "signature", None)]
    return tuple(digests)
