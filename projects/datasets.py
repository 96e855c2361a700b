"""Logging the tables the pipeline reads as run inputs, with their full content hash.

Reading and hashing live in ``registry_hooks.tables`` (the gate's side hashes registered sets and
re-hashes them before verifying); they are re-exported here for the jobs, which take every table
through this module. Each logged table carries the dataset-input tag ``gatekeeper.content_hash``
next to MLflow's 8-character digest, so the gate (and a person) can check that evidence was
computed on exactly the data it claims.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from registry_hooks.contract import INPUT_TAG_CONTENT_HASH, INPUT_TAG_N_ROWS, INPUT_TAG_SOURCE
from registry_hooks.tables import (
    DATA_FILE,
    MANIFEST_FILE,
    DataError,
    StreamingHash,
    arrow_column_names,
    content_hash,
    is_local,
    iter_table,
    load_table,
    local_path,
    local_table_path,
    table_columns,
    version_data_path,
)

__all__ = [  # the jobs' one door to tables: these come from registry_hooks.tables
    "DATA_FILE", "MANIFEST_FILE", "DataError", "StreamingHash", "arrow_column_names", "content_hash", "is_local",
    "iter_table", "load_table", "local_path", "local_table_path", "table_columns", "version_data_path",
    "LoggedDataset", "log_dataset_input", "find_dataset_input", "source_uri",
]

_MAX_INPUT_TAG_VALUE = 500  # MLflow's limit for dataset-input tag values


@dataclass(frozen=True)
class LoggedDataset:
    """What a run recorded about one table: where it came from and its full content hash."""

    name: str
    source: str
    content_hash: str
    n_rows: int


_LOG_INPUT_ATTEMPTS = 3


def _lost_dataset_insert_race(exc: Exception) -> bool:
    """True when MLflow's ``log_inputs`` lost a race to insert the same dataset row.

    MLflow's SQL tracking store looks the dataset up and inserts it if missing, without a lock:
    two runs of one experiment logging the same table at the same moment (parallel evaluate jobs,
    parallel tuning trials) can both miss it and one insert hits the unique constraint. The
    transaction rolled back, so nothing is half-written; on the next try the lookup finds the
    winner's row and reuses it.
    """
    message = str(exc)
    return "datasets" in message and any(
        marker in message for marker in ("UNIQUE constraint failed", "duplicate key value", "IntegrityError")
    )


def log_dataset_input(
    df: pd.DataFrame,
    *,
    source: str,
    name: str,
    context: str,
    targets: str | None = None,
    digest: str | None = None,
    n_rows: int | None = None,
) -> LoggedDataset:
    """Log ``df`` as an input of the active MLflow run, tagged with its full content hash.

    For a table too large to hold, pass a sample as ``df`` (MLflow records its schema) with the
    whole table's ``digest`` (a :class:`StreamingHash`) and ``n_rows``.
    """
    import mlflow
    import mlflow.data
    from mlflow.exceptions import MlflowException

    digest = digest or content_hash(df)
    n_rows = len(df) if n_rows is None else n_rows
    try:
        dataset = mlflow.data.from_pandas(df, source=source, name=name, targets=targets, digest=digest[:32])
    except MlflowException:  # a URI MLflow's dataset sources do not know (mlflow-artifacts:/…): the tag keeps it
        dataset = mlflow.data.from_pandas(df, name=name, targets=targets, digest=digest[:32])
    tags = {INPUT_TAG_CONTENT_HASH: digest, INPUT_TAG_N_ROWS: str(n_rows)}
    if len(source) <= _MAX_INPUT_TAG_VALUE:  # a cut URI would point elsewhere: longer ones are left out
        tags[INPUT_TAG_SOURCE] = source
    for attempt in range(_LOG_INPUT_ATTEMPTS):
        try:
            mlflow.log_input(dataset, context=context, tags=tags)
            break
        except MlflowException as exc:
            if attempt + 1 == _LOG_INPUT_ATTEMPTS or not _lost_dataset_insert_race(exc):
                raise
    return LoggedDataset(name=name, source=source, content_hash=digest, n_rows=n_rows)


def find_dataset_input(run_id: str, context: str) -> LoggedDataset | None:
    """The dataset a run logged under ``context`` (e.g. ``training``), or None."""
    from mlflow import MlflowClient

    run = MlflowClient().get_run(run_id)
    for dataset_input in run.inputs.dataset_inputs:
        tags = {tag.key: tag.value for tag in dataset_input.tags}
        if tags.get("mlflow.data.context") != context:
            continue
        dataset = dataset_input.dataset
        profile = json.loads(dataset.profile or "{}")
        return LoggedDataset(
            name=dataset.name,
            source=tags.get(INPUT_TAG_SOURCE) or source_uri(dataset.source) or dataset.source or "",
            content_hash=tags.get(INPUT_TAG_CONTENT_HASH, ""),
            n_rows=int(tags.get(INPUT_TAG_N_ROWS) or profile.get("num_rows", 0)),
        )
    return None


def source_uri(source_json: str) -> str | None:
    """The file an MLflow dataset source points at (``uri`` for files and artifacts, ``url`` for
    HTTP, ``path`` for Delta-style sources); None for sources that name no file (code, memory)."""
    try:
        source = json.loads(source_json)
    except (TypeError, ValueError):
        return None
    return (source.get("uri") or source.get("url") or source.get("path")) if isinstance(source, dict) else None


