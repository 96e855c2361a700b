"""The outbox of decision notifications: written with the decision, sent afterwards, never lost.

Why it is shaped like this (the transactional-outbox pattern):

- **Written in the decision's transaction.** The store calls ``enqueue`` inside the transaction
  that appends the audit row, so a decision is notified if and only if it was recorded: a rolled
  back decision leaves no row, and a committed one keeps its rows whatever happens to the process
  afterwards (a receiver down, the server killed). Sending happens later, outside any transaction
  (``plugins.notifier``): an HTTP call never holds the registry's lock.
- **The payload is stored as it will be sent**, so every attempt sends the same bytes and the
  signature covers exactly them.
- **One delivery id per row, for all its attempts.** MLflow's webhooks draw a new one per send;
  here a row is one message to one receiver, so a receiver that saw an id before (an attempt it
  answered whose answer was lost, or two workers sending one row after a lease ran out) can drop
  the repeat — the Standard Webhooks rule for ``webhook-id``. Delivery is at least once; the
  stable id is what makes it effectively once.
- **Claimed by compare-and-set.** A sender takes a row with one conditional ``UPDATE`` that sets
  a lease (``claimed_until``) and counts the attempt, and checks the row count: of several workers
  exactly one wins, and a sender killed mid-send only delays the row until its lease ends. The
  lease value fences the outcome: a sender whose lease ran out cannot record a failure over the
  row's next holder.
- **Sealed.** Each row carries an HMAC (the server secret) over its URL, event, delivery id and
  payload. Whoever can write the table but lacks ``GATEKEEPER_SECRET`` cannot have the server sign
  and send a forged decision: such a row is refused, kept and never sent.
- **Retried with doubling pauses**, capped; after the last attempt the row stays, undelivered and
  visible with its last error. Raising the attempt limit makes it due again.

Pure SQLAlchemy and the standard library: the thread, the configuration and HTTP are
``plugins.notifier``'s.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from registry_hooks.audit.models import SqlOutbox
from registry_hooks.secret import keyed_digest, same_digest

MAX_PAUSE_S = 300.0  # the longest wait between two attempts
NEVER = 2**62  # next_attempt_at of a refused row: no poll ever finds it due
ERROR_CHARS = 1000


@dataclass(frozen=True)
class Message:
    """A claimed row: what to send, and the lease (``claimed_until``) that fences its outcome."""

    id: int
    url: str
    event: str
    payload: str
    delivery_id: str
    seal: str
    attempts: int  # this attempt included
    claimed_until: int


def seal(secret: bytes, url: str, event: str, delivery_id: str, payload: str) -> str:
    return keyed_digest(secret, "gatekeeper.outbox", url, event, delivery_id, payload)


def authentic(secret: bytes, message: Message) -> bool:
    """Whether the gate wrote this row as it stands (its seal matches)."""
    return same_digest(message.seal, seal(secret, message.url, message.event, message.delivery_id, message.payload))


def enqueue(session: Session, urls: Iterable[str], event: str, payload: str, secret: bytes, now_ms: int) -> list[str]:
    """Add one row per URL, due at once, in the caller's transaction; returns their delivery ids."""
    ids = []
    for url in urls:
        delivery_id = str(uuid.uuid4())
        session.add(SqlOutbox(url=url, event=event, payload=payload, delivery_id=delivery_id, created_at=now_ms,
                              seal=seal(secret, url, event, delivery_id, payload), attempts=0, next_attempt_at=now_ms))
        ids.append(delivery_id)
    return ids


def _takeable(now_ms: int, max_attempts: int):
    """Undelivered, due, attempts left, and nobody's lease running."""
    return (SqlOutbox.delivered_at.is_(None), SqlOutbox.next_attempt_at <= now_ms, SqlOutbox.attempts < max_attempts,
            or_(SqlOutbox.claimed_until.is_(None), SqlOutbox.claimed_until < now_ms))


def due(session: Session, urls: Iterable[str], now_ms: int, max_attempts: int, limit: int) -> list[int]:
    """Ids of rows to send now, oldest due first; only rows for ``urls`` (the configured receivers:
    a row naming any other URL is never sent)."""
    rows = (session.query(SqlOutbox.id).filter(*_takeable(now_ms, max_attempts), SqlOutbox.url.in_(list(urls)))
            .order_by(SqlOutbox.next_attempt_at, SqlOutbox.id).limit(limit))
    return [row_id for (row_id,) in rows]


def claim(session: Session, row_id: int, now_ms: int, lease_ms: int, max_attempts: int) -> Message | None:
    """Take row ``row_id`` for one attempt until ``now_ms + lease_ms``; None when another sender has
    it, it was delivered, or it is not due (any more)."""
    until = now_ms + lease_ms
    taken = session.execute(update(SqlOutbox).where(SqlOutbox.id == row_id, *_takeable(now_ms, max_attempts))
                            .values(claimed_until=until, attempts=SqlOutbox.attempts + 1)
                            .execution_options(synchronize_session=False))
    if taken.rowcount != 1:
        return None
    row = session.get(SqlOutbox, row_id, populate_existing=True)
    return Message(row.id, row.url, row.event, row.payload, row.delivery_id, row.seal, row.attempts, until)


def delivered(session: Session, message: Message, now_ms: int) -> None:
    """The receiver took it. Recorded even if the lease ran out meanwhile: the send happened."""
    session.execute(update(SqlOutbox).where(SqlOutbox.id == message.id, SqlOutbox.delivered_at.is_(None))
                    .values(delivered_at=now_ms, claimed_until=None).execution_options(synchronize_session=False))


def pause_s(attempts: int, first_s: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: ``first_s`` doubled each
    time, at most ``MAX_PAUSE_S``. No jitter: the rows of one receiver are due together anyway, and
    a fixed schedule tells an operator when the last attempt will be."""
    return min(MAX_PAUSE_S, first_s * 2.0 ** (attempts - 1))


def failed(session: Session, message: Message, error: str, now_ms: int, first_retry_s: float) -> bool:
    """Schedule the next attempt; False when the lease was lost (another sender holds the row)."""
    return _release(session, message, error, now_ms + int(pause_s(message.attempts, first_retry_s) * 1000))


def refused(session: Session, message: Message, error: str) -> bool:
    """Keep the row, with why, and never send it (a row the gate did not write)."""
    return _release(session, message, error, NEVER)


def _release(session: Session, message: Message, error: str, next_attempt_at: int) -> bool:
    done = session.execute(update(SqlOutbox)
                           .where(SqlOutbox.id == message.id, SqlOutbox.claimed_until == message.claimed_until,
                                  SqlOutbox.delivered_at.is_(None))
                           .values(claimed_until=None, next_attempt_at=next_attempt_at, last_error=error[:ERROR_CHARS])
                           .execution_options(synchronize_session=False))
    return done.rowcount == 1
