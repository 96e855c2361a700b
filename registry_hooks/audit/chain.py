"""The audit log's hash chain: what makes an edited, deleted, reordered or forged decision visible.

The append-only triggers stop the product, not someone who can write the database: they can drop
the triggers. So each decision row also stores ``row_hash = HMAC(secret, prev_hash, canonical(row))``,
where ``prev_hash`` is the ``row_hash`` of the same model's previous decision (``GENESIS`` for its
first). Recomputing that needs the server secret (``registry_hooks.secret``), which lives outside
the database when ``GATEKEEPER_SECRET`` is set.

A chain cannot tell that its last rows were cut off, nor that a whole history was deleted. So each
model has a head (``gatekeeper_audit_heads``: its last row's id and hash, and its number of rows),
and the head named ``""`` (no model can be) counts the rows of every model, for a history deleted
together with its own head. Heads are overwritten on every decision and signed with the secret; a
head that does not verify is never re-signed, so evidence of tampering outlives later decisions.

Rows written before the chain existed (``row_hash`` NULL: "legacy") are hashed here on the fly, in
order; the model's first chained row links to that value, and so seals them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from registry_hooks.audit.models import SqlAuditHead, SqlDecision
from registry_hooks.secret import keyed_digest, same_digest

GENESIS = "0" * 64  # the prev_hash of a model's first decision
ALL_MODELS = ""  # the head that counts every model's rows: MLflow refuses an empty model name
# What a row hash covers. Fixed here rather than read from the table, so that a column added later
# cannot change the hash of every row already written; it joins the chain only by a decision.
CHAINED_COLUMNS = (
    "id", "created_at", "model_name", "candidate_version", "baseline_version", "action", "verdict", "target",
    "route", "actor", "reasons", "checks", "evidence_run_ids", "replaced", "policy_hash", "digests", "prev_hash",
)
_REORDER_SEARCH = 200  # edited rows compared with each other's ids, to tell a swap from an edit


@dataclass(frozen=True)
class Problem:
    """One thing in the log that the chain does not vouch for (``model_name`` None: the whole log)."""

    model_name: str | None
    decision_id: int | None
    kind: str  # edited | reordered | broken_link | forged | missing_tail | missing_rows | extra_rows | head_*
    message: str


@dataclass(frozen=True)
class ChainReport:
    """The verdict of ``verify``: ``legacy`` counts rows written before the chain (hashed on the fly)."""

    ok: bool
    models: int
    rows: int
    problems: tuple[Problem, ...]
    legacy: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"problems": [asdict(p) for p in self.problems]}


# -- hashing -----------------------------------------------------------------------------------------

def canonical(values: dict[str, Any]) -> str:
    """The row as hashed: the chained columns as stored (JSON fields as their text), keys sorted."""
    return json.dumps({c: values[c] for c in CHAINED_COLUMNS}, sort_keys=True, separators=(",", ":"))


def _values(row: SqlDecision) -> dict[str, Any]:
    return {c: getattr(row, c) for c in CHAINED_COLUMNS}


def row_hash(secret: bytes, prev_hash: str, row: SqlDecision) -> str:
    """HMAC-SHA256 of the previous row's hash and this row."""
    return keyed_digest(secret, prev_hash, canonical(_values(row)))


def head_signature(secret: bytes, head: SqlAuditHead) -> str:
    return keyed_digest(secret, "audit-head", head.model_name, str(head.last_id), head.last_hash or "", str(head.count))


def model_rows(session: Session, model_name: str) -> Iterator[SqlDecision]:
    """A model's decisions in the order they were written."""
    query = session.query(SqlDecision).filter(SqlDecision.model_name == model_name).order_by(SqlDecision.id)
    return query.yield_per(500)


# -- appending: the heads ---------------------------------------------------------------------------

def claim_head(session: Session, secret: bytes, name: str) -> tuple[SqlAuditHead, bool]:
    """The head ``name``, locked for this transaction (created if missing), and whether to trust it.

    Created here, it starts from the rows as stored; it is trusted only if no chained row exists
    yet (otherwise its predecessor was deleted). An existing head is trusted if its signature
    verifies. An untrusted head still advances, but stays unsigned (``advance``).
    """
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(SqlAuditHead)
        created = session.execute(insert.values(model_name=name, count=0).on_conflict_do_nothing()).rowcount == 1
        head = session.query(SqlAuditHead).filter(SqlAuditHead.model_name == name).with_for_update().one()
    else:  # no concurrent first decisions expected elsewhere: the caller's lock covers the model
        head = session.get(SqlAuditHead, name, with_for_update=True)
        created = head is None
        if created:
            head = SqlAuditHead(model_name=name, count=0)
            session.add(head)
    if not created:
        return head, same_digest(head.signature, head_signature(secret, head))
    return head, _start(session, secret, head)


def _start(session: Session, secret: bytes, head: SqlAuditHead) -> bool:
    """Fill a new head from the rows; True when none of them is chained yet (a genuine first head)."""
    chained = session.query(SqlDecision.id).filter(SqlDecision.row_hash.isnot(None))
    if head.model_name == ALL_MODELS:
        head.count = session.query(func.count(SqlDecision.id)).scalar() or 0
        head.last_id = session.query(func.max(SqlDecision.id)).scalar()
        return chained.first() is None
    prev, count = GENESIS, 0
    for row in model_rows(session, head.model_name):
        prev, count, head.last_id = row.row_hash or row_hash(secret, prev, row), count + 1, row.id
    head.last_hash, head.count = prev, count
    return chained.filter(SqlDecision.model_name == head.model_name).first() is None


def advance(secret: bytes, head: SqlAuditHead, trusted: bool, row: SqlDecision) -> None:
    """Move a head to ``row``; re-signed only if it was trusted, so a tampered head stays visible."""
    head.last_id, head.last_hash, head.count = row.id, row.row_hash, (head.count or 0) + 1
    head.signature = head_signature(secret, head) if trusted else None


# -- verifying -------------------------------------------------------------------------------------

def verify(session: Session, secret: bytes, model_name: str | None = None) -> ChainReport:
    """Recompute every model's chain (or one model's) and hold it against the heads.

    ``session`` should read one snapshot of the database (the store opens one), or a decision
    committed during the check would look like a forged row.
    """
    heads_query = session.query(SqlAuditHead)
    if model_name is not None:
        heads_query = heads_query.filter(SqlAuditHead.model_name == model_name)
    heads = {head.model_name: head for head in heads_query}
    if model_name is None:
        names = {n for (n,) in session.query(SqlDecision.model_name).distinct()} | (set(heads) - {ALL_MODELS})
    else:
        names = {model_name}
    problems, rows, legacy = [], 0, 0
    for name in sorted(names):
        found, old, wrong = _verify_model(session, secret, name, heads.get(name))
        rows, legacy, problems = rows + found, legacy + old, problems + wrong
    if model_name is None:
        problems += _total_problems(session, secret, heads.get(ALL_MODELS))
    return ChainReport(not problems, len(names), rows, tuple(problems), legacy)


def _verify_model(session: Session, secret: bytes, name: str,
                  head: SqlAuditHead | None) -> tuple[int, int, list[Problem]]:
    """Walk one model's rows in id order: (rows, legacy rows, problems)."""
    rows = list(model_rows(session, name))
    sealed_to = head.last_id if head is not None else None
    problems, mismatched, displaced = [], [], set()  # displaced: the hashes of rows reported as changed
    prev, chained, legacy = GENESIS, False, 0
    for row in rows:
        if sealed_to is not None and row.id > sealed_to:
            problems.append(Problem(name, row.id, "forged", f"decision #{row.id} comes after #{sealed_to}, the last "
                                    "one the gate sealed: it was inserted into the database outside the gate"))
            continue
        if row.row_hash is None:
            legacy += 1
            if chained:
                problems.append(Problem(name, row.id, "edited", f"decision #{row.id} lost its row_hash although "
                                        "earlier decisions are chained: its hash was erased, likely to hide an edit"))
            prev = row_hash(secret, prev, row)
            continue
        chained = True
        if not same_digest(row_hash(secret, row.prev_hash or "", row), row.row_hash):
            mismatched.append(row)
            displaced.add(row.row_hash)
        elif not (same_digest(row.prev_hash, prev) or (prev in displaced and row.prev_hash in displaced)):
            problems.append(_broken_link(name, row, legacy))  # after swapped rows: already reported above
        prev = row.row_hash
    problems += _mismatches(secret, name, mismatched)
    problems += _head_problems(secret, name, head, rows, chained)
    return len(rows), legacy, sorted(problems, key=lambda p: p.decision_id or 0)


def _broken_link(name: str, row: SqlDecision, legacy: int) -> Problem:
    before = "an earlier decision (one written before the chain, or a chained one)" if legacy else "an earlier decision"
    return Problem(name, row.id, "broken_link", f"decision #{row.id} is intact but does not follow the decision "
                   f"stored before it: {before} was deleted, edited or inserted in between")


def _mismatches(secret: bytes, name: str, rows: list[SqlDecision]) -> list[Problem]:
    """Rows whose content no longer matches their hash: moved to another row's id, or edited."""
    ids = [row.id for row in rows[:_REORDER_SEARCH]]
    found = []
    for row in rows:
        values = _values(row)
        moved_from = next((other for other in ids if other != row.id and same_digest(
            keyed_digest(secret, row.prev_hash or "", canonical(values | {"id": other})), row.row_hash)), None)
        if moved_from is not None:
            found.append(Problem(name, row.id, "reordered", f"decision #{row.id} holds the decision the gate wrote "
                                 f"as #{moved_from}: rows were swapped or renumbered, so the log's order is not "
                                 "the order of events"))
        else:
            found.append(Problem(name, row.id, "edited", f"decision #{row.id} no longer matches its hash: a field was "
                                 "changed after the gate wrote it (or the row was written without the server secret)"))
    return found


def _head_problems(secret: bytes, name: str, head: SqlAuditHead | None, rows: list[SqlDecision],
                   chained: bool) -> list[Problem]:
    """What the head says the chain should end with and hold, against what is there."""
    if head is None:
        if not chained:
            return []  # only decisions written before the chain: nothing sealed them yet
        return [Problem(name, None, "head_missing", f"{name} has chained decisions but no head: the head was deleted, "
                        "so a deletion of its last decisions could not be told")]
    problems = []
    if not same_digest(head.signature, head_signature(secret, head)):
        problems.append(Problem(name, None, "head_edited", f"the head of {name} does not carry a valid signature: it "
                                "was edited or re-created outside the gate, so its last id and count prove nothing"))
    last = next((row for row in rows if row.id == head.last_id), None)
    sealed = sum(1 for row in rows if head.last_id is not None and row.id <= head.last_id)
    if head.count and last is None:
        problems.append(Problem(name, head.last_id, "missing_tail", f"decision #{head.last_id}, the last one the head "
                                f"of {name} sealed, is gone ({sealed} of {head.count} decisions remain): the log "
                                "was cut short"))
    elif last is not None and not same_digest(last.row_hash, head.last_hash):
        problems.append(Problem(name, last.id, "head_mismatch", f"decision #{last.id} is not the decision the head of "
                                f"{name} sealed as its last: it was replaced"))
    if last is not None and sealed != head.count:
        kind, what = ("missing_rows", "deleted") if sealed < head.count else ("extra_rows", "inserted outside the gate")
        problems.append(Problem(name, None, kind, f"the head of {name} counts {head.count} decisions up to "
                                f"#{head.last_id}, {sealed} are there: {abs(head.count - sealed)} {what}"))
    return problems


def _total_problems(session: Session, secret: bytes, total: SqlAuditHead | None) -> list[Problem]:
    """The count over every model: the one check that sees a history deleted together with its head."""
    if total is None:
        if session.query(SqlDecision.id).filter(SqlDecision.row_hash.isnot(None)).first() is None:
            return []
        return [Problem(None, None, "head_missing", "the head that counts every model's decisions was deleted")]
    problems = []
    if not same_digest(total.signature, head_signature(secret, total)):
        problems.append(Problem(None, None, "head_edited", "the head that counts every model's decisions does not "
                                "carry a valid signature: it was edited outside the gate"))
    sealed = session.query(func.count(SqlDecision.id)).filter(SqlDecision.id <= (total.last_id or 0)).scalar() or 0
    if sealed < total.count:
        problems.append(Problem(None, None, "missing_rows", f"the log held {total.count} decisions up to "
                                f"#{total.last_id} and {sealed} remain: {total.count - sealed} deleted (with a whole "
                                "model's history and head, if no model above reports them)"))
    elif sealed > total.count:
        problems.append(Problem(None, None, "extra_rows", f"the log held {total.count} decisions up to "
                                f"#{total.last_id} and {sealed} are there: {sealed - total.count} inserted outside "
                                "the gate"))
    return problems
