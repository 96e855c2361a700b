"""The inference log as a reader sees it: where it lives, how it is laid out, how to find rows.

Why here, below ``projects/``: the scorer writes the log (``projects.inference_log``), but the
gate's server reads it too — feedback must attach to a prediction that was really made, by the
model it names — and the server never imports the pipeline. So the layout, the request-id format
and the readers live on this floor, spelled once; the writer imports them. Plain files through
fsspec and pyarrow, nothing from MLflow.

Layout: ``<root>/date=YYYY-MM-DD/hour=HH/part-….parquet`` (Hive-style, UTC). Request ids the model
makes are ``<UTC yyyymmddHH>-<uuid4 hex>``: the prefix names the hour partition, so one id is
found by reading one hour. A caller's own ids carry no prefix and are searched over a bounded
look-back window instead (``find``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterable, Mapping

import pyarrow as pa

LOG_ENV = "GATEKEEPER_INFERENCE_LOG"
DEFAULT_ROOT = "./inference-log"
OFF = "off"

# Columns every record has (the writer's schema version 1), and the prefix of the probability columns.
REQUEST_ID = "request_id"
TIME = "time"
MODEL_RUN_ID = "model_run_id"
MODEL_ID = "model_id"
PREDICTION = "prediction"
CONFIDENCE = "confidence"
PROBABILITY_PREFIX = "p_"

_PREFIXED_ID = re.compile(r"^([0-9]{10})-[0-9a-f]{32}$")


class LogRootError(ValueError):
    """``GATEKEEPER_INFERENCE_LOG`` holds a value no log can live at; the message names it."""


def root_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    """The log's folder or URI from ``GATEKEEPER_INFERENCE_LOG`` (default ``./inference-log``);
    None when it is ``off``."""
    root = environ.get(LOG_ENV, DEFAULT_ROOT)
    if not root.strip():
        raise LogRootError(f"{LOG_ENV} is empty: give a folder or URI for the inference log, or '{OFF}'")
    return None if root == OFF else root


def filesystem(root: str):
    """(fsspec filesystem, path inside it) for a folder or URI."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(root)
    return fs, path.rstrip("/")


def partition(moment: dt.datetime) -> str:
    """The hour folder a UTC moment's records go to."""
    return f"date={moment:%Y-%m-%d}/hour={moment:%H}"


def new_request_id(moment: dt.datetime) -> str:
    """``<UTC yyyymmddHH>-<uuid4 hex>``: the prefix names the log's hour partition of the id."""
    return f"{moment.astimezone(dt.timezone.utc):%Y%m%d%H}-{uuid.uuid4().hex}"


def id_hour(request_id: str) -> dt.datetime | None:
    """The UTC hour a model-made request id names, or None for any other id (a caller's own)."""
    match = _PREFIXED_ID.match(request_id)
    if match is None:
        return None
    try:
        return dt.datetime.strptime(match.group(1), "%Y%m%d%H").replace(tzinfo=dt.timezone.utc)
    except ValueError:  # ten digits that are no hour ("2026139925")
        return None


def probability_columns(columns: Iterable) -> list[str]:
    """The ``p_<class>`` columns of a model's output or of a log record, in their order."""
    return [str(c) for c in columns if str(c).startswith(PROBABILITY_PREFIX)]


def read_window(start: dt.datetime, end: dt.datetime, root: str | None = None, columns: list[str] | None = None,
                request_ids: Iterable[str] | None = None) -> pa.Table:
    """The records with ``start <= time < end`` (aware datetimes, any zone), reading only the
    hour partitions of the window. Parts written by different model versions may differ in
    columns; the result has all of them (null where a part lacks one). ``columns`` names the
    ones to read (those no part has are left out); ``request_ids`` keeps only those records
    (with the window's schema all the same)."""
    import pyarrow.dataset as ds

    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("read_window needs timezone-aware datetimes (the log is in UTC)")
    start, end = start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)
    window = _window_dataset(start, end, root)
    if window is None:
        return pa.table({})
    if columns is not None:
        columns = [c for c in columns if c in window.schema.names]
    moment = ds.field(TIME)
    bounds = (moment >= pa.scalar(start, pa.timestamp("us", "UTC"))) & (moment < pa.scalar(end, pa.timestamp("us", "UTC")))
    if request_ids is not None:
        bounds &= ds.field(REQUEST_ID).isin(pa.array(list(request_ids), pa.string()))
    return window.to_table(columns=columns, filter=bounds)


def window_files(start: dt.datetime, end: dt.datetime, root: str | None = None) -> tuple[list[str], pa.Schema | None]:
    """The parts ``read_window`` would read (as URIs another reader such as Spark takes) and the
    schema it would give them, for an engine that reads the window itself."""
    window = _window_dataset(start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc), root)
    if window is None:
        return [], None
    fs, _ = filesystem(root or root_from_env() or DEFAULT_ROOT)
    return [fs.unstrip_protocol(path) for path in window.files], window.schema


def find(request_ids: Iterable[str], *, root: str, lookback: dt.timedelta, now: dt.datetime) -> dict[str, dict]:
    """The newest record of each id found: ``{request id: {column: value}}`` with the record's
    time, model ids and probability columns (never the pixels).

    A model-made id is looked up in its own hour (any age); an id not found there, or a caller's
    own id, in the ``lookback`` before ``now``. What is not found is simply absent.
    """
    wanted = list(dict.fromkeys(request_ids))
    found: dict[str, dict] = {}
    by_hour: dict[dt.datetime, list[str]] = {}
    for request_id in wanted:
        hour = id_hour(request_id)
        if hour is not None:
            by_hour.setdefault(hour, []).append(request_id)
    for hour, ids in by_hour.items():
        found.update(_lookup(ids, hour, hour + dt.timedelta(hours=1), root))
    rest = [i for i in wanted if i not in found]
    if rest:
        found.update(_lookup(rest, now - lookback, now + dt.timedelta(hours=1), root))
    return found


def _lookup(ids: list[str], start: dt.datetime, end: dt.datetime, root: str) -> dict[str, dict]:
    import pyarrow.dataset as ds

    window = _window_dataset(start, end, root)
    if window is None:
        return {}
    names = window.schema.names
    columns = [c for c in (REQUEST_ID, TIME, MODEL_RUN_ID, MODEL_ID) if c in names] + probability_columns(names)
    table = window.to_table(columns=columns, filter=ds.field(REQUEST_ID).isin(ids)).sort_by([(TIME, "ascending")])
    return {row[REQUEST_ID]: row for row in table.to_pylist()}  # later (newer) rows win


def _window_dataset(start: dt.datetime, end: dt.datetime, root: str | None):
    """A dataset over the parts of the hours ``[start, end]`` touches, or None when there are none."""
    import pyarrow.dataset as ds

    fs, path = filesystem(root or root_from_env() or DEFAULT_ROOT)
    if not fs.exists(path):
        return None
    partitioning = ds.partitioning(pa.schema([("date", pa.string()), ("hour", pa.int32())]), flavor="hive")
    dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning=partitioning)
    fragments = list(dataset.get_fragments(filter=_hours(start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc))))
    if not fragments:
        return None
    schema = pa.unify_schemas([f.physical_schema for f in fragments], promote_options="permissive")
    return ds.dataset([f.path for f in fragments], schema=schema, filesystem=fs, format="parquet")


def _hours(start: dt.datetime, end: dt.datetime):
    """A partition filter that keeps exactly the (date, hour) folders the window touches."""
    import pyarrow.dataset as ds

    first, last = (start.strftime("%Y-%m-%d"), start.hour), (end.strftime("%Y-%m-%d"), end.hour)
    date, hour = ds.field("date"), ds.field("hour")
    after = (date > first[0]) | ((date == first[0]) & (hour >= first[1]))
    before = (date < last[0]) | ((date == last[0]) & (hour <= last[1]))
    return after & before
