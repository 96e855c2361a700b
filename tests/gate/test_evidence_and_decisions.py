"""Evidence freshness, garbled evidence, slices, overrides, rollback, explain and history, live."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from benchmarks.evidence import Comparison, Scenario, Scored, log_evidence_run, make_data, score
from gatekeeper_cli.client import GatekeeperError, PromotionRefused
from registry_hooks.contract import EVIDENCE_MANIFEST_PATH, EVIDENCE_OUTCOMES_PATH


@pytest.fixture
def scenario(sqlite_server, model_name) -> Scenario:
    return Scenario(sqlite_server.url, model_name)


def refused(scenario: Scenario, version: str) -> str:
    with pytest.raises(PromotionRefused) as info:
        scenario.gate.promote(scenario.name, version)
    return str(info.value)


def test_evidence_goes_stale_when_production_changes(scenario):
    v1 = scenario.first_release()
    v2, v3 = scenario.version(), scenario.version()
    scenario.evidence(v2, v1)
    scenario.evidence(v3, v1)
    scenario.gate.promote(scenario.name, v2)
    message = refused(scenario, v3)
    assert "stale evidence" in message and f"compared against v{v1}" in message and f"now v{v2}" in message
    assert scenario.production() == (v2, [v2])


def test_evidence_goes_stale_when_the_evaluation_data_changes(scenario):
    v1 = scenario.first_release()
    v2, v3 = scenario.version(), scenario.version()
    scenario.evidence(v2, v1)
    scenario.evidence(v3, v1, data=make_data(1500, seed=99))  # the team's eval set moved on
    message = refused(scenario, v2)
    assert "evaluation data 'eval' changed" in message
    scenario.gate.promote(scenario.name, v3)  # evidence on the current data still passes
    assert scenario.production() == (v3, [v3])


def _rewrite_artifact(run_id: str, path: str, content: bytes) -> None:
    client = mlflow.MlflowClient()
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / Path(path).name
        target.write_bytes(content)
        client.log_artifact(run_id, str(target), str(Path(path).parent))


def test_evidence_older_than_the_policy_allows_is_refused(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    run_id = scenario.evidence(v2, v1)
    manifest = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{EVIDENCE_MANIFEST_PATH}"))
    manifest["created_at"] = (datetime.now(timezone.utc) - timedelta(days=3)).isoformat()
    _rewrite_artifact(run_id, EVIDENCE_MANIFEST_PATH, json.dumps(manifest).encode())
    message = refused(scenario, v2)
    assert "stale evidence" in message and "72.0 h old" in message and "allows 24.0 h" in message


@pytest.mark.parametrize("damage", ["outcomes", "manifest", "format"])
def test_garbled_evidence_is_a_refusal_with_a_reason(scenario, damage):
    v1 = scenario.first_release()
    v2 = scenario.version()
    run_id = scenario.evidence(v2, v1)
    if damage == "outcomes":
        _rewrite_artifact(run_id, EVIDENCE_OUTCOMES_PATH, b"ARROW1 this is not an arrow file")
        expected = "does not match the sha256"
    elif damage == "manifest":
        _rewrite_artifact(run_id, EVIDENCE_MANIFEST_PATH, b"{not json")
        expected = "is not valid JSON"
    else:
        manifest = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{EVIDENCE_MANIFEST_PATH}"))
        manifest["data"]["content_hash"] = "abc123"
        _rewrite_artifact(run_id, EVIDENCE_MANIFEST_PATH, json.dumps(manifest).encode())
        expected = "full SHA-256"
    message = refused(scenario, v2)
    assert f"evidence run {run_id} is unusable" in message and expected in message
    assert scenario.production() == (v1, [v1])


def test_evidence_run_without_artifacts_is_a_refusal(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    mlflow.set_tracking_uri(scenario.url)
    with mlflow.start_run() as run:
        mlflow.set_tags({"gatekeeper.evidence": "1", "gatekeeper.candidate.name": scenario.name,
                         "gatekeeper.candidate.version": v2, "gatekeeper.baseline.version": v1})
    message = refused(scenario, v2)
    assert f"evidence run {run.info.run_id} is unusable" in message and "cannot read its artifacts" in message


def test_evidence_whose_data_was_not_logged_is_refused(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    from registry_hooks.evidence import EvaluatedData, ExampleOutcomes, log_evidence

    data = scenario.data
    outcomes = ExampleOutcomes(row_id=data["row_id"], label=data["label"], candidate=score("strong", data).as_outcomes(),
                               baseline=score("weak", data).as_outcomes())
    with mlflow.start_run():
        log_evidence(candidate=(scenario.name, v2), baseline=(scenario.name, v1),
                     data=EvaluatedData("eval", "0" * 64), task="classification", outcomes=outcomes)
    assert "cannot be verified" in refused(scenario, v2)


def test_better_overall_but_worse_on_a_rare_slice_is_refused(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    data = scenario.data
    strong, weak = score("strong", data), score("weak", data)
    fog = (data["weather"] == "fog").to_numpy()
    spoiled = fog & (np.arange(len(data)) % 2 == 0)  # wrong on half of the foggy examples
    broken = np.where(spoiled, 1 - data["label"].to_numpy(), strong.prediction)
    proba = np.where(spoiled, 0.05, strong.proba_label)
    log_evidence_run(scenario.url, Comparison(scenario.name, v2, v1, Scored(broken, proba), weak), data)
    explained = scenario.gate.explain(scenario.name, v2)
    assert explained["verdict"] == "refuse_worse"
    by_name = {c["name"]: c for c in explained["checks"]}
    assert by_name["primary:accuracy"]["outcome"] == "pass"  # better overall ...
    assert by_name["slice:weather=fog:accuracy"]["outcome"] == "fail_worse"  # ... but not in the fog
    assert by_name["slice:weather=clear:accuracy"]["outcome"] == "pass"
    assert "slice:weather=fog" in refused(scenario, v2)


def test_equal_models_are_not_enough_evidence(scenario):
    v1 = scenario.first_release(model="strong")
    v2 = scenario.version()
    scenario.evidence(v2, v1, candidate_model="strong", baseline_model="strong")
    message = refused(scenario, v2)  # the same model twice: no row where exactly one of them is right
    assert "not enough evidence to tell" in message and "0 discordant pairs" in message


def test_policy_margin_applies_per_model_pattern(sqlite_server):
    scenario = Scenario(sqlite_server.url, "strict-model")
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.evidence(v2, v1)  # +15 points of accuracy, but the strict policy wants +50
    message = refused(scenario, v2)
    assert "does not improve by the required margin 0.5" in message


def test_explain_changes_nothing_and_history_records_every_decision(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.evidence(v2, v1)
    explained = scenario.gate.explain(scenario.name, v2)
    assert explained["verdict"] == "promote" and scenario.production() == (v1, [v1])
    refused_version = scenario.version()
    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
        scenario.client.set_registered_model_alias(scenario.name, "champion", refused_version)
    scenario.gate.promote(scenario.name, v2)
    history = scenario.gate.history(scenario.name)
    assert [(d["action"], d["candidate_version"]) for d in history] == [
        ("promote", v2), ("refuse", refused_version), ("promote", v1)
    ]
    latest = history[0]
    assert latest["baseline_version"] == v1 and latest["evidence_run_ids"] and len(latest["policy_hash"]) == 64
    assert latest["replaced"] == {"alias 'champion'": v1, "stage Production": [v1]}
    assert {c["name"] for c in latest["checks"]} >= {"evidence", "primary:accuracy", "secondary:log_loss"}


def test_override_needs_a_reason_and_is_audited(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    with pytest.raises(GatekeeperError, match="needs --reason"):
        scenario.gate.promote(scenario.name, v2, force=True)
    scenario.gate.promote(scenario.name, v2, force=True, reason="hotfix for incident 42")
    assert scenario.production() == (v2, [v2])
    record = scenario.gate.history(scenario.name)[0]
    assert record["action"] == "override" and record["verdict"] == "refuse_insufficient_evidence"
    assert "hotfix for incident 42" in record["reasons"][0]
    assert scenario.client.get_model_version(scenario.name, v1).current_stage == "Archived"


def test_overrides_can_be_forbidden_by_policy(sqlite_server):
    scenario = Scenario(sqlite_server.url, "no-override-model")
    scenario.first_release()
    v2 = scenario.version()
    with pytest.raises(PromotionRefused, match="does not allow overrides"):
        scenario.gate.promote(scenario.name, v2, force=True, reason="please")


def test_rollback_restores_the_previous_approved_version(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.evidence(v2, v1)
    scenario.gate.promote(scenario.name, v2)
    result = scenario.gate.rollback(scenario.name, reason="latency regression")
    assert result["verdict"] == "rollback"
    assert scenario.production() == (v1, [v1])
    assert scenario.client.get_model_version(scenario.name, v2).current_stage == "Archived"
    record = scenario.gate.history(scenario.name)[0]
    assert (record["action"], record["candidate_version"], record["baseline_version"]) == ("rollback", v1, v2)


def test_rollback_without_an_earlier_approval_is_a_clear_error(scenario):
    scenario.first_release()
    with pytest.raises(GatekeeperError, match="nothing to roll back to"):
        scenario.gate.rollback(scenario.name)


def _cli(server_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gatekeeper_cli.main", "--tracking-uri", server_url, *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_exit_codes_and_output(sqlite_server, scenario):
    v1 = scenario.first_release()
    v2, v3 = scenario.version(), scenario.version()
    scenario.evidence(v2, v1)
    scenario.evidence(v3, v1, candidate_model="weak", baseline_model="strong")
    explained = _cli(sqlite_server.url, "explain", scenario.name, v2)
    assert explained.returncode == 0, explained.stderr
    assert "[PASS] accuracy:" in explained.stdout and "verdict: promote" in explained.stdout
    worse = _cli(sqlite_server.url, "promote", scenario.name, v3)
    assert worse.returncode == 1 and "the candidate is worse" in worse.stderr
    assert _cli(sqlite_server.url, "promote", scenario.name, v2).returncode == 0
    history = _cli(sqlite_server.url, "history", scenario.name)
    assert history.returncode == 0 and history.stdout.count("\n#") + history.stdout.startswith("#") >= 3
    missing = _cli(sqlite_server.url, "explain", "no-such-model", "1")
    assert missing.returncode == 2 and "not found" in missing.stderr
    bad = _cli(sqlite_server.url, "promote", scenario.name, "abc")
    assert bad.returncode == 2 and "positive integer" in bad.stderr


def test_gate_routes_reject_bad_input_without_a_500(sqlite_server):
    import requests

    for method, route, kwargs in [
        ("POST", "promote", {"data": "not json", "headers": {"Content-Type": "application/json"}}),
        ("POST", "promote", {"json": {"name": "x"}}),
        ("POST", "promote", {"json": {"name": "x", "version": "-1"}}),
        ("GET", "history", {"params": {"name": "x", "limit": "lots"}}),
        ("GET", "explain", {"params": {}}),
    ]:
        response = requests.request(method, f"{sqlite_server.url}/gatekeeper/api/{route}", timeout=30, **kwargs)
        assert response.status_code == 400, (route, response.text)
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_setting_the_alias_to_its_current_holder_changes_nothing(scenario):
    v1 = scenario.first_release()
    before = len(scenario.gate.history(scenario.name))
    scenario.client.set_registered_model_alias(scenario.name, "champion", v1)
    assert len(scenario.gate.history(scenario.name)) == before
    with pytest.raises(MlflowException):
        scenario.client.delete_registered_model_alias(scenario.name, "champion")
