"""The full content hash that ties evidence to its data, and logging tables as run inputs.

Logging the same table from parallel runs: MLflow's tracking store inserts dataset rows without a
lock, so simultaneous runs of one experiment can collide; ``log_dataset_input`` must absorb that."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from projects.datasets import (
    StreamingHash,
    _lost_dataset_insert_race,
    content_hash,
    find_dataset_input,
    iter_table,
    log_dataset_input,
)
from benchmarks.evidence import make_data

PARALLEL_RUNS = 8


def _mixed_table(n: int = 500) -> pd.DataFrame:
    """Every kind of column the hash treats differently: raw-byte numerics, strings, categoricals,
    nullable integers, datetimes, booleans, and a wide block of uint8 pixels."""
    table = make_data(n, seed=4)
    table["when"] = pd.date_range("2026-01-01", periods=n, freq="h")
    table["flag"] = table["x0"] > 0
    table["grade"] = pd.Categorical(np.where(table["x1"] > 0, "high", "low"))
    table["count"] = pd.array(np.where(table["x2"] > 1, None, np.arange(n)), dtype="Int64")
    pixels = np.random.default_rng(0).integers(0, 256, size=(n, 64), dtype=np.uint8)
    return pd.concat([table, pd.DataFrame(pixels, columns=[f"px_{i}" for i in range(64)])], axis=1)


def test_hash_in_batches_equals_hash_of_the_whole_table():
    table = _mixed_table()
    for size in (1, 7, 128, 499, 500):
        hasher = StreamingHash()
        for start in range(0, len(table), size):
            hasher.update(table.iloc[start:start + size])
        assert hasher.hexdigest() == content_hash(table), size


@pytest.mark.parametrize("change", ["cell", "pixel", "swap rows", "drop last row", "rename", "dtype", "missing value"])
def test_any_change_to_the_table_changes_the_hash(change):
    table = _mixed_table()
    changed = table.copy()
    if change == "cell":
        changed.loc[3, "x4"] = np.nextafter(changed.loc[3, "x4"], np.inf)  # one ulp
    elif change == "pixel":
        changed.loc[17, "px_40"] ^= 1
    elif change == "swap rows":
        changed.iloc[[0, 1]] = changed.iloc[[1, 0]].to_numpy()
    elif change == "drop last row":
        changed = changed.iloc[:-1]
    elif change == "rename":
        changed = changed.rename(columns={"x0": "x0_"})
    elif change == "dtype":
        changed["label"] = changed["label"].astype("int32")
    else:
        changed.loc[5, "count"] = pd.NA if pd.notna(changed.loc[5, "count"]) else 1
    assert content_hash(changed) != content_hash(table)


def test_a_parquet_file_hashes_alike_as_arrow_batches_or_as_dataframes(tmp_path):
    """evaluate hashes Arrow batches without converting them; the result must be the DataFrame's
    hash, including columns pandas restores from the file's metadata (nullable integers, string
    and timezone dtypes, categoricals) and a stored index, which is not a column."""
    import pyarrow.parquet as pq

    table = _mixed_table(300)
    table["text"] = pd.array(table["weather"], dtype="string")
    table["local_time"] = pd.date_range("2026-01-01", periods=len(table), freq="h", tz="Europe/Paris")
    table["count"] = table["count"].fillna(0)  # Int64 without nulls: must still hash as Int64
    table.index = pd.Index([f"r{i}" for i in range(len(table))], name="key")
    table.to_parquet(tmp_path / "t.parquet")
    hasher = StreamingHash()
    for batch in pq.ParquetFile(tmp_path / "t.parquet").iter_batches(batch_size=77):
        hasher.update(batch)
    assert hasher.hexdigest() == content_hash(pd.read_parquet(tmp_path / "t.parquet")) == content_hash(table.reset_index(drop=True))


@pytest.mark.parametrize("arrow", [True, False])
def test_a_column_with_nulls_in_some_row_groups_hashes_as_the_whole_file_reads(tmp_path, arrow):
    """pandas reads an integer column with a null anywhere as float64 and a boolean one as object;
    a batch without nulls would read int64 / bool and hash differently. ``iter_table`` types every
    batch as the whole file reads (Parquet's statistics say which columns hold nulls), whoever
    wrote it: pyarrow (no pandas metadata), pandas from object columns, pandas' nullable dtypes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 3000
    ints = [None if i == 2500 else i for i in range(n)]
    bools = [None if i == 2600 else bool(i % 3) for i in range(n)]
    pq.write_table(pa.table({"i": pa.array(ints, pa.int64()), "b": pa.array(bools, pa.bool_()),
                             "x": np.arange(n, dtype=float)}), tmp_path / "arrow.parquet", row_group_size=1000)
    pd.DataFrame({"i": pd.Series(ints, dtype=object), "b": pd.Series(bools, dtype=object)}).to_parquet(
        tmp_path / "objects.parquet", row_group_size=1000)  # the index stored too
    pd.DataFrame({"i": pd.array(ints, dtype="Int64"), "b": pd.array(bools, dtype="boolean")}).to_parquet(
        tmp_path / "nullable.parquet", index=False, row_group_size=1000)
    for name, dtypes in (("arrow", ["float64", "object", "float64"]), ("objects", ["float64", "object"]),
                         ("nullable", ["Int64", "boolean"])):
        whole = pd.read_parquet(tmp_path / f"{name}.parquet")
        hasher = StreamingHash()
        for batch in iter_table(tmp_path / f"{name}.parquet", batch_size=700, arrow=arrow):
            hasher.update(batch)
        assert list(whole.dtypes.astype(str)) == dtypes
        assert hasher.hexdigest() == content_hash(whole), name


def test_the_same_table_as_csv_or_parquet_hashes_the_same(tmp_path):
    table = make_data(1000, seed=9)  # floats with full precision: the CSV reader must parse them exactly
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet", index=False)
    hashes = set()
    for path in (tmp_path / "t.csv", tmp_path / "t.parquet"):
        hasher = StreamingHash()
        for batch in iter_table(str(path), batch_size=333):
            hasher.update(batch)
        hashes.add(hasher.hexdigest())
    assert hashes == {content_hash(table)}


def test_parallel_runs_logging_one_table_all_record_it(sqlite_server):
    mlflow.set_tracking_uri(sqlite_server.url)
    experiment_id = MlflowClient(sqlite_server.url).create_experiment(f"datasets-{id(sqlite_server)}")
    data = make_data(200, seed=11)
    barrier = threading.Barrier(PARALLEL_RUNS)

    def log_from_own_run(_: int) -> str:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            barrier.wait()  # every run logs the never-seen table at the same moment
            log_dataset_input(data, source="file:///generated/shared.parquet", name="shared", context="evaluation")
        return run.info.run_id

    for round_number in range(3):  # the collision is a race: give it several chances to happen
        data = make_data(200, seed=11 + round_number)
        with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
            run_ids = list(pool.map(log_from_own_run, range(PARALLEL_RUNS)))
        for run_id in run_ids:
            logged = find_dataset_input(run_id, "evaluation")
            assert logged is not None and logged.content_hash == content_hash(data)


@pytest.mark.parametrize(
    ("message", "retried"),
    [
        ("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name", True),
        ('(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint "uq_dataset"'
         " [SQL: INSERT INTO datasets (dataset_uuid, ...)]", True),
        ("RESOURCE_DOES_NOT_EXIST: Run with id=abc not found", False),
        ("(sqlite3.IntegrityError) UNIQUE constraint failed: inputs.input_uuid", False),
    ],
)
def test_only_a_lost_dataset_insert_is_retried(message, retried):
    """Any other failure (a missing run, a clash on another table) surfaces at once, unchanged."""
    assert _lost_dataset_insert_race(MlflowException(message)) is retried
