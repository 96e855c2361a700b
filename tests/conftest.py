"""Shared fixtures: real gated MLflow servers on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from benchmarks.evidence import GATE_POLICY
from benchmarks.servers import REQUIRE_POSTGRES_ENV, MlflowServer, postgres_database, postgres_problem
from registry_hooks.inference_records import LOG_ENV as INFERENCE_LOG_ENV

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


REPOSITORY = Path(__file__).resolve().parents[1]
# What MLflow and the served model write into the working directory when a test forgets to point
# them elsewhere (a default experiment's ./mlruns, the inference log's ./inference-log).
STRAY_OUTPUT = ("mlruns", "mlartifacts", "inference-log")


@pytest.fixture(scope="session", autouse=True)
def _nothing_written_into_the_tree(tmp_path_factory):
    """The models ``train`` logs write each call to ``./inference-log`` by default
    (``projects.serving``); during tests, and in every process they start, a temporary folder.
    And no test leaves MLflow output in the repository: checked when the session ends."""
    if INFERENCE_LOG_ENV not in os.environ:
        os.environ[INFERENCE_LOG_ENV] = str(tmp_path_factory.mktemp("inference-log"))
    before = {name for name in STRAY_OUTPUT if (REPOSITORY / name).exists()}
    yield
    created = {name for name in STRAY_OUTPUT if (REPOSITORY / name).exists()} - before
    assert not created, f"tests wrote {sorted(created)} into {REPOSITORY}: point MLflow at a temporary folder"


@pytest.fixture(scope="session")
def postgres_uri_factory():
    """Yields a function that creates a fresh PostgreSQL database; skips (or fails in CI) without one."""
    problem = postgres_problem()
    if problem:
        if os.environ.get(REQUIRE_POSTGRES_ENV):
            pytest.fail(f"{REQUIRE_POSTGRES_ENV} is set but {problem}")
        pytest.skip(problem)
    return postgres_database


@pytest.fixture(scope="session")
def gate_policy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(GATE_POLICY)
    return path


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory, gate_policy):
    """One gated uvicorn server on SQLite, shared by a test module (models get unique names)."""
    workdir = tmp_path_factory.mktemp("sqlite-server")
    with MlflowServer(workdir, f"sqlite:///{workdir}/mlflow.db", policy=gate_policy) as server:
        yield server


@pytest.fixture
def model_name() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module", autouse=True)
def _fresh_mlflow_uris():
    """Each test module starts without a registry URI or active experiment left behind by another
    (MLflow keeps both globally, the experiment also in the environment), so clients and runs
    always reach the store the module set up."""
    import mlflow.tracking.fluent as fluent
    from mlflow.tracking._model_registry import utils as registry_utils

    for name in ("MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(name, None)  # mlflow.set_experiment() exports MLFLOW_EXPERIMENT_ID
    registry_utils._registry_uri = None
    fluent._active_experiment_id = None
    yield


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend_server(request, tmp_path_factory, gate_policy):
    """One gated uvicorn server per test module on each backend: SQLite, then PostgreSQL."""
    workdir = tmp_path_factory.mktemp(f"{request.param}-server")
    if request.param == "sqlite":
        with MlflowServer(workdir, f"sqlite:///{workdir}/mlflow.db", policy=gate_policy) as server:
            yield server
        return
    with request.getfixturevalue("postgres_uri_factory")() as uri:
        with MlflowServer(workdir, uri, policy=gate_policy) as server:
            yield server
