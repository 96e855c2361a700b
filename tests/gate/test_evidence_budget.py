"""A server's evidence budget, live: evidence with more rows than a worker may judge is refused
before its outcomes are read, with the numbers and the remedy; evidence under it is judged; the
budget bounds every file one judgement reads, earlier attempts included."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.evidence import Scenario, make_data
from benchmarks.servers import MlflowServer
from gatekeeper_cli.client import PromotionRefused
from registry_hooks.contract import EVIDENCE_MAX_ROWS_ENV

BUDGET = 2000  # rows: the scenario's evaluations (1,500 rows) fit, a 3,000-row one does not


@pytest.fixture(scope="module")
def small_budget_server(tmp_path_factory, gate_policy):
    workdir = tmp_path_factory.mktemp("budget-server")
    with MlflowServer(workdir, f"sqlite:///{workdir}/mlflow.db", policy=gate_policy,
                      env={EVIDENCE_MAX_ROWS_ENV: str(BUDGET)}) as server:
        yield server


def test_evidence_over_the_budget_is_refused_with_its_numbers_and_the_remedy(small_budget_server, model_name):
    scenario = Scenario(small_budget_server.url, model_name)
    v1 = scenario.first_release()  # 1,500 rows: judged
    v2 = scenario.version()
    run_id = scenario.evidence(v2, v1, data=make_data(3000, seed=5), data_name="everything")

    with pytest.raises(PromotionRefused) as info:
        scenario.gate.promote(scenario.name, v2)
    message = str(info.value)
    assert f"evidence run {run_id} is unusable" in message
    assert "3,000 rows" in message and f"{BUDGET:,}" in message and EVIDENCE_MAX_ROWS_ENV in message
    assert "engine=spark" in message and "gatekeeper sets register" in message
    check = next(c for c in scenario.gate.explain(scenario.name, v2)["checks"] if c["name"] == "evidence")
    assert check["outcome"] == "fail_insufficient"
    assert check["numbers"]["rows"] == 3000 and check["numbers"]["max_rows"] == BUDGET
    assert check["numbers"]["run_id"] == run_id and check["numbers"]["bytes_per_row"] > 0
    assert scenario.production() == (v1, [v1])


def test_evidence_under_the_budget_still_promotes(small_budget_server, model_name):
    scenario = Scenario(small_budget_server.url, model_name)
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.evidence(v2, v1)  # 1,500 rows, the strong model against the weak one
    scenario.gate.promote(scenario.name, v2)
    assert scenario.production() == (v2, [v2])


def test_the_budget_bounds_every_file_a_judgement_reads(small_budget_server, model_name):
    scenario = Scenario(small_budget_server.url, model_name)
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.evidence(v2, v1, data=make_data(1200, seed=8), data_name="earlier")  # an earlier attempt: read too
    run_id = scenario.evidence(v2, v1)  # 1,500 rows: under the budget alone, not beside the attempt's 1,200
    with pytest.raises(PromotionRefused) as info:
        scenario.gate.promote(scenario.name, v2)
    message = str(info.value)
    assert f"evidence run {run_id} is unusable" in message
    assert "its 1,500 rows, with the 1,200 of other evidence this judgement reads," in message
    assert scenario.production() == (v1, [v1])


def test_the_server_refuses_to_start_with_a_budget_that_is_not_a_number_of_rows(tmp_path, gate_policy):
    server = MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", policy=gate_policy,
                          env={EVIDENCE_MAX_ROWS_ENV: "4GB"})
    with pytest.raises(RuntimeError, match="mlflow server exited"):
        server.start(timeout=60)
    assert f"{EVIDENCE_MAX_ROWS_ENV} must be a positive number of rows, got '4GB'" in server.log(), server.log()[-3000:]


def test_a_manifest_that_understates_its_rows_cannot_make_a_worker_read_more(small_budget_server, model_name, tmp_path):
    """An editor rewrites a run's manifest to claim 100 rows over an outcomes file of 30,000: the
    row count passes, but the file is bigger than the budget's memory, so it is refused by its size
    before a byte of it is read (its bytes would be held while parsed, whatever the manifest says)."""
    import json

    from mlflow import MlflowClient

    from registry_hooks.contract import EVIDENCE_MANIFEST_PATH, EVIDENCE_OUTCOMES_PATH
    from registry_hooks.outcomes_file import BYTES_PER_ROW

    scenario = Scenario(small_budget_server.url, model_name)
    v1 = scenario.first_release()
    v2 = scenario.version()
    run_id = scenario.evidence(v2, v1, data=make_data(30_000, seed=9), data_name="everything")
    client = MlflowClient(small_budget_server.url)
    outcomes = Path(client.download_artifacts(run_id, EVIDENCE_OUTCOMES_PATH, str(tmp_path)))
    assert outcomes.stat().st_size > BUDGET * BYTES_PER_ROW  # what makes this test able to fail
    manifest = json.loads(Path(client.download_artifacts(run_id, EVIDENCE_MANIFEST_PATH, str(tmp_path))).read_text())
    manifest["data"]["n_rows"] = 100
    client.log_text(run_id, json.dumps(manifest), EVIDENCE_MANIFEST_PATH)

    with pytest.raises(PromotionRefused) as info:
        scenario.gate.promote(scenario.name, v2)
    message = str(info.value)
    assert f"evidence run {run_id} is unusable" in message
    assert f"{EVIDENCE_OUTCOMES_PATH} is" in message and "MB of a gate worker's evidence budget" in message
    check = next(c for c in scenario.gate.explain(scenario.name, v2)["checks"] if c["name"] == "evidence")
    assert check["numbers"]["file_bytes"] == outcomes.stat().st_size and check["numbers"]["max_rows"] == BUDGET
    assert scenario.production() == (v1, [v1])
