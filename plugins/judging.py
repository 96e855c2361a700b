"""Gathering what one judgement needs, and asking ``decide``: the store's read side.

The registered sets the policy requires, the candidate's evidence runs (and those the gate saw
before, ``registry_hooks.evidence_seen``), the verification of each set's evidence (requested
and a verifier started the first time), the drift report — then ``registry_hooks.decision.decide``,
which alone makes the verdict. The store (``plugins.registry_store``) calls this before taking the
per-model lock and, on its last optimistic attempt, under it: then nothing is written (a request
commits on its own connection, which the lock would block on SQLite), only looked up.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from plugins import verifier_launch
from plugins.evidence_source import EvidenceSource, RequiredSet
from registry_hooks import comparison_checks, eval_sets, evidence_seen, verification
from registry_hooks.decision import Baseline, Decision, Production, decide
from registry_hooks.evidence import OutcomesChanged, VersionRef
from registry_hooks.evidence_seen import SeenRun
from registry_hooks.policy import ModelPolicy
from registry_hooks.transactions import retrying
from registry_hooks.trust import TrustFacts


def required_sets(session: Session, policy: ModelPolicy) -> tuple[RequiredSet, ...]:
    """The policy's required sets with their registered versions, newest first."""
    return tuple(RequiredSet(name, tuple(eval_sets.versions(session, name))) for name in policy.evaluation.sets)


class Judge:
    """Judges a candidate from the evidence it can find; ``db_uri`` is the gate's database (a
    spawned verifier opens it), ``secret`` signs and checks verifications."""

    def __init__(self, engine: Engine, db_uri: str, secret: bytes, evidence: EvidenceSource):
        self.engine, self.db_uri, self.secret, self.evidence = engine, db_uri, secret, evidence

    _TRIES = 3

    def judge(self, candidate: VersionRef, facts: tuple[Baseline, Production], policy: ModelPolicy,
              sets: tuple[RequiredSet, ...], locked: Session | None = None) -> Decision:
        """Gather and decide; ``locked``: the session holding the per-model lock, if any.

        An outcomes file the gate checked before is read again only when an array is needed
        (``registry_hooks.evidence.Evidence``); one that changed in between makes the judgement
        start again, and that file is then parsed at once (a bad one becomes a refusal reason)."""
        for _ in range(self._TRIES - 1):
            try:
                return self._judge(candidate, facts, policy, sets, locked)
            except OutcomesChanged:
                continue
        return self._judge(candidate, facts, policy, sets, locked)

    def _judge(self, candidate: VersionRef, facts: tuple[Baseline, Production], policy: ModelPolicy,
               sets: tuple[RequiredSet, ...], locked: Session | None) -> Decision:
        baseline, production = facts
        finding, trust, observed = self.evidence.gather(candidate, baseline.version, sets, self._seen(candidate, locked),
                                                        comparison_checks.columns_kept(policy))
        if locked is None:
            self._remember(observed)
        if policy.evaluation.verified:
            trust = self._verified(trust, candidate, baseline, policy, locked)
        drift = self.evidence.find_drift(candidate) if policy.drift.required else None
        return decide(policy, candidate, baseline, finding, drift, datetime.now(timezone.utc), production, trust)

    def _seen(self, candidate: VersionRef, locked: Session | None) -> tuple[SeenRun, ...]:
        """The evidence runs of ``candidate`` the gate recorded before."""
        if locked is not None:
            return evidence_seen.seen(locked, candidate)
        with Session(self.engine) as session:
            return evidence_seen.seen(session, candidate)

    def _remember(self, observed: tuple[SeenRun, ...]) -> None:
        """Record the evidence runs seen for the first time, in their own transaction."""
        if not observed:
            return

        def once() -> None:
            with Session(self.engine) as session, session.begin():
                evidence_seen.record(session, observed)

        retrying(once)

    def _verified(self, trust: TrustFacts, candidate: VersionRef, baseline: Baseline, policy: ModelPolicy,
                  locked: Session | None) -> TrustFacts:
        """Each required set's evidence with its verification: requested (and a verifier started)
        the first time, looked up after that."""
        found = []
        for required in trust.sets:
            key = verification.verification_key(required, candidate, baseline, policy)
            if key is None:
                found.append(required)
            elif locked is not None:
                found.append(replace(required, verification=verification.lookup(
                    locked, key, self.secret, int(time.time() * 1000))))
            else:
                found.append(replace(required, verification=verifier_launch.ensure(
                    self.engine, self.db_uri, key, self.secret)))
        return replace(trust, sets=tuple(found))
