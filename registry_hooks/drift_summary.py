"""The drift summary the gate reads (``gatekeeper/drift.json``, format ``gatekeeper.drift/1``).

The drift report itself (evidently, HTML) is produced by ``projects.drift``; the gate needs only
this small JSON: when it was made, for which candidate, and which columns drifted. Parsed here,
without pandas or evidently, because the server process reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

FORMAT = "gatekeeper.drift/1"
SUMMARY_PATH = "gatekeeper/drift.json"
TAG_DRIFT = "gatekeeper.drift"


class DriftSummaryError(ValueError):
    """A drift summary that cannot be used; the message says why."""


@dataclass(frozen=True)
class DriftSummary:
    candidate_name: str
    candidate_version: str
    created_at: datetime
    n_columns: int
    n_drifted: int
    share_drifted: float
    drifted_columns: list[str]
    schema_changes: list[dict[str, Any]]


def parse_drift_summary(raw: bytes | str) -> DriftSummary:
    """Validate the fields the gate relies on; anything malformed is a :class:`DriftSummaryError`."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DriftSummaryError(f"{SUMMARY_PATH} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DriftSummaryError(f"{SUMMARY_PATH}: format must be {FORMAT!r}")
    try:
        candidate = data["candidate"]
        created_at = datetime.fromisoformat(data["created_at"])
        columns = data["columns"]
        n_columns, n_drifted, share = int(data["n_columns"]), int(data["n_drifted"]), float(data["share_drifted"])
        drifted = [str(c["column"]) for c in columns if c.get("drifted")]
        schema_changes = list(data.get("schema_changes") or [])
        summary = DriftSummary(
            candidate_name=str(candidate["name"]),
            candidate_version=str(candidate["version"]),
            created_at=created_at if created_at.tzinfo else created_at.replace(tzinfo=timezone.utc),
            n_columns=n_columns,
            n_drifted=n_drifted,
            share_drifted=share,
            drifted_columns=drifted + [str(c["column"]) for c in schema_changes if str(c.get("column")) not in drifted],
            schema_changes=schema_changes,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DriftSummaryError(f"{SUMMARY_PATH} is missing or has a malformed field: {exc!r}") from exc
    if not (0.0 <= share <= 1.0) or n_drifted > n_columns or n_drifted < 0:
        raise DriftSummaryError(f"{SUMMARY_PATH}: inconsistent counts (n_drifted={n_drifted}, n_columns={n_columns}, share={share})")
    return summary
