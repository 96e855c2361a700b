"""The drift evidence format ``gatekeeper.drift/1``: what the gate reads from ``gatekeeper/drift.json``.

Written by ``projects.drift`` (which computes it), read by the gate (which judges it): the format
lives here, beside the rest of the gate's evidence, so both sides share one definition.

Standard library only, so the MLflow server (the gate) can import it without pandas or evidently.
``DriftSummary.from_dict`` validates a parsed document and raises ``DriftError`` naming the first
field that is wrong; ``to_dict`` produces the document (the keys listed in ``REQUIRED_KEYS`` are the
contract, the others are additions a reader may ignore).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from registry_hooks.contract import DRIFT_FORMAT, DRIFT_SUMMARY_PATH

# Per-column methods: the five evidently picks by default, plus two verdicts that are not a test.
TEST_METHODS = ("ks", "chisquare", "z", "wasserstein", "jensenshannon")
SCHEMA_METHOD = "schema"  # column missing, extra or retyped: drifted by definition
ALL_MISSING_METHOD = "all_missing"  # no value to test on one or both sides
METHODS = TEST_METHODS + (SCHEMA_METHOD, ALL_MISSING_METHOD)
COLUMN_TYPES = ("num", "cat")
SCHEMA_CHANGES = ("missing", "extra", "retyped")
DEFAULT_DRIFT_SHARE = 0.5  # evidently's DataDriftPreset default: dataset drift when share >= 0.5
REQUIRED_KEYS = (
    "format", "candidate", "created_at", "reference", "current", "n_columns", "n_drifted",
    "share_drifted", "dataset_drift", "columns", "schema_changes", "prediction_drift",
    "sample_size", "seconds",
)  # fmt: skip


class DriftError(ValueError):
    """Bad input for a drift check (or an invalid drift summary); the message says what to fix."""


@dataclass(frozen=True)
class ColumnDrift:
    """The verdict for one column. ``score``/``threshold`` are None for schema and all-missing verdicts.

    For ``ks``, ``chisquare`` and ``z`` the score is a p-value (drift when it is below the
    threshold; ``ks`` also at equality, as evidently does); for ``wasserstein`` and
    ``jensenshannon`` it is a distance (drift when it is at or above the threshold).
    """

    column: str
    type: str
    method: str
    score: float | None
    threshold: float | None
    drifted: bool
    missing_share_current: float
    missing_share_reference: float = 0.0
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "column": self.column,
            "type": self.type,
            "method": self.method,
            "score": _finite_or_none(self.score),
            "threshold": self.threshold,
            "drifted": bool(self.drifted),
            "missing_share_current": float(self.missing_share_current),
            "missing_share_reference": float(self.missing_share_reference),
        }
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ColumnDrift:
        _require(isinstance(data, dict), where, "must be an object")
        column = _get(data, "column", str, where)
        kind = _get(data, "type", str, where)
        _require(kind in COLUMN_TYPES, f"{where}.type", f"must be one of {COLUMN_TYPES}, got {kind!r}")
        method = _get(data, "method", str, where)
        _require(method in METHODS, f"{where}.method", f"must be one of {METHODS}, got {method!r}")
        score = _get_number(data, "score", where, nullable=True)
        threshold = _get_number(data, "threshold", where, nullable=True)
        if method in TEST_METHODS:
            _require(threshold is not None, f"{where}.threshold", f"is required for method {method!r}")
        drifted = _get(data, "drifted", bool, where)
        missing_cur = _get_number(data, "missing_share_current", where)
        _require(0.0 <= missing_cur <= 1.0, f"{where}.missing_share_current", "must be in [0, 1]")
        missing_ref = _get_number(data, "missing_share_reference", where, nullable=True, default=0.0)
        note = data.get("note")
        _require(note is None or isinstance(note, str), f"{where}.note", "must be a string")
        return cls(column, kind, method, score, threshold, drifted, missing_cur, missing_ref or 0.0, note)


@dataclass(frozen=True)
class SchemaChange:
    column: str
    change: str  # missing (in current) | extra (in current) | retyped
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"column": self.column, "change": self.change, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SchemaChange:
        _require(isinstance(data, dict), where, "must be an object")
        change = _get(data, "change", str, where)
        _require(change in SCHEMA_CHANGES, f"{where}.change", f"must be one of {SCHEMA_CHANGES}, got {change!r}")
        return cls(_get(data, "column", str, where), change, _get(data, "detail", str, where))


@dataclass(frozen=True)
class TableInfo:
    """Which table a side of the comparison was: where it came from and its full SHA-256 content hash."""

    name: str
    source: str
    content_hash: str
    n_rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "content_hash": self.content_hash, "n_rows": self.n_rows}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TableInfo:
        _require(isinstance(data, dict), where, "must be an object")
        digest = _get(data, "content_hash", str, where)
        _require(
            len(digest) == 64 and all(c in "0123456789abcdef" for c in digest),
            f"{where}.content_hash",
            "must be a SHA-256 hex digest (64 lowercase hex characters)",
        )
        n_rows = _get(data, "n_rows", int, where)
        _require(n_rows >= 0, f"{where}.n_rows", "must be >= 0")
        return cls(_get(data, "name", str, where), _get(data, "source", str, where), digest, n_rows)


class ColumnCounts:
    """Counts and shares derived from per-column verdicts (shared by the summary and the verdict)."""

    columns: list[ColumnDrift]
    drift_share: float

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    @property
    def n_drifted(self) -> int:
        return sum(1 for c in self.columns if c.drifted)

    @property
    def share_drifted(self) -> float:
        return self.n_drifted / self.n_columns if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.columns) and self.share_drifted >= self.drift_share

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def column(self, name: str) -> ColumnDrift | None:
        return next((c for c in self.columns if c.column == name), None)


@dataclass
class DriftSummary(ColumnCounts):
    """Drift evidence for one candidate model version. Counts and shares derive from ``columns``."""

    candidate_name: str
    candidate_version: str
    created_at: str
    reference: TableInfo
    current: TableInfo
    columns: list[ColumnDrift]
    schema_changes: list[SchemaChange] = field(default_factory=list)
    prediction_drift: ColumnDrift | None = None
    sample_size: int = 0
    seconds: float = 0.0
    drift_share: float = DEFAULT_DRIFT_SHARE
    skipped_columns: list[dict[str, str]] = field(default_factory=list)
    classification: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


    def age_seconds(self, now: datetime | None = None) -> float:
        """Seconds since ``created_at`` (for the gate's maximum-age rule)."""
        now = now or datetime.now(timezone.utc)
        return (now - parse_timestamp(self.created_at, "created_at")).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": DRIFT_FORMAT,
            "candidate": {"name": self.candidate_name, "version": self.candidate_version},
            "created_at": self.created_at,
            "reference": self.reference.to_dict(),
            "current": self.current.to_dict(),
            "n_columns": self.n_columns,
            "n_drifted": self.n_drifted,
            "share_drifted": self.share_drifted,
            "dataset_drift": self.dataset_drift,
            "drift_share": self.drift_share,
            "columns": [c.to_dict() for c in self.columns],
            "schema_changes": [s.to_dict() for s in self.schema_changes],
            "prediction_drift": self.prediction_drift.to_dict() if self.prediction_drift else None,
            "sample_size": self.sample_size,
            "seconds": round(self.seconds, 3),
            "skipped_columns": list(self.skipped_columns),
            "classification": self.classification,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Any) -> DriftSummary:
        """Parse and validate a ``gatekeeper.drift/1`` document; raise ``DriftError`` if it is not one."""
        _require(isinstance(data, dict), "summary", "must be a JSON object")
        _require(data.get("format") == DRIFT_FORMAT, "format", f"must be {DRIFT_FORMAT!r}, got {data.get('format')!r}")
        missing = [key for key in REQUIRED_KEYS if key not in data]
        _require(not missing, "summary", f"lacks required keys {missing}")
        candidate = data["candidate"]
        _require(isinstance(candidate, dict), "candidate", "must be an object")
        name = _get(candidate, "name", str, "candidate")
        version = candidate.get("version")
        _require(isinstance(version, (str, int)) and not isinstance(version, bool), "candidate.version", "must be a string")
        created_at = _get(data, "created_at", str, "summary")
        parse_timestamp(created_at, "created_at")
        columns = data["columns"]
        _require(isinstance(columns, list), "columns", "must be a list")
        changes = data["schema_changes"]
        _require(isinstance(changes, list), "schema_changes", "must be a list")
        prediction = data["prediction_drift"]
        skipped = data.get("skipped_columns") or []
        _require(isinstance(skipped, list), "skipped_columns", "must be a list")
        classification = data.get("classification")
        _require(classification is None or isinstance(classification, dict), "classification", "must be an object")
        notes = data.get("notes") or []
        _require(isinstance(notes, list), "notes", "must be a list")
        drift_share = _get_number(data, "drift_share", "summary", nullable=True, default=DEFAULT_DRIFT_SHARE)
        summary = cls(
            candidate_name=name,
            candidate_version=str(version),
            created_at=created_at,
            reference=TableInfo.from_dict(data["reference"], "reference"),
            current=TableInfo.from_dict(data["current"], "current"),
            columns=[ColumnDrift.from_dict(c, f"columns[{i}]") for i, c in enumerate(columns)],
            schema_changes=[SchemaChange.from_dict(s, f"schema_changes[{i}]") for i, s in enumerate(changes)],
            prediction_drift=None if prediction is None else ColumnDrift.from_dict(prediction, "prediction_drift"),
            sample_size=_get(data, "sample_size", int, "summary"),
            seconds=_get_number(data, "seconds", "summary"),
            drift_share=DEFAULT_DRIFT_SHARE if drift_share is None else drift_share,
            skipped_columns=list(skipped),
            classification=classification,
            notes=[str(n) for n in notes],
        )
        # The stored counts must agree with the per-column verdicts they summarise.
        _require(_get(data, "n_columns", int, "summary") == summary.n_columns, "n_columns", "disagrees with columns")
        _require(_get(data, "n_drifted", int, "summary") == summary.n_drifted, "n_drifted", "disagrees with columns")
        share = _get_number(data, "share_drifted", "summary")
        _require(abs(share - summary.share_drifted) < 1e-9, "share_drifted", "is not n_drifted / n_columns")
        _require(_get(data, "dataset_drift", bool, "summary") == summary.dataset_drift, "dataset_drift",
                 f"disagrees with share_drifted >= {summary.drift_share}")  # fmt: skip
        names = [c.column for c in summary.columns]
        for i, change in enumerate(summary.schema_changes):
            entry = summary.column(change.column)
            _require(entry is not None and entry.drifted, f"schema_changes[{i}]",
                     f"column {change.column!r} must be listed in columns as drifted")  # fmt: skip
        _require(len(set(names)) == len(names), "columns", "lists a column twice")
        return summary


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def parse_timestamp(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise DriftError(f"drift summary: {where} must be an ISO-8601 timestamp, got {value!r}") from None
    if parsed.tzinfo is None:
        raise DriftError(f"drift summary: {where} must carry a UTC offset (e.g. +00:00), got {value!r}")
    return parsed


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _require(condition: bool, where: str, problem: str) -> None:
    if not condition:
        raise DriftError(f"drift summary: {where} {problem}")


def _get(data: dict, key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    _require(ok, f"{where}.{key}", f"must be {kind.__name__}, got {type(value).__name__}")
    return value


def _get_number(data: dict, key: str, where: str, nullable: bool = False, default: float | None = None) -> Any:
    if key not in data:
        _require(nullable, f"{where}.{key}", "is required")
        return default
    value = data[key]
    if value is None:
        _require(nullable, f"{where}.{key}", "must be a number, got null")
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    _require(ok, f"{where}.{key}", f"must be a finite number, got {value!r}")
    return float(value)


def parse_drift_summary(raw: bytes | str) -> DriftSummary:
    """Parse ``gatekeeper/drift.json`` as the gate reads it; any defect is a :class:`DriftError`."""
    import json

    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DriftError(f"{DRIFT_SUMMARY_PATH} is not valid JSON: {exc}") from exc
    return DriftSummary.from_dict(data)
