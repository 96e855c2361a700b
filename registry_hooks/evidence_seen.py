"""The evidence runs the gate has seen, so that an attempt stays an attempt.

Every attempt counts (``registry_hooks.trust``), and the gate finds attempts by their runs' tags —
which anyone with edit rights can change afterwards: retag a failed evaluation's candidate or
baseline, and the next search no longer finds it. So the first time the gate sees an evidence run
(any ``explain``, ``promote`` or evaluate's preview) it records what the run was then: candidate,
baseline and data hash. A recorded run that the search no longer finds under that identity is
still weighed as an attempt, read by its run id; one that is gone refuses ("cannot be read").
Rows are append-only (database triggers), like the decisions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy.orm import Session

from registry_hooks.audit.models import SqlEvidenceSeen
from registry_hooks.evidence import VersionRef


@dataclass(frozen=True)
class SeenRun:
    """An evidence run's identity when the gate first saw it."""

    run_id: str
    candidate: VersionRef
    baseline_version: str  # the run's baseline tag ("none": first release)
    data_hash: str


def seen(session: Session, candidate: VersionRef) -> tuple[SeenRun, ...]:
    """Every recorded evidence run of ``candidate``, oldest first."""
    rows = (session.query(SqlEvidenceSeen)
            .filter(SqlEvidenceSeen.model_name == candidate.name,
                    SqlEvidenceSeen.candidate_version == candidate.version)
            .order_by(SqlEvidenceSeen.id).all())
    return tuple(SeenRun(r.run_id, candidate, r.baseline_version, r.data_hash) for r in rows)


def record(session: Session, runs: Iterable[SeenRun]) -> int:
    """Record the runs not recorded yet (a run keeps its first identity); how many were new."""
    runs = list(runs)
    if not runs:
        return 0
    known = {run_id for (run_id,) in session.query(SqlEvidenceSeen.run_id)
             .filter(SqlEvidenceSeen.run_id.in_([r.run_id for r in runs]))}
    now = int(time.time() * 1000)
    new = [r for r in runs if r.run_id not in known]
    session.add_all(SqlEvidenceSeen(run_id=r.run_id, model_name=r.candidate.name,
                                    candidate_version=r.candidate.version, baseline_version=r.baseline_version,
                                    data_hash=r.data_hash, first_seen_at=now) for r in new)
    session.flush()  # two workers recording one run: the loser's IntegrityError re-runs the transaction
    return len(new)
