"""``gatekeeper audit verify`` against a real server: decisions made through MLflow's own API verify
(exit 0, over the CLI and over HTTP); a reason edited, or a last decision deleted, directly in the
database with the append-only triggers out of the way fails it (exit 1, naming the row). SQLite
under uvicorn, PostgreSQL under gunicorn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy import create_engine, text

from benchmarks.evidence import register_version
from benchmarks.servers import MlflowServer

GATEKEEPER = Path(sys.executable).parent / "gatekeeper"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request, tmp_path_factory, gate_policy):
    workdir = tmp_path_factory.mktemp(f"audit-{request.param}")
    if request.param == "sqlite":
        with MlflowServer(workdir, f"sqlite:///{workdir}/mlflow.db", policy=gate_policy) as server:
            yield server
        return
    with request.getfixturevalue("postgres_uri_factory")() as uri:
        with MlflowServer(workdir, uri, policy=gate_policy, gunicorn=True) as server:
            yield server


def refusals(server: MlflowServer, name: str, count: int) -> None:
    """``count`` refused promotions (no evidence) of new versions of ``name``: each one is audited."""
    client = MlflowClient(server.url, registry_uri=server.url)
    for _ in range(count):
        version = register_version(client, name)
        with pytest.raises(MlflowException, match="no evidence"):
            client.set_registered_model_alias(name, "champion", version)


def verify(server: MlflowServer, *model: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "MLFLOW_REGISTRY", "PYTEST_"))}
    return subprocess.run([str(GATEKEEPER), "--tracking-uri", server.url, "audit", "verify", *model],
                          env=env, capture_output=True, text=True, timeout=120)


def decision_ids(server: MlflowServer, name: str) -> list[int]:
    response = requests.get(f"{server.url}/gatekeeper/api/history", params={"name": name}, timeout=30)
    return sorted(d["id"] for d in response.json()["decisions"])


def tamper(server: MlflowServer, statement: str) -> None:
    """What someone with write access to the database can do: put the append-only triggers aside."""
    engine = create_engine(server.backend_uri)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE gatekeeper_decisions DISABLE TRIGGER USER"))
        else:
            connection.execute(text("DROP TRIGGER IF EXISTS gatekeeper_decisions_no_update"))
            connection.execute(text("DROP TRIGGER IF EXISTS gatekeeper_decisions_no_delete"))
        connection.execute(text(statement))
    engine.dispose()


def test_decisions_made_through_the_server_verify(server, model_name):
    refusals(server, model_name, 3)
    for model in ([], [model_name]):
        result = verify(server, *model)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("audit log intact (")
    report = requests.get(f"{server.url}/gatekeeper/api/audit/verify", params={"name": model_name}, timeout=30).json()
    assert (report["ok"], report["rows"], report["problems"]) == (True, 3, [])
    unknown = verify(server, "no-such-model")
    assert unknown.returncode == 2 and "not found" in unknown.stderr


def test_a_reason_edited_in_the_database_fails_verify_naming_the_row(server, model_name):
    refusals(server, model_name, 3)
    edited = decision_ids(server, model_name)[1]
    tamper(server, f"UPDATE gatekeeper_decisions SET reasons = '[\"evidence passed\"]' WHERE id = {edited}")
    result = verify(server, model_name)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"edited        {model_name} #{edited}: decision #{edited} no longer matches its hash" in result.stdout
    assert verify(server).returncode == 1  # the whole log is not intact either
    report = requests.get(f"{server.url}/gatekeeper/api/audit/verify", timeout=30).json()
    assert [(p["model_name"], p["decision_id"], p["kind"]) for p in report["problems"]] == [(model_name, edited, "edited")]


def test_a_last_decision_deleted_in_the_database_fails_verify(server, model_name):
    refusals(server, model_name, 2)
    last = decision_ids(server, model_name)[-1]
    tamper(server, f"DELETE FROM gatekeeper_decisions WHERE id = {last}")
    result = verify(server, model_name)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"missing_tail  {model_name} #{last}: decision #{last}, the last one the head" in result.stdout
    refusals(server, model_name, 1)  # the gate goes on deciding; the cut stays visible
    assert verify(server, model_name).returncode == 1


def test_under_basic_auth_the_whole_log_is_for_admins_and_a_model_for_its_readers(tmp_path, gate_policy):
    env = {"GATEKEEPER_BASIC_AUTH": "true", "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password-123",
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret"}
    admin, alice = ("admin", "admin-password-123"), ("alice", "alice-password-123")
    with MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", policy=gate_policy, env=env) as server:
        created = requests.post(f"{server.url}/api/2.0/mlflow/users/create", auth=admin, timeout=30,
                                json={"username": "alice", "password": "alice-password-123"})
        assert created.status_code == 200, created.text
        requests.post(f"{server.url}/api/2.0/mlflow/registered-models/create", auth=admin, json={"name": "m"},
                      timeout=30).raise_for_status()
        route = f"{server.url}/gatekeeper/api/audit/verify"
        assert requests.get(route, auth=alice, timeout=30).status_code == 403
        assert requests.get(route, auth=alice, params={"name": "m"}, timeout=30).json()["ok"] is True  # READ by default
        assert requests.get(route, auth=admin, timeout=30).json()["ok"] is True
