"""Deployment concerns on real servers: a bad policy stops start-up, migrations coexist with
MLflow's, the audit table is append-only, basic-auth identifies the actor, PostgreSQL works."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from benchmarks.evidence import Scenario
from benchmarks.servers import MlflowServer
from gatekeeper_cli.client import GatekeeperClient, GatekeeperError, PromotionRefused


@pytest.mark.parametrize(
    "policy_text, message",
    [
        ("defaults:\n  primary: {metric: accuracy_score}\n", "unknown metric 'accuracy_score'"),
        ("defaults:\n  confidence: 1.5\n", "policy.defaults.confidence"),
        ("defaults: [not, a, mapping\n", "is not valid YAML"),
        ("defaults:\n  evidence: {max_age: 7 days}\n", "policy.defaults.evidence.max_age"),
    ],
)
def test_a_bad_policy_stops_the_server_with_a_clear_error(tmp_path, policy_text, message):
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text)
    server = MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", policy=policy)
    with pytest.raises(RuntimeError, match="mlflow server exited"):
        server.start(timeout=60)
    assert message in server.log()


def test_a_missing_policy_file_stops_the_server(tmp_path):
    server = MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", policy=tmp_path / "nope.yaml")
    with pytest.raises(RuntimeError, match="mlflow server exited"):
        server.start(timeout=60)
    assert "cannot read policy file" in server.log()


def test_gatekeeper_app_refuses_to_run_an_ungated_registry(tmp_path):
    server = MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", gated=False)
    server.command += ["--app-name", "gatekeeper"]
    with pytest.raises(RuntimeError, match="mlflow server exited"):
        server.start(timeout=60)
    assert "the registry is not gated" in server.log()


def test_migrations_live_beside_mlflows_and_the_log_is_append_only(tmp_path, gate_policy):
    db = tmp_path / "mlflow.db"
    with MlflowServer(tmp_path, f"sqlite:///{db}", policy=gate_policy) as server:
        scenario = Scenario(server.url, "m")
        version = scenario.version()
        with pytest.raises(Exception):
            scenario.client.set_registered_model_alias("m", "champion", version)
    upgrade = subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", f"sqlite:///{db}"],
                             capture_output=True, text=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"gatekeeper_decisions", "alembic_version_gatekeeper", "alembic_version", "registered_models"} <= tables
        assert connection.execute("SELECT version_num FROM alembic_version_gatekeeper").fetchall() == [(_gate_head(),)]
        assert connection.execute("SELECT count(*) FROM gatekeeper_decisions").fetchone() == (1,)
        for statement in ("UPDATE gatekeeper_decisions SET verdict = 'promote'", "DELETE FROM gatekeeper_decisions"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                connection.execute(statement)
    with MlflowServer(tmp_path / "again", f"sqlite:///{db}", policy=gate_policy) as server:  # restart: no re-migration
        assert len(GatekeeperClient(server.url).history("m")) == 1


@pytest.fixture
def auth_server(tmp_path, gate_policy):
    env = {
        "GATEKEEPER_BASIC_AUTH": "true",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password-123",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret",
    }
    with MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", policy=gate_policy, env=env) as server:
        yield server


def test_basic_auth_records_the_user_and_keeps_overrides_for_admins(auth_server, monkeypatch):
    admin = ("admin", "admin-password-123")
    url = auth_server.url
    assert requests.get(f"{url}/api/2.0/mlflow/registered-models/search", timeout=30).status_code == 401
    response = requests.post(f"{url}/api/2.0/mlflow/users/create", auth=admin, timeout=30,
                             json={"username": "alice", "password": "alice-password-123"})
    assert response.status_code == 200, response.text

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "admin-password-123")
    scenario = Scenario(url, "guarded")
    v1 = scenario.first_release()
    v2 = scenario.version()
    response = requests.post(f"{url}/api/3.0/mlflow/users/permissions/grant", auth=admin, timeout=30,
                             json={"username": "alice", "resource_type": "registered_model",
                                   "resource_id": "guarded", "permission": "EDIT"})
    assert response.status_code == 200, response.text

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "alice-password-123")
    with pytest.raises(Exception, match="PERMISSION_DENIED"):
        MlflowClient(url).set_registered_model_alias("guarded", "champion", v2)
    with pytest.raises(PromotionRefused, match="overrides are for admins only"):
        GatekeeperClient(url).promote("guarded", v2, force=True, reason="alice wants it")

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "admin-password-123")
    GatekeeperClient(url).promote("guarded", v2, force=True, reason="incident 7")
    history = GatekeeperClient(url).history("guarded")
    assert [(d["action"], d["actor"]) for d in history] == [("override", "admin"), ("refuse", "alice"), ("promote", "admin")]
    assert scenario.client.get_model_version("guarded", v2).tags["gatekeeper.actor"] == "admin"
    assert scenario.production() == (v2, [v2]) and v1 != v2


def test_unreachable_server_is_a_clear_client_error():
    with pytest.raises(GatekeeperError, match="cannot reach"):
        GatekeeperClient("http://127.0.0.1:9").history("m")


@pytest.mark.postgres
def test_postgres_uvicorn_full_cycle(tmp_path, gate_policy, postgres_uri_factory):
    with postgres_uri_factory() as uri, MlflowServer(tmp_path, uri, policy=gate_policy) as server:
        scenario = Scenario(server.url, "pg-model")
        v1 = scenario.first_release()
        v2, v3 = scenario.version(), scenario.version()
        scenario.evidence(v2, v1, candidate_model="weak", baseline_model="strong")
        with pytest.raises(PromotionRefused, match="the candidate is worse"):
            scenario.gate.promote("pg-model", v2)
        scenario.evidence(v3, v1)
        scenario.client.set_registered_model_alias("pg-model", "CHAMPION", v3)
        assert scenario.production() == (v3, [v1])
        with pytest.raises(Exception, match="PERMISSION_DENIED"):
            scenario.client.delete_model_version("pg-model", v3)
        assert [d["action"] for d in scenario.gate.history("pg-model")] == ["promote", "refuse", "promote"]
        import sqlalchemy

        engine = sqlalchemy.create_engine(uri)
        with engine.connect() as connection, pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):
            connection.execute(sqlalchemy.text("DELETE FROM gatekeeper_decisions"))
        engine.dispose()


def _gate_head() -> str:
    """The newest revision of the gate's own migration chain (what a fresh server must be at)."""
    from alembic.script import ScriptDirectory

    from registry_hooks.audit import log

    return ScriptDirectory(str(Path(log.__file__).parent / "migrations")).get_current_head()
