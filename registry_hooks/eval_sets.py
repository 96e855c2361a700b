"""Registered evaluation sets: which data counts as evidence, decided by the gate, not the evaluator.

An evaluator chooses its data; without a registry of sets it could evaluate on the rows where the
candidate happens to win, or on ten fresh samples until one passes. A registered set version pins
a table by its full content hash, row count, columns and ``keys_digest`` (a fingerprint of every
(row id, label) pair), so the gate can tell in milliseconds whether evidence covers exactly that
table: same hash, same number of rows, same row ids and labels. The verifier later re-reads the
source and re-scores a sample, so a registration that lies about its data is caught too.

Versions are append-only rows of ``gatekeeper_eval_sets`` (database triggers refuse edits); the
current version of a set is its highest. Names compare normalised (``names.normalise``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlalchemy.orm import Session

from registry_hooks import names
from registry_hooks.audit.models import SqlEvalSet
from registry_hooks.tables import StreamingHash, arrow_column_names, iter_table

ROW_ID_COLUMN = "row_id"  # as in the outcomes file; without it, rows are numbered 0, 1, … as evaluate does
MAX_NAME_LENGTH = 200


class SetError(ValueError):
    """A registration or lookup that cannot be served; the message says what to fix."""


@dataclass(frozen=True)
class SetVersion:
    """One registered version of an evaluation set."""

    name: str  # as registered (display spelling)
    version: int
    source: str
    content_hash: str
    n_rows: int
    columns: tuple[tuple[str, str], ...]
    label_column: str
    keys_digest: str
    description: str | None = None
    created_by: str | None = None
    created_at: int | None = None

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "source": self.source, "content_hash": self.content_hash,
            "n_rows": self.n_rows, "columns": [list(c) for c in self.columns], "label_column": self.label_column,
            "keys_digest": self.keys_digest, "description": self.description, "created_by": self.created_by,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SetVersion:
        return cls(**{**data, "columns": tuple(tuple(c) for c in data["columns"])})


@dataclass(frozen=True)
class TableFacts:
    """What a registration records about a table, computed in one streaming pass."""

    content_hash: str
    n_rows: int
    columns: tuple[tuple[str, str], ...]
    keys_digest: str


def keys_digest(row_ids: Iterable[Any], labels: Iterable[Any]) -> str:
    """SHA-256 of the (row id, label) pairs, sorted by row id: equal for a table and for evidence
    scored on every row of it, in any order; different for a subset, a padded table or one changed
    label. Labels compare as text (``1`` and ``"1"`` are one label, as a person reads them)."""
    ids = np.asarray([str(r) for r in row_ids], dtype=object)
    text = np.asarray([str(v) for v in labels], dtype=object)
    if len(ids) != len(text):
        raise SetError(f"{len(ids)} row ids but {len(text)} labels")
    order = np.argsort(ids, kind="stable")
    digest = hashlib.sha256(f"rows\x1f{len(ids)}\x1e".encode())
    digest.update("\x1e".join(f"{ids[i]}\x1f{text[i]}" for i in order).encode())
    return digest.hexdigest()


def describe_table(source: str, label_column: str) -> TableFacts:
    """Hash a table (a path or any URI MLflow's artifact layer reads) and fingerprint its keys."""
    hasher, ids, labels = StreamingHash(), [], []
    for batch in iter_table(source, arrow=True):
        arrow = not isinstance(batch, pd.DataFrame)  # Parquet comes as Arrow batches, CSV as frames
        names_here = arrow_column_names(batch) if arrow else [str(c) for c in batch.columns]
        if label_column not in names_here:
            raise SetError(f"{source} has no label column {label_column!r} (columns: {', '.join(names_here[:20])})")
        hasher.update(batch)
        keys = [c for c in (label_column, ROW_ID_COLUMN) if c in names_here]
        frame = batch.select(keys).to_pandas() if arrow else batch[keys]
        labels.append(frame[label_column].to_numpy())
        start = hasher.n_rows - len(frame)
        ids.append(frame[ROW_ID_COLUMN].astype(str).to_numpy() if ROW_ID_COLUMN in frame
                   else np.arange(start, hasher.n_rows).astype(str))
    if not hasher.n_rows:
        raise SetError(f"{source} holds no rows")
    row_ids = np.concatenate(ids)
    if len(np.unique(row_ids)) != len(row_ids):
        raise SetError(f"{source}: column {ROW_ID_COLUMN!r} holds duplicate ids; each row needs its own")
    return TableFacts(hasher.hexdigest(), hasher.n_rows, tuple(hasher.columns), keys_digest(row_ids, np.concatenate(labels)))


def check_name(name: Any) -> str:
    """A set name as given, refused when unusable (the registry compares it normalised)."""
    if not isinstance(name, str) or not names.normalise(name):
        raise SetError(f"a set name is a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH or "@" in name or "\x00" in name:
        raise SetError(f"a set name has at most {MAX_NAME_LENGTH} characters and no '@' or NUL, got {name!r}")
    return name.strip()


def _decode(row: SqlEvalSet) -> SetVersion:
    return SetVersion(
        name=row.display_name, version=row.version, source=row.source, content_hash=row.content_hash,
        n_rows=row.n_rows, columns=tuple(tuple(c) for c in json.loads(row.columns)), label_column=row.label_column,
        keys_digest=row.keys_digest, description=row.description, created_by=row.created_by, created_at=row.created_at,
    )


def register(session: Session, name: str, source: str, label_column: str, facts: TableFacts,
             description: str | None, created_by: str | None) -> SetVersion:
    """Append the next version of ``name`` (1 for a new set). Registering the content the current
    version already holds adds nothing and returns that version: a re-run of the same registration
    must not count as new data (nor open a new attempt for every candidate)."""
    key = names.normalise(check_name(name))
    current = session.query(SqlEvalSet).filter(SqlEvalSet.name == key).order_by(SqlEvalSet.version.desc()).first()
    if current is not None and current.content_hash == facts.content_hash and current.label_column == label_column:
        return _decode(current)
    version = (current.version + 1) if current is not None else 1
    row = SqlEvalSet(
        name=key, display_name=current.display_name if current is not None else name.strip(), version=version,
        source=source, content_hash=facts.content_hash, n_rows=facts.n_rows,
        columns=json.dumps([list(c) for c in facts.columns]), label_column=label_column,
        keys_digest=facts.keys_digest, description=description, created_by=created_by,
        created_at=int(time.time() * 1000),
    )
    session.add(row)
    session.flush()  # a concurrent registration of the same version loses on the unique key: retried
    return _decode(row)


def versions(session: Session, name: str | None = None) -> list[SetVersion]:
    """Every version of ``name`` (newest first), or the current version of every set (by name)."""
    if name is not None:
        rows = (session.query(SqlEvalSet).filter(SqlEvalSet.name == names.normalise(name))
                .order_by(SqlEvalSet.version.desc()).all())
        return [_decode(r) for r in rows]
    newest = (session.query(SqlEvalSet.name, func.max(SqlEvalSet.version).label("version"))
              .group_by(SqlEvalSet.name).subquery())
    rows = (session.query(SqlEvalSet)
            .join(newest, (SqlEvalSet.name == newest.c.name) & (SqlEvalSet.version == newest.c.version))
            .order_by(SqlEvalSet.name).all())
    return [_decode(r) for r in rows]


def get(session: Session, name: str, version: int | None = None) -> SetVersion:
    """One version (the current one when ``version`` is None); a clear error when there is none."""
    found = versions(session, name)
    if not found:
        raise SetError(f"no evaluation set named {name!r} is registered; register it with "
                       f"`gatekeeper sets register {name} DATA_URI --label COLUMN`")
    if version is None:
        return found[0]
    match = next((v for v in found if v.version == version), None)
    if match is None:
        raise SetError(f"set {found[0].name} has no version {version} (versions 1 to {found[0].version})")
    return match
