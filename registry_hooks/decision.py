"""The gate's decision: from the policy, the baseline and the evidence to a verdict with reasons.

A pure function of its inputs (no database, no MLflow): the server-side glue gathers the facts,
this module judges them, so the same judgement serves a real promotion, ``gatekeeper explain``
and the ``evaluate`` preview. ``decide`` is the only place a verdict is made — the store passes
it who holds production (``Production``) instead of amending its answer — and a ``Decision`` is
immutable. Every check carries the numbers behind it, and every refusal says which check failed,
by how much, and what to do next.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from registry_hooks import comparison_checks
from registry_hooks.checks import Check, Kind, Outcome, TextEnum
from registry_hooks.drift_summary import DriftSummary, parse_timestamp
from registry_hooks.evidence import VersionRef
from registry_hooks.memo import Memo, content_key
from registry_hooks.policy import ModelPolicy
from registry_hooks.trust import (
    NO_TRUST_FACTS,
    Baseline,
    EvidenceFinding,
    TrustFacts,
    evidence_check,
    evidence_digests,
    trust_checks,
)


class Verdict(TextEnum):
    PROMOTE = "promote"
    REFUSE_WORSE = "refuse_worse"
    REFUSE_INSUFFICIENT = "refuse_insufficient_evidence"
    ROLLBACK = "rollback"


class Action(TextEnum):
    """What the store did with a decision (an override or a rollback moves production whatever the verdict)."""

    PROMOTE = "promote"
    REFUSE = "refuse"
    OVERRIDE = "override"
    ROLLBACK = "rollback"


_HEADS = {
    Verdict.PROMOTE: "Promotion approved",
    Verdict.REFUSE_WORSE: "Promotion refused: the candidate is worse than production",
    Verdict.REFUSE_INSUFFICIENT: "Promotion refused: not enough evidence to tell",
    Verdict.ROLLBACK: "Rolled back",
}


@dataclass(frozen=True)
class Production:
    """Who holds the protected targets when the candidate is judged (``str(target)``: ``alias
    'champion'``, ``stage Production``). A candidate that already is all of production needs no
    evidence to be extended to another target: that changes nothing about which model serves."""

    held: tuple[str, ...] = ()  # protected targets the candidate holds now
    requested: tuple[str, ...] = ()  # targets asked for that it does not hold (alone) yet
    other_holders: frozenset[str] = frozenset()  # other versions holding any protected target

    def extends_sole_production(self) -> bool:
        return bool(self.held and self.requested and not self.other_holders)


NOT_IN_PRODUCTION = Production()


@dataclass(frozen=True)
class DriftFinding:
    run_id: str
    summary: DriftSummary | None
    error: str | None
    run_time: datetime


@dataclass(frozen=True)
class Decision:
    """A verdict, the checks behind it and the inputs it was judged against; what the store then
    did with it is a ``RecordedDecision``."""

    verdict: Verdict
    candidate: VersionRef
    baseline: Baseline
    checks: tuple[Check, ...]
    evidence_run_ids: tuple[str, ...]
    digests: tuple[tuple[str, str], ...] = ()  # (what, sha256) of the evidence judged: the audit chain keeps them

    @property
    def approved(self) -> bool:
        return self.verdict == Verdict.PROMOTE

    @property
    def reasons(self) -> list[str]:
        """Failing checks first; warnings are always kept so an approval never hides them."""
        if self.verdict == Verdict.ROLLBACK:  # no comparison ran: say what happened, not "all checks passed"
            return [c.message for c in self.checks]
        failing = [c.message for c in self.checks if c.outcome.failing]
        warnings = [f"warning: {c.message}" for c in self.checks if c.outcome == Outcome.WARN]
        if failing:
            return failing + warnings
        passed = "passed, with warnings," if warnings else "all checks passed"
        return [f"{passed} against baseline {self._baseline_text()}"] + warnings

    def _baseline_text(self) -> str:
        return f"v{self.baseline.version} ({self.baseline.source})" if self.baseline.version else self.baseline.source

    def summary(self, head: str | None = None) -> str:
        """One paragraph for an HTTP error, the UI dialog or a terminal; ``head`` replaces the
        verdict's headline (a recorded override says what it overrode)."""
        lines = [f"{head or _HEADS[self.verdict]} ({self.candidate} vs baseline {self._baseline_text()})."]
        lines += [f"- {reason}" for reason in self.reasons]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The REST payload; a decision nobody recorded yet (explain, the preview) has no action, id or actor."""
        return {
            "verdict": self.verdict.value,
            "action": None,
            "candidate": asdict(self.candidate),
            "baseline": asdict(self.baseline),
            "checks": [c.to_dict() for c in self.checks],
            "reasons": self.reasons,
            "evidence_run_ids": list(self.evidence_run_ids),
            "decision_id": None,
            "actor": None,
        }


@dataclass(frozen=True)
class RecordedDecision:
    """A decision as the store applied and logged it.

    Kept apart from ``Decision`` so that recording can add facts (the action, the audit row,
    who asked) but never touch the judgement: the verdict and checks in the log are exactly
    what ``decide`` returned, and a recorded decision always has its audit id.
    """

    decision: Decision
    action: Action
    decision_id: int
    actor: str | None  # None: anonymous

    def summary(self) -> str:
        if self.action != Action.OVERRIDE:
            return self.decision.summary()
        head = _HEADS[self.decision.verdict]
        return self.decision.summary(f"Override applied (without it: {head[0].lower()}{head[1:]})")

    def to_dict(self) -> dict[str, Any]:
        return self.decision.to_dict() | {"action": self.action.value, "decision_id": self.decision_id,
                                          "actor": self.actor}


def rolled_back(candidate: VersionRef, replaced: str | None) -> Decision:
    """A rollback compares nothing: it returns production to ``candidate``, approved before ``replaced``."""
    return Decision(
        verdict=Verdict.ROLLBACK,
        candidate=candidate,
        baseline=Baseline(replaced, "production before the rollback" if replaced else "none"),
        checks=(Check(Kind.ROLLBACK, Outcome.PASS,
                      f"rolled back to v{candidate.version}, the version approved before v{replaced}"),),
        evidence_run_ids=(),
    )


def _drift_check(policy: ModelPolicy, candidate: VersionRef, finding: DriftFinding | None, now: datetime) -> Check | None:
    rules = policy.drift
    if not rules.required:
        return None
    failed = Outcome.FAIL_WORSE if rules.mode == "block" else Outcome.WARN
    missing = Outcome.FAIL_INSUFFICIENT if rules.mode == "block" else Outcome.WARN
    if finding is None:
        return Check(Kind.DRIFT, missing, f"no drift report for {candidate}; run `mlflow run . -e drift -P model=models:/{candidate.name}/{candidate.version} -P current=...`")
    if finding.summary is None:
        return Check(Kind.DRIFT, missing, f"drift report run {finding.run_id} is unusable: {finding.error}", {"run_id": finding.run_id})
    summary = finding.summary
    if (summary.candidate_name, summary.candidate_version) != (candidate.name, candidate.version):
        return Check(
            Kind.DRIFT, missing,
            f"drift report run {finding.run_id} is about {summary.candidate_name} v{summary.candidate_version}, not {candidate}",
            {"run_id": finding.run_id},
        )
    age = (now - min(parse_timestamp(summary.created_at, "created_at"), finding.run_time)).total_seconds()
    numbers = {
        "run_id": finding.run_id, "share_drifted": summary.share_drifted, "n_drifted": summary.n_drifted,
        "n_columns": summary.n_columns, "age_seconds": round(age, 1),
        "drifted_columns": summary.drifted_columns, "schema_changes": [c.to_dict() for c in summary.schema_changes],
    }
    if age > rules.max_age_seconds:
        return Check(Kind.DRIFT, missing, f"stale drift report: run {finding.run_id} is {age / 3600:.1f} h old, the policy allows {rules.max_age_seconds / 3600:.1f} h", numbers)
    problems = []
    if summary.share_drifted > rules.max_share_drifted:
        problems.append(
            f"{summary.n_drifted} of {summary.n_columns} columns drifted ({summary.share_drifted:.0%} > "
            f"allowed {rules.max_share_drifted:.0%}: {', '.join(summary.drifted_columns[:10])})"
        )
    critical = sorted(set(rules.critical_columns) & set(summary.drifted_columns))
    if critical:
        problems.append(f"critical column(s) drifted: {', '.join(critical)}")
    if problems:
        return Check(Kind.DRIFT, failed, "drift: " + "; ".join(problems) + f" (report run {finding.run_id})", numbers)
    return Check(Kind.DRIFT, Outcome.PASS, f"drift: {summary.n_drifted} of {summary.n_columns} columns drifted, within policy", numbers)


_STATISTICS = Memo(256)  # (evidence content, policy, baseline, checks failed elsewhere) -> checks


def _comparison_checks(policy: ModelPolicy, baseline: Baseline, finding: EvidenceFinding,
                       other_checks: list[Check]) -> list[Check]:
    """The statistical checks of usable evidence, computed once per evidence content
    (``registry_hooks.memo``): the rest of the judgement is cheap and is made every time."""
    worse_elsewhere = tuple(c.name for c in other_checks if c.outcome == Outcome.FAIL_WORSE)
    key = content_key(finding.evidence, finding.run_id, policy, baseline, worse_elsewhere)
    return list(_STATISTICS.get(key, lambda: tuple(_statistical_checks(policy, baseline, finding, worse_elsewhere))))


def _statistical_checks(policy: ModelPolicy, baseline: Baseline, finding: EvidenceFinding,
                        worse_elsewhere: tuple[str, ...]) -> list[Check]:
    """The primary check is judged last so that its advice can agree with the verdict the other
    checks already force."""
    found = finding.evidence
    try:
        labels = comparison_checks.evidence_labels(policy, found)
        if baseline.version is None:
            return comparison_checks.first_release_checks(policy, found, labels)
        rest = comparison_checks.secondary_checks(policy, found.outcomes, labels)
        rest += comparison_checks.slice_checks(policy, found, found.outcomes, labels)
        worse = [c.name for c in rest if c.outcome == Outcome.FAIL_WORSE] + list(worse_elsewhere)
        return [comparison_checks.primary_check(policy, found.outcomes, labels, worse)] + rest
    except ValueError as exc:  # e.g. a metric the evidence cannot support (no probabilities, a stray class)
        return [Check(Kind.EVIDENCE, Outcome.FAIL_INSUFFICIENT, f"evidence run {finding.run_id} cannot be scored: {exc}")]


def decide(
    policy: ModelPolicy,
    candidate: VersionRef,
    baseline: Baseline,
    evidence: EvidenceFinding | None,
    drift: DriftFinding | None,
    now: datetime,
    production: Production = NOT_IN_PRODUCTION,
    trust: TrustFacts = NO_TRUST_FACTS,
) -> Decision:
    """Judge one candidate. Never raises on bad evidence: that becomes a failing check.

    ``evidence`` is the deciding run (with registered sets: the one on the first set's current
    version); ``trust`` what else the store found: the required sets, earlier attempts, runs on
    the same data, verifications (``registry_hooks.trust``)."""
    usable = evidence_check(policy, candidate, baseline, evidence, now)
    trusted = trust_checks(policy, candidate, baseline, trust, now)
    drift_check = _drift_check(policy, candidate, drift, now)
    checks = [usable] if evidence is not None or not trust.sets else []  # else the set's check says what is missing
    if usable.outcome == Outcome.PASS:
        checks += _comparison_checks(policy, baseline, evidence, [c for c in trusted + [drift_check] if c is not None])
    checks += trusted
    if drift_check is not None:
        checks.append(drift_check)
    outcomes = {c.outcome for c in checks}
    verdict = (
        Verdict.REFUSE_WORSE if Outcome.FAIL_WORSE in outcomes
        else Verdict.REFUSE_INSUFFICIENT if Outcome.FAIL_INSUFFICIENT in outcomes
        else Verdict.PROMOTE
    )
    if verdict != Verdict.PROMOTE and production.extends_sole_production():
        verdict, checks = Verdict.PROMOTE, [Check(
            Kind.EVIDENCE, Outcome.PASS,
            f"already production through {production.held[0]}; extending it to {production.requested[0]}",
        )]
    extra = [s.finding for s in trust.sets[1:] if s.finding is not None] + [a.finding for a in trust.attempts]
    run_ids = tuple(dict.fromkeys(f.run_id for f in (evidence, *extra, drift) if f is not None))
    return Decision(verdict=verdict, candidate=candidate, baseline=baseline, checks=tuple(checks), evidence_run_ids=run_ids,
                    digests=evidence_digests(evidence, trust))
