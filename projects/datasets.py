"""Loading, hashing and logging the tables the pipeline reads.

MLflow's own dataset digest is 8 hex characters, too short to prove two runs scored the same
rows. Every table the pipeline touches is therefore identified by a full SHA-256 content hash,
logged as the dataset-input tag ``gatekeeper.content_hash`` next to MLflow's digest, so the gate
(and a person) can check that evidence was computed on exactly the data it claims.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

CONTENT_HASH_TAG = "gatekeeper.content_hash"
N_ROWS_TAG = "gatekeeper.n_rows"
_READERS = {".parquet": pd.read_parquet, ".pq": pd.read_parquet, ".csv": pd.read_csv}


class DataError(ValueError):
    """Raised for input data that cannot be used; the message says what to fix."""


def content_hash(df: pd.DataFrame) -> str:
    """SHA-256 over column names, dtypes and every cell, row order included.

    Independent of the file format, so the same table read from CSV or Parquet hashes the same
    as long as the dtypes agree. ``hash_pandas_object`` is vectorised (about 0.3 s per million
    rows), far cheaper than serialising the frame.
    """
    hasher = StreamingHash()
    hasher.update(df)
    return hasher.hexdigest()


def _local_path(uri: str) -> Path:
    """Return a local file for ``uri``, downloading it through MLflow's artifact layer if needed."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        path = Path(parsed.path if parsed.scheme == "file" else uri)
        if not path.exists():
            raise DataError(f"data file not found: {uri}")
        return path
    import mlflow.artifacts

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tempfile.mkdtemp()))
    except Exception as exc:  # any artifact-layer failure is a data error for the user
        raise DataError(f"cannot download data from {uri}: {exc}") from exc


def load_table(uri: str) -> pd.DataFrame:
    """Read a Parquet or CSV table from a local path or any URI MLflow's artifact layer reads."""
    path = _local_path(uri)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"unsupported data format {path.suffix!r} for {uri}: use .parquet or .csv")
    try:
        return reader(path)
    except Exception as exc:
        raise DataError(f"cannot read {uri} as {path.suffix[1:]}: {exc}") from exc


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
    dataset = mlflow.data.from_pandas(df, source=source, name=name, targets=targets, digest=digest[:32])
    tags = {CONTENT_HASH_TAG: digest, N_ROWS_TAG: str(n_rows)}
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
    import json

    from mlflow import MlflowClient

    run = MlflowClient().get_run(run_id)
    for dataset_input in run.inputs.dataset_inputs:
        tags = {tag.key: tag.value for tag in dataset_input.tags}
        if tags.get("mlflow.data.context") != context:
            continue
        dataset = dataset_input.dataset
        try:
            source = json.loads(dataset.source).get("uri") or json.loads(dataset.source).get("url")
        except (TypeError, ValueError, AttributeError):
            source = dataset.source
        profile = json.loads(dataset.profile or "{}")
        return LoggedDataset(
            name=dataset.name,
            source=source or "",
            content_hash=tags.get(CONTENT_HASH_TAG, ""),
            n_rows=int(tags.get(N_ROWS_TAG) or profile.get("num_rows", 0)),
        )
    return None


class StreamingHash:
    """``content_hash`` computed batch by batch: equal to hashing the whole table at once.

    Row hashes are independent of each other, so a table read in batches (Parquet row groups,
    CSV chunks) hashes exactly like the same table in memory, without ever holding it whole.
    """

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._columns: list[tuple[str, str]] | None = None
        self.n_rows = 0

    def update(self, batch: pd.DataFrame) -> None:
        columns = [(str(name), str(dtype)) for name, dtype in batch.dtypes.items()]
        if self._columns is None:
            self._columns = columns
            for name, dtype in columns:
                self._digest.update(f"{name}\x1f{dtype}\x1e".encode())
        elif columns != self._columns:
            raise DataError("batches of one table disagree on columns or dtypes")
        if len(batch):
            self._digest.update(pd.util.hash_pandas_object(batch, index=False).to_numpy().tobytes())
        self.n_rows += len(batch)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def iter_table(uri: str, batch_size: int = 20_000, columns: list[str] | None = None):
    """Yield a Parquet or CSV table in DataFrame batches of at most ``batch_size`` rows."""
    path = _local_path(uri)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            # No pre-buffering and one thread: with thousands of columns (the scenes' pixels) the
            # defaults held about a gigabyte of read-ahead buffers however small the batches.
            reader = pq.ParquetFile(path, pre_buffer=False)
            for batch in reader.iter_batches(batch_size=batch_size, columns=columns, use_threads=False):
                yield batch.to_pandas()
        elif suffix == ".csv":
            yield from pd.read_csv(path, chunksize=batch_size, usecols=columns)
        else:
            raise DataError(f"unsupported data format {path.suffix!r} for {uri}: use .parquet or .csv")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read {uri}: {exc}") from exc


def table_columns(uri: str) -> list[tuple[str, str]]:
    """Column names and dtypes of a table, reading only its first rows."""
    first = next(iter_table(uri, batch_size=100), None)
    if first is None:
        raise DataError(f"{uri} holds no rows")
    return [(str(name), str(dtype)) for name, dtype in first.dtypes.items()]
