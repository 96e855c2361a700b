"""Run-context provider (entry point ``mlflow.run_context_provider``): tags every run the
pipeline starts with the git commit, the data-set version and the pipeline step.

The pipeline announces its step and data-set version through environment variables (set by
``retrain`` for its child steps, or by a user), so the tags reach runs started anywhere in the
process tree — ``mlflow run`` subprocesses included — without threading them through every call.

Importing this module imports nothing from MLflow; the provider class is built on first access
(see ``__getattr__`` for why).
"""

from __future__ import annotations

import functools
import os
import subprocess
from typing import TYPE_CHECKING

from registry_hooks.contract import DATASET_ENV, STEP_ENV, TAG_DATASET_VERSION, TAG_GIT_COMMIT, TAG_PIPELINE_STEP

_PROVIDER = "GatekeeperRunContextProvider"

if TYPE_CHECKING:
    from mlflow.tracking.context.abstract_context import RunContextProvider as GatekeeperRunContextProvider


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


def context_tags() -> dict[str, str]:
    """The tags a run started now gets: step and data-set version from the environment, the commit
    of the working directory; unknown ones are left out."""
    tags = {TAG_PIPELINE_STEP: os.environ.get(STEP_ENV), TAG_DATASET_VERSION: os.environ.get(DATASET_ENV),
            TAG_GIT_COMMIT: _git_commit(os.getcwd())}
    return {key: value for key, value in tags.items() if value}


def _provider_class(base: type) -> type:
    class GatekeeperRunContextProvider(base):
        """MLflow calls ``in_context`` then ``tags`` when a run starts."""

        def in_context(self) -> bool:
            return bool(context_tags())

        def tags(self) -> dict[str, str]:
            return context_tags()

    GatekeeperRunContextProvider.__qualname__ = _PROVIDER
    return GatekeeperRunContextProvider


def __getattr__(name: str):
    """``GatekeeperRunContextProvider``, subclassing MLflow's ``RunContextProvider``, built on first use.

    Why not at import time: importing any ``mlflow`` module runs ``mlflow/__init__``, which imports
    ``mlflow.tracking.context.registry``, which loads every ``mlflow.run_context_provider`` entry
    point — this class. Had this module imported ``RunContextProvider`` at its top, then whenever it
    was imported before MLflow (``projects.retrain`` imports it for its tags), MLflow
    would have found it half-initialised, without the class: "Failure attempting to register
    context provider ... circular import", and no run of that process got these tags.
    """
    if name != _PROVIDER:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from mlflow.tracking.context.abstract_context import RunContextProvider

    # If MLflow was not imported yet, the import above loaded this entry point through MLflow's
    # registry, which came back here and built the class already: keep that one.
    provider = globals().get(name)
    if provider is None:
        provider = globals()[name] = _provider_class(RunContextProvider)
    return provider
