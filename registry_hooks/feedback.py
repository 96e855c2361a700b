"""Feedback on logged predictions: labels and human flags, kept as revisions.

Why it is shaped like this (docs/design/operation-vacation.md, section 3):

- **Revisions, append-only.** A label is what the next training set and the miner act on; a
  correction must not erase what was believed when an earlier set was built. Each revision holds
  the whole state (label, flag, note); the newest one counts.
- **An item changes only what it names.** ``{"request_id": …, "flag": "wrong"}`` keeps the label
  a labeller gave earlier; an explicit ``null`` clears a field. So a reviewer's flag and a
  labeller's label never erase each other by accident.
- **Idempotent.** An item that changes nothing is ``unchanged`` and writes nothing: a client that
  lost the answer sends the same batch again safely.
- **Checked against what was really logged.** The caller (``plugins.feedback_api``) finds each id
  in the inference log and passes what the log says of it (``Logged``); a label must be one of the
  classes that prediction had (its ``p_<class>`` columns), compared normalised (NFKC, case,
  whitespace) and stored as the model spells it.

Items are validated one by one (``ItemError`` carries the HTTP status and MLflow error code of
that item); writing is the caller's transaction, all or nothing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

from sqlalchemy import func, tuple_
from sqlalchemy.orm import Session

from registry_hooks import names
from registry_hooks.audit.models import SqlFeedback

FLAGS = ("wrong", "unsure")
FIELDS = ("label", "flag", "note")  # what an item may change
ITEM_KEYS = frozenset(("request_id", *FIELDS))
MAX_ITEMS = 1000
MAX_REQUEST_ID_CHARS = 128
MAX_LABEL_CHARS = 256
MAX_NOTE_CHARS = 2000

CREATED, REVISED, UNCHANGED = "created", "revised", "unchanged"


class ItemError(ValueError):
    """One item the server will not write: its HTTP status, MLflow error code and a message."""

    def __init__(self, message: str, status: int = 400, error_code: str = "INVALID_PARAMETER_VALUE"):
        super().__init__(message)
        self.status, self.error_code = status, error_code


def not_found(message: str) -> ItemError:
    return ItemError(message, 404, "RESOURCE_DOES_NOT_EXIST")


@dataclass(frozen=True)
class Change:
    """What one item asks: the fields it names (None clears one); the others stay as they are."""

    request_id: str
    fields: Mapping[str, str | None]


@dataclass(frozen=True)
class Logged:
    """What the inference log says of a request id: when, by which model run, with which classes
    (empty when the model logged no ``p_<class>`` columns: then any label text is taken)."""

    logged_at: int  # milliseconds since the epoch
    model_run_id: str
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Feedback:
    """One stored revision."""

    model_name: str
    request_id: str
    revision: int
    label: str | None
    flag: str | None
    note: str | None
    actor: str | None
    created_at: int
    logged_at: int
    model_run_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(item: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = item[key]
    if value is None:
        return None
    if not isinstance(value, str):
        raise ItemError(f"'{key}' must be a string or null, got {type(value).__name__}")
    if not value.strip():
        raise ItemError(f"'{key}' must not be empty (send null to clear it)")
    if len(value) > limit:
        raise ItemError(f"'{key}' has {len(value)} characters; at most {limit}")
    if "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ItemError(f"'{key}' must be text without NUL bytes or unpaired surrogates")
    return value


def request_id_of(item: Any) -> str:
    """The item's request id, checked: a printable string of at most ``MAX_REQUEST_ID_CHARS``."""
    if not isinstance(item, Mapping):
        raise ItemError(f"an item is a JSON object with request_id and label/flag/note, got {type(item).__name__}")
    if "request_id" not in item:
        raise ItemError("the item has no 'request_id'")
    value = _text(item, "request_id", MAX_REQUEST_ID_CHARS)
    if value is None or not value.isprintable() or value != value.strip():
        raise ItemError("'request_id' must be the printable id the model returned, without surrounding spaces")
    return value


def parse_item(item: Any) -> Change:
    """One item's shape and types; nothing about the log or the model yet."""
    request_id = request_id_of(item)
    unknown = sorted(set(item) - ITEM_KEYS)
    if unknown:
        raise ItemError(f"unknown field(s) {', '.join(map(repr, unknown))}; an item takes {', '.join(sorted(ITEM_KEYS))}")
    fields = {key: _text(item, key, MAX_NOTE_CHARS if key == "note" else MAX_LABEL_CHARS) for key in FIELDS if key in item}
    if not fields:
        raise ItemError("the item names none of label, flag, note: there is nothing to record")
    if fields.get("flag") is not None:
        flag = names.normalise(fields["flag"])
        if flag not in FLAGS:
            raise ItemError(f"'flag' is one of {', '.join(FLAGS)} (or null), got {fields['flag']!r}")
        fields["flag"] = flag
    return Change(request_id, fields)


def checked(change: Change, logged: Logged) -> Change:
    """``change`` with its label spelled as the model spells the class; a label the prediction
    had no class for is refused."""
    label = change.fields.get("label")
    if label is None or not logged.classes:
        return change
    by_key = {names.normalise(c): c for c in logged.classes}
    canonical = by_key.get(names.normalise(label))
    if canonical is None:
        raise ItemError(f"label {label!r} is not a class of the model that made this prediction "
                        f"(classes: {', '.join(logged.classes)})")
    return Change(change.request_id, {**change.fields, "label": canonical})


def _decode(row: SqlFeedback) -> Feedback:
    return Feedback(row.model_name, row.request_id, row.revision, row.label, row.flag, row.note, row.actor,
                    row.created_at, row.logged_at, row.model_run_id)


def newest(session: Session, model_name: str, request_ids: Iterable[str]) -> dict[str, Feedback]:
    """The newest revision of each id that has feedback."""
    ids = list(request_ids)
    if not ids:
        return {}
    top = (session.query(SqlFeedback.request_id, func.max(SqlFeedback.revision))
           .filter(SqlFeedback.model_name == model_name, SqlFeedback.request_id.in_(ids))
           .group_by(SqlFeedback.request_id).all())
    if not top:
        return {}
    rows = (session.query(SqlFeedback)
            .filter(SqlFeedback.model_name == model_name,
                    tuple_(SqlFeedback.request_id, SqlFeedback.revision).in_(top)).all())
    return {r.request_id: _decode(r) for r in rows}


def write(session: Session, model_name: str, changes: list[tuple[Change, Logged]],
          actor: str | None) -> list[tuple[str, Feedback | None]]:
    """Apply checked changes in the caller's transaction: ``(status, revision that counts)`` per item
    (None: clearing a prediction that has no feedback, which writes nothing).

    Reads the newest revisions first and writes the next ones; a concurrent writer of the same id
    makes the unique key fail at flush, and the caller's ``retrying`` runs the whole batch again.
    """
    current = {}
    for start in range(0, len(changes), 500):  # bounded IN lists
        current.update(newest(session, model_name, (c.request_id for c, _ in changes[start:start + 500])))
    now = int(time.time() * 1000)
    results = []
    for change, logged in changes:
        before = current.get(change.request_id)
        state = {key: getattr(before, key) if before else None for key in FIELDS} | dict(change.fields)
        if all(getattr(before, key, None) == state[key] for key in FIELDS):
            results.append((UNCHANGED, before))
            continue
        row = SqlFeedback(model_name=model_name, request_id=change.request_id,
                          revision=before.revision + 1 if before else 1, actor=actor, created_at=now,
                          logged_at=logged.logged_at, model_run_id=logged.model_run_id, **state)
        session.add(row)
        results.append((REVISED if before else CREATED, _decode(row)))
    session.flush()
    return results


def listing(session: Session, model_name: str, *, logged_since: int | None = None, logged_until: int | None = None,
            created_since: int | None = None, after: tuple[int, str] | None = None, limit: int = 1000) -> list[Feedback]:
    """The newest revision of each prediction's feedback, by prediction time then id.

    ``logged_since``/``logged_until`` bound the prediction's time (ms, until exclusive),
    ``created_since`` the newest revision's; ``after`` is the (logged_at, request_id) of the last
    row of the previous page (keyset paging: rows written meanwhile never shift a page).
    """
    top = (session.query(SqlFeedback.request_id.label("request_id"), func.max(SqlFeedback.revision).label("revision"))
           .filter(SqlFeedback.model_name == model_name).group_by(SqlFeedback.request_id).subquery())
    query = (session.query(SqlFeedback)
             .join(top, (SqlFeedback.request_id == top.c.request_id) & (SqlFeedback.revision == top.c.revision))
             .filter(SqlFeedback.model_name == model_name))
    if logged_since is not None:
        query = query.filter(SqlFeedback.logged_at >= logged_since)
    if logged_until is not None:
        query = query.filter(SqlFeedback.logged_at < logged_until)
    if created_since is not None:
        query = query.filter(SqlFeedback.created_at >= created_since)
    if after is not None:
        query = query.filter(tuple_(SqlFeedback.logged_at, SqlFeedback.request_id) > tuple_(*after))
    rows = query.order_by(SqlFeedback.logged_at, SqlFeedback.request_id).limit(limit).all()
    return [_decode(r) for r in rows]
