"""Logging the same table from parallel runs: MLflow's tracking store inserts dataset rows without a
lock, so simultaneous runs of one experiment can collide; ``log_dataset_input`` must absorb that."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from projects.datasets import _lost_dataset_insert_race, content_hash, find_dataset_input, log_dataset_input
from tests.support.evidence import make_data

PARALLEL_RUNS = 8


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
