"""``gatekeeper feedback add / import / list``: labels and flags on logged predictions.

``add`` sends one item. ``import FILE`` reads a CSV or Parquet table with a ``request_id`` column
and any of ``label``, ``flag``, ``note`` (an empty cell leaves that field as it is) and sends it in
batches of ``registry_hooks.feedback.MAX_ITEMS``. A file is all or nothing like a batch: every
batch is first checked with ``dry_run`` and nothing is written unless all of them pass (with
``--partial``, the valid rows are written and the rejected ones listed). The server checks each
id against the inference log, so the file needs nothing but the ids the model returned.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Iterator

from gatekeeper_cli.client import GatekeeperClient, GatekeeperError
from registry_hooks import feedback
from registry_hooks.tables import DataError, load_table

CLEAR = "-"  # ``--label -``: clear the label (JSON null)


def item(request_id: str, label: str | None, flag: str | None, note: str | None) -> dict[str, Any]:
    """One item from the command line: a field left out stays as it is, ``-`` clears it."""
    fields = {key: (None if value == CLEAR else value)
              for key, value in (("label", label), ("flag", flag), ("note", note)) if value is not None}
    return {"request_id": request_id, **fields}


def _cell(value: Any) -> Any:
    """A table cell as JSON: missing (NaN/None) becomes None, which the caller leaves out; numpy
    scalars become Python ones (the server refuses a number where it wants text, by name)."""
    value = value.item() if hasattr(value, "item") else value
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def items_from_file(path: str) -> list[dict[str, Any]]:
    """The rows of a feedback table as items (the server judges their values)."""
    table = load_table(path)
    if "request_id" not in table.columns:
        raise DataError(f"{path} has no request_id column (columns: {', '.join(map(str, table.columns[:20]))})")
    unknown = sorted(set(map(str, table.columns)) - feedback.ITEM_KEYS)
    if unknown:
        raise DataError(f"{path}: unknown column(s) {', '.join(unknown)}; a feedback table has "
                        f"{', '.join(sorted(feedback.ITEM_KEYS))}")
    rows = []
    for record in table.to_dict(orient="records"):
        row = {key: _cell(value) for key, value in record.items()}
        rows.append({key: value for key, value in row.items() if value is not None or key == "request_id"})
    return rows


def _batches(items: list[dict[str, Any]]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    for start in range(0, len(items), feedback.MAX_ITEMS):
        yield start, items[start:start + feedback.MAX_ITEMS]


def send(client: GatekeeperClient, name: str, items: list[dict[str, Any]], partial: bool) -> dict[str, Any]:
    """Send ``items`` in batches; indexes in the answer are the items' (rows') own. Without
    ``partial`` every batch is checked before any is written."""
    if not items:
        raise GatekeeperError("no feedback to send: the table has no rows")
    if not partial:
        for start, batch in _batches(items):
            try:
                client.submit_feedback(name, batch, dry_run=True)
            except GatekeeperError as exc:
                raise _shifted(exc, start) from None
    answers = []
    for start, batch in _batches(items):
        answer = client.submit_feedback(name, batch, partial=partial)
        answers += [{**entry, "index": entry["index"] + start} for entry in answer["items"]]
    totals = {status: sum(1 for a in answers if a["status"] == status)
              for status in (feedback.CREATED, feedback.REVISED, feedback.UNCHANGED, "rejected")}
    return {"items": answers, **totals}


def _shifted(exc: GatekeeperError, start: int) -> GatekeeperError:
    """A rejected batch's error, with its items numbered as the file's rows."""
    items = [{**entry, "index": entry["index"] + start} for entry in exc.payload.get("items", [])]
    return GatekeeperError(str(exc), exc.status, {**exc.payload, "items": items})


def _print_rejected(items: list[dict[str, Any]], out) -> None:
    """One line per rejected item: its row, its id, its status and why."""
    for entry in items:
        if entry["status"] == "rejected":
            print(f"item {entry['index']} ({entry.get('request_id')}): {entry['http_status']} {entry['message']}", file=out)


def print_answer(answer: dict[str, Any], out) -> None:
    """The rejected items (``--partial``), then the counts."""
    _print_rejected(answer["items"], out)
    print(", ".join(f"{answer[s]} {s}" for s in (feedback.CREATED, feedback.REVISED, feedback.UNCHANGED, "rejected")),
          file=out)


def print_rejection(exc: GatekeeperError, out) -> None:
    """A batch refused as a whole: which items, and why."""
    _print_rejected(exc.payload.get("items", []), out)
    print(f"gatekeeper: {exc}", file=out)


def print_listing(found: list[dict[str, Any]], out) -> None:
    if not found:
        print("no feedback recorded", file=out)
        return
    for f in found:
        when = datetime.fromtimestamp(f["logged_at"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        parts = [f"label={f['label']}" if f["label"] else "", f"flag={f['flag']}" if f["flag"] else "",
                 f"note={f['note']!r}" if f["note"] else ""]
        print(f"{f['request_id']}  predicted {when}Z  r{f['revision']}  {'  '.join(p for p in parts if p)}  "
              f"by {f.get('actor') or 'anonymous'}", file=out)
