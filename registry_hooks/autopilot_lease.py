"""One autopilot per registered model: a lease taken and kept by compare-and-set.

Why a lease and not a lock: the autopilot is a long-running process that may die at any moment
(kill -9, a lost machine). A lock held by a dead process would block the model forever; a lease
runs out (``expires_at``), and a second instance simply waits for it. Why a generation: the holder
renews before every step with the generation it was granted; a holder that was paused past its
lease (and replaced) finds the generation moved on and stops before its next step, instead of
two autopilots running one model's cycle. Promotion is safe even then — the gate is idempotent —
but the lease keeps the cycle's record single.

Optuna's ``_rdb`` style: every change is one UPDATE guarded by what the caller last read
(``generation``), and its row count says who won; inserting the first row races on the primary
key, and the loser's ``IntegrityError`` re-runs the transaction (``registry_hooks.transactions``),
which then reads the winner's row. Times are the server's clock (milliseconds since the epoch):
every holder is judged by one clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from registry_hooks.audit.models import SqlAutopilotLease

MAX_TTL_S = 3600
MAX_HOLDER_CHARS = 256


@dataclass(frozen=True)
class LeaseState:
    """Who holds a model's autopilot lease and until when; ``held`` says whether the asker does."""

    model_name: str
    held: bool
    holder: str | None
    generation: int
    expires_at: int  # ms since the epoch; <= now: free

    def to_dict(self) -> dict:
        return asdict(self)


def _state(row: SqlAutopilotLease | None, model_name: str, asker: str | None, now: int) -> LeaseState:
    if row is None:
        return LeaseState(model_name, False, None, 0, 0)
    live = row.expires_at > now
    return LeaseState(model_name, live and row.holder == asker, row.holder if live else None, row.generation, row.expires_at)


def _row(session: Session, model_name: str) -> SqlAutopilotLease | None:
    return session.get(SqlAutopilotLease, model_name, populate_existing=True)


def acquire(session: Session, model_name: str, holder: str, ttl_ms: int, now: int) -> LeaseState:
    """Take the lease if it is free (or already this holder's: then it is extended, same
    generation); otherwise say who holds it until when. A new holder gets the next generation."""
    row = _row(session, model_name)
    if row is None:
        session.add(SqlAutopilotLease(model_name=model_name, holder=holder, generation=1, expires_at=now + ttl_ms))
        session.flush()  # two first takers: the loser's IntegrityError re-runs this, and finds the row
        return LeaseState(model_name, True, holder, 1, now + ttl_ms)
    if row.expires_at > now and row.holder != holder:
        return _state(row, model_name, holder, now)
    generation = row.generation if (row.holder == holder and row.expires_at > now) else row.generation + 1
    won = session.execute(
        update(SqlAutopilotLease)
        .where(SqlAutopilotLease.model_name == model_name, SqlAutopilotLease.generation == row.generation,
               SqlAutopilotLease.holder == row.holder, SqlAutopilotLease.expires_at == row.expires_at)
        .values(holder=holder, generation=generation, expires_at=now + ttl_ms)
    ).rowcount == 1
    return LeaseState(model_name, True, holder, generation, now + ttl_ms) if won else _state(
        _row(session, model_name), model_name, holder, now)


def renew(session: Session, model_name: str, holder: str, generation: int, ttl_ms: int, now: int) -> LeaseState:
    """Extend the lease of ``holder`` at ``generation``, only while it still holds it: a lease that
    ran out, or moved to someone else, is lost (``held`` False) and stays lost."""
    kept = session.execute(
        update(SqlAutopilotLease)
        .where(SqlAutopilotLease.model_name == model_name, SqlAutopilotLease.holder == holder,
               SqlAutopilotLease.generation == generation, SqlAutopilotLease.expires_at > now)
        .values(expires_at=now + ttl_ms)
    ).rowcount == 1
    if kept:
        return LeaseState(model_name, True, holder, generation, now + ttl_ms)
    current = _state(_row(session, model_name), model_name, holder, now)
    return LeaseState(model_name, False, current.holder, current.generation, current.expires_at)


def release(session: Session, model_name: str, holder: str, generation: int, now: int) -> LeaseState:
    """Give the lease up at once (a clean stop), so the next instance need not wait it out."""
    session.execute(
        update(SqlAutopilotLease)
        .where(SqlAutopilotLease.model_name == model_name, SqlAutopilotLease.holder == holder,
               SqlAutopilotLease.generation == generation, SqlAutopilotLease.expires_at > now)
        .values(expires_at=now)
    )
    return _state(_row(session, model_name), model_name, holder, now)


def look(session: Session, model_name: str, now: int) -> LeaseState:
    """Who holds the lease now (nobody asks: ``held`` is False)."""
    return _state(_row(session, model_name), model_name, None, now)
