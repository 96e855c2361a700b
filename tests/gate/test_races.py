"""Concurrent promotions: after every round exactly one version holds each protected target, and it
is one that passed against the version it replaced (SQLite and PostgreSQL, uvicorn and gunicorn).

Each round prepares 20 candidates whose evidence all pass against the current production version,
then releases 20 clients at once. Exactly one may win; the other 19 must be refused because their
evidence went stale the moment the winner replaced their baseline.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from benchmarks.evidence import Comparison, Scenario, log_evidence_run, make_data, score
from benchmarks.servers import MlflowServer
from gatekeeper_cli.client import GatekeeperClient, PromotionRefused

CLIENTS = 20


def _prepare(scenario: Scenario, baseline: str, data) -> list[str]:
    versions = [scenario.version() for _ in range(CLIENTS)]
    strong, weak = score("strong", data), score("weak", data)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda v: log_evidence_run(scenario.url, Comparison(scenario.name, v, baseline, strong, weak), data), versions))
    return versions


def _race(scenario: Scenario, versions: list[str], how: str) -> list[str]:
    """Release one client per version at once; returns the versions whose promotion succeeded."""
    barrier = threading.Barrier(len(versions))

    def attempt(version: str) -> str | None:
        client, gate = MlflowClient(scenario.url), GatekeeperClient(scenario.url)
        barrier.wait()
        try:
            if how == "alias":
                client.set_registered_model_alias(scenario.name, "champion", version)
            elif how == "stage":
                client.transition_model_version_stage(scenario.name, version, "Production", archive_existing_versions=False)
            else:
                gate.promote(scenario.name, version)
            return version
        except PromotionRefused as exc:
            assert "stale evidence" in str(exc), str(exc)
        except MlflowException as exc:
            assert exc.error_code == "PERMISSION_DENIED" and "stale evidence" in exc.message, exc.message
        return None

    with ThreadPoolExecutor(len(versions)) as pool:
        return [v for v in pool.map(attempt, versions) if v is not None]


def _run_rounds(server_url: str, name: str, rounds: list[str]) -> None:
    scenario = Scenario(server_url, name, n=300)
    data = make_data(300, seed=3)
    production = scenario.first_release()
    for how in rounds:
        holder_before = scenario.production()
        baseline = holder_before[0] if how != "stage" else holder_before[1][-1]
        winners = _race(scenario, _prepare(scenario, baseline, data), how)
        assert len(winners) == 1, f"{how} round: winners {winners}"
        champion, in_production = scenario.production()
        if how in ("alias", "promote"):
            assert champion == winners[0]
        if how in ("stage", "promote"):
            assert in_production == [winners[0]]
        round_records = scenario.gate.history(name, limit=CLIENTS)
        approved = [(d["candidate_version"], d["baseline_version"]) for d in round_records if d["action"] == "promote"]
        assert approved == [(winners[0], baseline)]  # the winner passed against the version it replaced
        production = winners[0]
    refusals = [d for d in scenario.gate.history(name, limit=1000) if d["action"] == "refuse"]
    assert len(refusals) == len(rounds) * (CLIENTS - 1)
    assert production == scenario.production()[0] or production in scenario.production()[1]


def test_races_on_sqlite_uvicorn(sqlite_server, model_name):
    _run_rounds(sqlite_server.url, model_name, ["alias", "stage", "promote", "alias", "promote"])


def test_races_on_sqlite_gunicorn_two_workers(tmp_path, gate_policy, model_name):
    with MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", policy=gate_policy, workers=2, gunicorn=True) as server:
        _run_rounds(server.url, model_name, ["alias", "stage", "promote"])


@pytest.mark.postgres
def test_races_on_postgres_gunicorn_two_workers(tmp_path, gate_policy, postgres_uri_factory, model_name):
    with postgres_uri_factory() as uri, MlflowServer(tmp_path, uri, policy=gate_policy, workers=2, gunicorn=True) as server:
        _run_rounds(server.url, model_name, ["alias", "stage", "promote", "promote"])
