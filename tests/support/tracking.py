"""MLflow's process-wide tracking and registry URIs pointed at one place for a block, then back.

MLflow keeps the tracking URI, the registry URI and the active experiment in module globals as well
as in the environment; a test module that sets only one of them leaks into the next module (runs
land in the wrong database, or ``mlruns/`` appears in the working directory). Everything is set
through one ``MonkeyPatch``, so leaving the block restores it all.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

# Left over from a caller (an MLflow run, a CI job) they would redirect runs or experiments.
CLEARED = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_REGISTRY_URI",
           "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@contextmanager
def tracking_at(uri: str, experiment: str, artifacts: Path | None = None) -> Iterator[tuple[pytest.MonkeyPatch, str]]:
    """Tracking and registry at ``uri`` with a new active ``experiment`` (artifacts under
    ``artifacts`` if given); yields the patch (for more settings that must be restored too) and
    the experiment's id."""
    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils
    import mlflow.tracking.fluent as fluent

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        for name in CLEARED:
            patch.delenv(name, raising=False)
        patch.setattr(tracking_utils, "_tracking_uri", None)
        patch.setattr(registry_utils, "_registry_uri", None)
        location = artifacts.as_uri() if artifacts is not None else None
        experiment_id = mlflow.MlflowClient(uri).create_experiment(experiment, artifact_location=location)
        patch.setattr(fluent, "_active_experiment_id", experiment_id)
        try:
            yield patch, experiment_id
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
