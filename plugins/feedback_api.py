"""``/gatekeeper/api/feedback``: labels and flags on logged predictions, as the server serves them.

``POST`` takes ``{"name": model, "items": [{"request_id", "label"?, "flag"?, "note"?}, ...],
"partial"?: bool, "dry_run"?: bool}``. Each item is checked on its own — its shape (``registry_hooks.feedback``),
that the id is in the inference log as a prediction of a version of *this* model (so edit rights
on one model never label another's traffic), that the label is one of that prediction's classes,
that the batch names the id once — and the answer lists a status per item. By default a batch
with any rejected item writes nothing (status of the request: the rejected items' common status,
else 400); ``partial: true`` writes the valid ones. Valid items are written in one transaction.
``dry_run: true`` checks everything and writes nothing: ``gatekeeper feedback import`` checks a
whole file, batch by batch, before it writes any of it.

``GET`` lists the newest revision per prediction (``since``/``until`` on the prediction's time,
``created_since`` on the feedback's, all epoch milliseconds), keyset-paged.

The server reads the log at ``GATEKEEPER_INFERENCE_LOG`` (the scorer's, so set both alike) and
finds a caller's own request ids (those without the model's hour prefix) only within the last
``GATEKEEPER_FEEDBACK_LOOKBACK_DAYS`` (default 7): a bounded read per request, never the whole log.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections import Counter
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, INVALID_STATE, ErrorCode
from mlflow.store.model_registry.dbmodels.models import SqlModelVersion
from sqlalchemy.orm import Session

from plugins.params import invalid_parameter, parse_flag, parse_int, parse_name, parse_text, wrong_type
from registry_hooks import feedback, inference_records
from registry_hooks.transactions import retrying

LOOKBACK_ENV = "GATEKEEPER_FEEDBACK_LOOKBACK_DAYS"
DEFAULT_LOOKBACK_DAYS = 7
MAX_LOOKBACK_DAYS = 366
_POST_FIELDS = {"name", "items", "partial", "dry_run"}
_GET_FIELDS = {"name", "since", "until", "created_since", "page_token", "max_results"}
_MAX_PAGE = 10_000
_MS = (0, 10**15)


class RejectedBatch(MlflowException):
    """Items were rejected and nothing was written: the answer still lists every item's status."""

    def __init__(self, message: str, error_code: int, items: list[dict[str, Any]]):
        super().__init__(message, error_code)
        self.payload = {"items": items}


def lookback() -> dt.timedelta:
    """``GATEKEEPER_FEEDBACK_LOOKBACK_DAYS`` read strictly (the server checks it at start-up)."""
    text = os.environ.get(LOOKBACK_ENV, str(DEFAULT_LOOKBACK_DAYS))
    try:
        days = float(text)
    except ValueError:
        days = float("nan")
    if not 0 < days <= MAX_LOOKBACK_DAYS:  # also false for nan
        raise ValueError(f"{LOOKBACK_ENV}={text!r}: give a number of days in (0, {MAX_LOOKBACK_DAYS}]")
    return dt.timedelta(days=days)


def _log_root() -> str:
    try:
        root = inference_records.root_from_env()
    except inference_records.LogRootError as exc:
        raise MlflowException(str(exc), INVALID_STATE) from None
    if root is None:
        raise MlflowException(f"the server's {inference_records.LOG_ENV} is off: it cannot check feedback "
                              "against the predictions made", INVALID_STATE)
    return root


def _unknown_fields(params: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise invalid_parameter(f"unknown field(s) {', '.join(unknown)}; this route takes {', '.join(sorted(allowed))}")


def _items(params: dict[str, Any]) -> list[Any]:
    items = params.get("items")
    if items is None:
        raise invalid_parameter("Missing value for required parameter 'items'.")
    if not isinstance(items, list):
        raise wrong_type("items", items)
    if not 1 <= len(items) <= feedback.MAX_ITEMS:
        raise invalid_parameter(f"'items' holds 1 to {feedback.MAX_ITEMS} items per request, got {len(items)}")
    return items


def _owned(session: Session, model_name: str):
    """A test: was a logged record made by a version of ``model_name``? By the record's run id, or
    by its MLflow 3 model id (a version whose source is ``models:/<model id>``)."""
    rows = session.query(SqlModelVersion.run_id, SqlModelVersion.source).filter(SqlModelVersion.name == model_name).all()
    run_ids = {run_id for run_id, _ in rows if run_id}
    sources = {source for _, source in rows if source}

    def owned(record: dict[str, Any]) -> bool:
        run_id, model_id = record.get(inference_records.MODEL_RUN_ID), record.get(inference_records.MODEL_ID)
        return bool(run_id and run_id in run_ids) or bool(model_id and f"models:/{model_id}" in sources)

    return owned


def _logged(record: dict[str, Any]) -> feedback.Logged:
    moment = record[inference_records.TIME]
    prefix = inference_records.PROBABILITY_PREFIX
    classes = tuple(c[len(prefix):] for c in inference_records.probability_columns(record) if record[c] is not None)
    return feedback.Logged(int(moment.timestamp() * 1000), record.get(inference_records.MODEL_RUN_ID) or "", classes)


def _check(raw_items: list[Any], model_name: str, store) -> list[tuple[feedback.Change, feedback.Logged] | feedback.ItemError]:
    """Each item checked: its shape, once per batch, in the log as this model's, its label."""
    parsed: list[feedback.Change | feedback.ItemError] = []
    for item in raw_items:
        try:
            parsed.append(feedback.parse_item(item))
        except feedback.ItemError as exc:
            parsed.append(exc)
    counts = Counter(p.request_id for p in parsed if isinstance(p, feedback.Change))
    ids = [request_id for request_id, n in counts.items() if n == 1]
    window = lookback()
    now = dt.datetime.now(dt.timezone.utc)
    records = inference_records.find(ids, root=_log_root(), lookback=window, now=now) if ids else {}
    with Session(store.engine) as session:
        owned = _owned(session, model_name)
    return [_resolve(p, counts, records, owned, model_name, window) for p in parsed]


def _resolve(change, counts, records, owned, model_name: str, window: dt.timedelta):
    if isinstance(change, feedback.ItemError):
        return change
    if counts[change.request_id] > 1:
        return feedback.ItemError(f"request id {change.request_id!r} appears {counts[change.request_id]} times in "
                                  "this batch: send one item per prediction")
    record = records.get(change.request_id)
    if record is None or not owned(record):
        return feedback.not_found(f"request id {change.request_id!r} is not among the predictions of model "
                                  f"{model_name!r} in the inference log (a caller's own id is searched in the last "
                                  f"{window.days} days)")
    try:
        logged = _logged(record)
        return feedback.checked(change, logged), logged
    except feedback.ItemError as exc:
        return exc


def _rejected(index: int, item: Any, error: feedback.ItemError) -> dict[str, Any]:
    request_id = item.get("request_id") if isinstance(item, dict) else None
    return {"index": index, "request_id": request_id if isinstance(request_id, str) else None, "status": "rejected",
            "http_status": error.status, "error_code": error.error_code, "message": str(error)}


def submit(params: dict[str, Any], store, actor: str | None) -> dict[str, Any]:
    """Check and write one batch (see the module docstring)."""
    _unknown_fields(params, _POST_FIELDS)
    name = store.get_registered_model(parse_name(params.get("name"))).name  # unknown model: 404
    raw_items = _items(params)
    partial, dry_run = parse_flag(params.get("partial"), "partial"), parse_flag(params.get("dry_run"), "dry_run")
    results = _check(raw_items, name, store)
    errors = {i: r for i, r in enumerate(results) if isinstance(r, feedback.ItemError)}
    if errors and not partial:
        _refuse(raw_items, errors)
    valid = [(i, r) for i, r in enumerate(results) if i not in errors]

    def once():
        with Session(store.engine) as session:
            outcome = feedback.write(session, name, [r for _, r in valid], actor)
            session.rollback() if dry_run else session.commit()  # a dry run: the same code, nothing kept
            return outcome

    written = retrying(once) if valid else []
    items = [_rejected(i, raw_items[i], e) for i, e in errors.items()]
    for (index, (change, _)), (status, revision) in zip(valid, written):
        items.append({"index": index, "request_id": change.request_id, "status": status,
                      "feedback": revision.to_dict() if revision else None})
    items.sort(key=lambda item: item["index"])
    tally = Counter(item["status"] for item in items)
    return {"items": items, "dry_run": dry_run, **{status: tally.get(status, 0) for status in
                               (feedback.CREATED, feedback.REVISED, feedback.UNCHANGED, "rejected")}}


def _refuse(raw_items: list[Any], errors: dict[int, feedback.ItemError]) -> None:
    items = [_rejected(i, raw_items[i], errors[i]) if i in errors else
             {"index": i, "request_id": raw_items[i].get("request_id"), "status": "not_written"}
             for i in range(len(raw_items))]
    codes = {e.error_code for e in errors.values()}
    code = ErrorCode.Value(codes.pop()) if len(codes) == 1 else INVALID_PARAMETER_VALUE
    first = next(iter(errors.values()))
    raise RejectedBatch(f"{len(errors)} of {len(raw_items)} item(s) rejected, nothing written (first: item "
                        f"{next(iter(errors))}: {first}); fix them, or send partial=true to write the valid ones",
                        code, items)


def _page_token(token: Any) -> tuple[int, str] | None:
    if token is None:
        return None
    text = parse_text(token, "page_token", max_chars=1000)
    try:
        logged_at, request_id = json.loads(base64.urlsafe_b64decode(text.encode()).decode())
        if isinstance(logged_at, int) and isinstance(request_id, str):
            return logged_at, request_id
    except (ValueError, TypeError):
        pass
    raise invalid_parameter("Invalid page_token: pass the next_page_token of the previous answer.")


def _millis(params: dict[str, Any], key: str) -> int | None:
    value = params.get(key)
    return None if value is None else parse_int(value, key, *_MS)


def listing(params: dict[str, Any], store) -> dict[str, Any]:
    """One page of the newest feedback per prediction (see the module docstring)."""
    _unknown_fields(params, _GET_FIELDS)
    name = store.get_registered_model(parse_name(params.get("name"))).name
    size = 1000 if params.get("max_results") is None else parse_int(params["max_results"], "max_results", 1, _MAX_PAGE)
    with Session(store.engine) as session:
        rows = feedback.listing(session, name, logged_since=_millis(params, "since"), logged_until=_millis(params, "until"),
                                created_since=_millis(params, "created_since"), after=_page_token(params.get("page_token")),
                                limit=size + 1)
    token = None
    if len(rows) > size:
        rows = rows[:size]
        token = base64.urlsafe_b64encode(json.dumps([rows[-1].logged_at, rows[-1].request_id]).encode()).decode()
    return {"feedback": [r.to_dict() for r in rows], "next_page_token": token}
