"""Run-context provider (entry point ``mlflow.run_context_provider``): tags every run the
pipeline starts with the git commit, the data-set version and the pipeline step.

The pipeline announces its step and data-set version through environment variables (set by
``retrain`` for its child steps, or by a user), so the tags reach runs started anywhere in the
process tree — ``mlflow run`` subprocesses included — without threading them through every call.
"""

from __future__ import annotations

import functools
import os
import subprocess

from mlflow.tracking.context.abstract_context import RunContextProvider

STEP_ENV = "GATEKEEPER_PIPELINE_STEP"
DATASET_ENV = "GATEKEEPER_DATASET_VERSION"
TAG_STEP = "gatekeeper.pipeline.step"
TAG_DATASET = "gatekeeper.dataset.version"
TAG_COMMIT = "gatekeeper.git.commit"


@functools.lru_cache(maxsize=8)
def _git_commit(directory: str) -> str | None:
    """The checked-out commit (with ``-dirty`` when the tree has changes), or None outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None


class GatekeeperRunContextProvider(RunContextProvider):
    """MLflow calls ``in_context`` then ``tags`` when a run starts."""

    def in_context(self) -> bool:
        return bool(os.environ.get(STEP_ENV) or os.environ.get(DATASET_ENV) or self._commit())

    @staticmethod
    def _commit() -> str | None:
        return _git_commit(os.getcwd())

    def tags(self) -> dict[str, str]:
        tags = {TAG_STEP: os.environ.get(STEP_ENV), TAG_DATASET: os.environ.get(DATASET_ENV), TAG_COMMIT: self._commit()}
        return {key: value for key, value in tags.items() if value}
