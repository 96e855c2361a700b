"""Migrating, appending to and reading the audit log.

Every function takes the caller's SQLAlchemy session so an audit row commits or rolls back
together with the registry change it describes: a promotion is never recorded without happening,
nor happens without being recorded. ``append`` also extends the model's hash chain
(``registry_hooks.audit.chain``) in that same transaction.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, text
from sqlalchemy.orm import Session

from registry_hooks.audit import chain
from registry_hooks.audit.models import SqlAuditHead, SqlDecision
from registry_hooks.contract import AUDIT_VERSION_TABLE, DECISIONS_TABLE
from registry_hooks.decision import Action
from registry_hooks.transactions import retrying

APPROVING_ACTIONS = tuple(a.value for a in (Action.PROMOTE, Action.OVERRIDE, Action.ROLLBACK))  # production moved
_MIGRATIONS = Path(__file__).parent / "migrations"
_ADVISORY_LOCK_KEY = 0x6761746B  # "gatk": serialises concurrent start-ups on PostgreSQL


def _alembic_config(engine: Engine) -> Config:
    config = Config(str(_MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Bring the gatekeeper tables to the newest revision, safely from several workers at once.

    Must run after MLflow created its own tables (an empty database that first gets ours makes
    ``mlflow db upgrade`` fail). PostgreSQL serialises workers with an advisory lock; a SQLite
    worker that meets another one's DDL (a lock, a table that now exists, a version row inserted
    first) looks again after a short pause (``transactions.retrying``); any other error stops
    the start-up.
    """
    config = _alembic_config(engine)
    head = ScriptDirectory.from_config(config).get_current_head()
    retrying(lambda: _upgrade(engine, config, head))


def _upgrade(engine: Engine, config: Config, head: str) -> None:
    """One attempt: read the revision the database has, and upgrade it to ``head`` if it is older."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        current = MigrationContext.configure(connection, opts={"version_table": AUDIT_VERSION_TABLE}).get_current_revision()
        if current != head:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")


@dataclass(frozen=True)
class DecisionRecord:
    """A decision as written to and read from the log (JSON fields already decoded); an appended
    row is never changed, and neither is its record."""

    model_name: str
    candidate_version: str | None
    baseline_version: str | None
    action: str
    verdict: str
    target: str
    route: str
    actor: str | None
    reasons: list[str]
    checks: list[dict[str, Any]]
    evidence_run_ids: list[str]
    policy_hash: str
    replaced: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # evidence name -> hex digest judged on
    id: int | None = None
    created_at: int | None = None
    prev_hash: str | None = None  # the chain, as stored (None on rows written before it)
    row_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def append(session: Session, record: DecisionRecord, secret: bytes) -> DecisionRecord:
    """Insert one decision, chained to the model's previous one; returns it with its id, timestamp
    and hashes filled in.

    The caller holds the per-model lock (a row lock on the registered model on PostgreSQL, BEGIN
    IMMEDIATE on SQLite), so the model's head read here is still its head at commit; the head of
    all models is row-locked here.
    """
    head, head_trusted = chain.claim_head(session, secret, record.model_name)
    total, total_trusted = chain.claim_head(session, secret, chain.ALL_MODELS)
    row = SqlDecision(
        id=_next_id(session, total),
        created_at=int(time.time() * 1000),
        model_name=record.model_name,
        candidate_version=record.candidate_version,
        baseline_version=record.baseline_version,
        action=record.action,
        verdict=record.verdict,
        target=record.target,
        route=record.route,
        actor=record.actor,
        reasons=json.dumps(record.reasons),
        checks=json.dumps(record.checks, default=str),
        evidence_run_ids=json.dumps(record.evidence_run_ids),
        replaced=json.dumps(record.replaced),
        policy_hash=record.policy_hash,
        digests=json.dumps(record.digests, sort_keys=True),
        prev_hash=head.last_hash or chain.GENESIS,
    )
    row.row_hash = chain.row_hash(secret, row.prev_hash, row)
    session.add(row)
    session.flush()
    chain.advance(secret, head, head_trusted, row)
    chain.advance(secret, total, total_trusted, row)
    session.flush()
    return replace(record, id=row.id, created_at=row.created_at, prev_hash=row.prev_hash, row_hash=row.row_hash)


def _next_id(session: Session, total: SqlAuditHead) -> int:
    """The new row's id, chosen before the insert: it is part of the hashed row, and the append-only
    triggers forbid writing the hash afterwards. PostgreSQL draws it from the table's sequence; on
    SQLite the caller's BEGIN IMMEDIATE makes max + 1 safe, and an id the log ever sealed is never
    handed out again (a deleted last row must not be replaced by a new one with its number)."""
    if session.get_bind().dialect.name == "postgresql":
        sequence = text(f"SELECT nextval(pg_get_serial_sequence('{DECISIONS_TABLE}', 'id'))")
        return session.execute(sequence).scalar_one()
    return max(session.query(func.max(SqlDecision.id)).scalar() or 0, total.last_id or 0) + 1


def _decode(row: SqlDecision) -> DecisionRecord:
    return DecisionRecord(
        id=row.id,
        created_at=row.created_at,
        model_name=row.model_name,
        candidate_version=row.candidate_version,
        baseline_version=row.baseline_version,
        action=row.action,
        verdict=row.verdict,
        target=row.target,
        route=row.route,
        actor=row.actor,
        reasons=json.loads(row.reasons),
        checks=json.loads(row.checks),
        evidence_run_ids=json.loads(row.evidence_run_ids),
        replaced=json.loads(row.replaced),
        policy_hash=row.policy_hash,
        digests=json.loads(row.digests) if row.digests else {},
        prev_hash=row.prev_hash,
        row_hash=row.row_hash,
    )


def get(session: Session, decision_id: int) -> DecisionRecord | None:
    """One decision by its id, or None when the log holds no such row."""
    row = session.get(SqlDecision, decision_id)
    return None if row is None else _decode(row)


def history(session: Session, model_name: str, limit: int = 100) -> list[DecisionRecord]:
    """The newest ``limit`` decisions for a model, newest first."""
    rows = (
        session.query(SqlDecision)
        .filter(SqlDecision.model_name == model_name)
        .order_by(SqlDecision.id.desc())
        .limit(limit)
        .all()
    )
    return [_decode(row) for row in rows]


@dataclass(frozen=True)
class DecisionPage:
    """One page of a model's decisions, newest first, and whether the log holds more on either side."""

    records: list[DecisionRecord]
    newer: bool
    older: bool


def page(session: Session, model_name: str, size: int, *, verdict: str | None = None, before: int | None = None,
         after: int | None = None) -> DecisionPage:
    """``size`` decisions about a model (optionally of one verdict), newest first: the newest ones, those
    just older than decision ``before``, or those just newer than decision ``after``.

    Keyset paging on the ``(model_name, id)`` index: a page costs the same however deep in the log it
    lies, and, the log being append-only, a page of older decisions never changes (a link to it stays
    true). A page newer than ``after`` that would not be full is the newest page instead.
    """
    query = session.query(SqlDecision).filter(SqlDecision.model_name == model_name)
    if verdict is not None:
        query = query.filter(SqlDecision.verdict == verdict)
    if after is not None:
        rows = query.filter(SqlDecision.id > after).order_by(SqlDecision.id.asc()).limit(size + 1).all()
        if len(rows) > size:
            rows = rows[:size][::-1]
            return DecisionPage([_decode(r) for r in rows], True, _exists(query, SqlDecision.id < rows[-1].id))
    ordered = query.order_by(SqlDecision.id.desc())
    rows = (ordered if before is None else ordered.filter(SqlDecision.id < before)).limit(size + 1).all()
    newer = before is not None and _exists(query, SqlDecision.id >= before)
    return DecisionPage([_decode(r) for r in rows[:size]], newer, len(rows) > size)


def _exists(query, condition) -> bool:
    return query.filter(condition).with_entities(SqlDecision.id).first() is not None


def count(session: Session, model_name: str, verdict: str | None = None) -> int:
    """How many decisions the log holds about a model (of one verdict, when given)."""
    query = session.query(func.count(SqlDecision.id)).filter(SqlDecision.model_name == model_name)
    if verdict is not None:
        query = query.filter(SqlDecision.verdict == verdict)
    return query.scalar() or 0


def latest_about(session: Session, model_name: str, versions: Iterable[str]) -> dict[str, DecisionRecord]:
    """The newest decision about each of ``versions``, however far back in the log it lies."""
    newest = (session.query(func.max(SqlDecision.id))
              .filter(SqlDecision.model_name == model_name, SqlDecision.candidate_version.in_(list(versions)))
              .group_by(SqlDecision.candidate_version))
    rows = session.query(SqlDecision).filter(SqlDecision.id.in_(newest.scalar_subquery())).all()
    return {row.candidate_version: _decode(row) for row in rows}


def approvals_of(session: Session, model_name: str, versions: Iterable[str], limit: int = 100) -> list[DecisionRecord]:
    """The newest ``limit`` decisions that moved one of ``versions`` into production, newest first:
    what says since when a version holds a target, however far back in the log it lies."""
    rows = (session.query(SqlDecision)
            .filter(SqlDecision.model_name == model_name, SqlDecision.candidate_version.in_(list(versions)),
                    SqlDecision.action.in_(APPROVING_ACTIONS))
            .order_by(SqlDecision.id.desc()).limit(limit).all())
    return [_decode(row) for row in rows]


def approved_versions(session: Session, model_name: str) -> Iterable[str]:
    """Versions the log records as approved (promoted, overridden or rolled back to), newest first."""
    rows = (
        session.query(SqlDecision.candidate_version)
        .filter(SqlDecision.model_name == model_name, SqlDecision.action.in_(APPROVING_ACTIONS))
        .order_by(SqlDecision.id.desc())
    )
    for (version,) in rows.yield_per(50):
        if version is not None:
            yield version
