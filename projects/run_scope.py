"""Where a job's own run goes: under the caller's run, whoever started the job.

A job called from Python inside an active run nests under it; a job started by ``mlflow run``
finds the project's run in ``MLFLOW_RUN_ID``, which ``mlflow.start_run`` would *resume* — then the
job's params (``task=classification``) would clash with the project's (``task=auto``) and MLflow
refuses to change a param. So the job's run becomes a child of that run instead; alone, a
top-level run.
"""

from __future__ import annotations

import os
from contextlib import contextmanager


@contextmanager
def child_run(run_name: str, error: type[Exception]):
    """A new run named ``run_name``; ``error`` is raised if ``MLFLOW_RUN_ID`` names no run."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    active = mlflow.active_run()
    if active is not None:
        with mlflow.start_run(run_name=run_name, nested=True, experiment_id=active.info.experiment_id) as run:
            yield run
        return
    parent_id = os.environ.get("MLFLOW_RUN_ID")
    if not parent_id:
        with mlflow.start_run(run_name=run_name) as run:
            yield run
        return
    try:
        parent = MlflowClient().get_run(parent_id)
    except MlflowException as exc:
        raise error(f"MLFLOW_RUN_ID={parent_id} names no run this tracking server knows: {exc.message}") from None
    del os.environ["MLFLOW_RUN_ID"]  # hidden, so that start_run creates a child instead of resuming it
    try:
        with mlflow.start_run(run_name=run_name, parent_run_id=parent_id, experiment_id=parent.info.experiment_id) as run:
            yield run
    finally:
        os.environ["MLFLOW_RUN_ID"] = parent_id
