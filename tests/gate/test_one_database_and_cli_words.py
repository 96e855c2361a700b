"""What a newcomer meets first: the embedded default is one database, and the CLI says plainly
what happened — an override is called an override, a refusal lists every failing check, a
rollback says it rolled back. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from benchmarks.evidence import Scenario


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "MLFLOW_REGISTRY", "PYTEST_"))}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def _cli(uri: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "gatekeeper_cli.main", "--tracking-uri", uri, *args], cwd)


@pytest.fixture(params=["sqlite", "postgres"])
def database_uri(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/team.db"
        return
    with request.getfixturevalue("postgres_uri_factory")() as uri:
        yield uri


def test_the_gated_store_in_process_reads_evidence_from_its_own_database(database_uri, tmp_path, monkeypatch):
    """Evidence logged into the database is found by the CLI and by the store built from
    ``gatekeeper:<database>`` alone, run from a folder with no MLflow set-up."""
    monkeypatch.chdir(tmp_path)  # the evidence runs' artifacts land under tmp_path/mlruns
    scenario = Scenario(database_uri, "one-db")
    v1 = scenario.first_release()  # in process, through the gate on that database
    v2, v3 = str(scenario.version()), str(scenario.version())
    scenario.evidence(v2, v1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    cli = _cli(database_uri, "promote", "one-db", v2, cwd=elsewhere)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "verdict: promote" in cli.stdout
    scenario.evidence(v3, v2)
    store_script = (  # the store as MLflow's entry point builds it, with no tracking URI at all
        "import sys; from plugins import build_store\n"
        "store = build_store('gatekeeper:' + sys.argv[1])\n"
        "store.set_registered_model_alias('one-db', 'champion', sys.argv[2])\n"
    )
    promoted = _run([sys.executable, "-c", store_script, database_uri, v3], elsewhere)
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    assert list(elsewhere.iterdir()) == []  # no ./mlflow.db, no ./mlruns created beside the caller
    aliases = MlflowClient(database_uri, registry_uri=database_uri).get_registered_model("one-db").aliases
    assert {alias: str(version) for alias, version in aliases.items()} == {"champion": v3}


@pytest.fixture
def scenario(backend_server, model_name) -> Scenario:
    return Scenario(backend_server.url, model_name)


def test_a_forced_promotion_says_it_overrode_the_gate_and_why(backend_server, scenario, tmp_path):
    scenario.first_release()
    v2 = scenario.version()
    forced = _cli(backend_server.url, "promote", scenario.name, v2, "--force", "--reason", "incident 42", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    first_line = forced.stdout.splitlines()[0]
    assert first_line.startswith("OVERRIDDEN by anonymous (audit decision #")
    assert "the gate would have refused it (refuse_insufficient_evidence) because:" in first_line
    assert f"  - no evidence: no finished evaluation run for {scenario.name} v{v2}" in forced.stdout
    assert forced.stdout.rstrip().endswith("verdict: refuse_insufficient_evidence (overridden: promoted anyway)")
    assert scenario.production() == (v2, [v2])


def test_history_shows_every_failing_check(backend_server, scenario, tmp_path):
    v1 = scenario.first_release(model="strong")
    v2 = scenario.version()
    scenario.evidence(v2, v1, candidate_model="weak", baseline_model="strong")
    refused = _cli(backend_server.url, "promote", scenario.name, v2, cwd=tmp_path)
    assert refused.returncode == 1
    failing = [c for c in scenario.gate.history(scenario.name)[0]["checks"] if c["outcome"].startswith("fail")]
    assert len(failing) >= 3  # primary, log loss and at least one slice
    history = _cli(backend_server.url, "history", scenario.name, cwd=tmp_path)
    refusal = history.stdout.split("\n#")[0]  # newest first
    for check in failing:
        assert f"        - {check['message'][:60]}" in refusal, (check["name"], refusal)
    assert all(len(line) <= 8 + 2 + 160 for line in refusal.splitlines()[1:])


def test_a_rollback_is_recorded_as_a_rollback(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.evidence(v2, v1)
    scenario.gate.promote(scenario.name, v2)
    scenario.gate.rollback(scenario.name, reason="latency regression")
    tags = scenario.client.get_model_version(scenario.name, v1).tags
    assert tags["gatekeeper.action"] == "rollback"
    assert "all checks passed" not in tags["gatekeeper.reason"]
    assert tags["gatekeeper.reason"] == (
        f"rollback by anonymous: latency regression\nrolled back to v{v1}, the version approved before v{v2}"
    )
