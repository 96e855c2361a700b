"""The run-context provider registers and tags runs, whichever is imported first: MLflow or the plugin.

Each case runs in a fresh interpreter: MLflow loads the provider once per process, when
``mlflow.tracking.context.registry`` is first imported, so only a new process shows whether that
load worked. (``mlflow run`` is covered in ``test_entry_points``.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from registry_hooks.contract import DATASET_ENV, STEP_ENV, TAG_DATASET_VERSION, TAG_GIT_COMMIT, TAG_PIPELINE_STEP

ROOT = Path(__file__).resolve().parents[2]
REGISTRATION_FAILURE = "Failure attempting to register context provider"

START_A_RUN = """
import json, mlflow
with mlflow.start_run() as run:
    pass
print(json.dumps(mlflow.get_run(run.info.run_id).data.tags))
"""


def is_commit_of_this_repository(tag: str) -> bool:
    """``<sha>`` or ``<sha>-dirty`` naming a commit that exists here (HEAD may move while tests run)."""
    sha = tag.removesuffix("-dirty")
    return len(sha) == 40 and subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("first_import", [
    "import plugins.run_context",  # what projects.retrain does: the order that used to fail
    "from plugins.run_context import GatekeeperRunContextProvider",
    "import mlflow",
])
def test_a_run_in_a_fresh_process_gets_step_dataset_and_commit(first_import, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", STEP_ENV: "evaluate",
           DATASET_ENV: "abc123", "PYTHONWARNINGS": "always"}
    result = subprocess.run([sys.executable, "-c", first_import + "\n" + START_A_RUN], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert REGISTRATION_FAILURE not in result.stderr
    tags = json.loads(result.stdout.strip().splitlines()[-1])
    assert tags[TAG_PIPELINE_STEP] == "evaluate" and tags[TAG_DATASET_VERSION] == "abc123"
    assert is_commit_of_this_repository(tags[TAG_GIT_COMMIT]), tags[TAG_GIT_COMMIT]


def test_outside_git_and_without_the_variables_no_tags_are_invented(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (STEP_ENV, DATASET_ENV)}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", "import plugins.run_context\n" + START_A_RUN], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    tags = json.loads(result.stdout.strip().splitlines()[-1])
    assert not {TAG_PIPELINE_STEP, TAG_DATASET_VERSION, TAG_GIT_COMMIT} & set(tags)


def test_the_provider_is_mlflows_kind_and_built_once():
    import mlflow.tracking.context.registry as registry
    from mlflow.tracking.context.abstract_context import RunContextProvider

    import plugins.run_context as module

    ours = [p for p in registry._run_context_provider_registry if type(p).__name__ == "GatekeeperRunContextProvider"]
    assert len(ours) == 1 and type(ours[0]) is module.GatekeeperRunContextProvider
    assert isinstance(ours[0], RunContextProvider)
    with pytest.raises(AttributeError):
        module.NoSuchProvider  # noqa: B018 - the lazy attribute hook answers only for the provider
