"""``python -m projects.drift`` against a local MLflow store: artifacts, tags, nesting, clear failures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from projects.drift import DriftSummary
from projects.drift.__main__ import main
from registry_hooks.contract import INPUT_TAG_CONTENT_HASH

EXTERNAL = re.compile(r"""<(?:script|link)[^>]+(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)
REPO = Path(__file__).resolve().parents[2]


def run_id_from(stdout: str) -> str:
    match = re.search(r"evidence logged to run ([0-9a-f]{32})", stdout)
    assert match, stdout
    return match.group(1)


def artifact(client, run_id: str, path: str, tmp_path: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text(encoding="utf-8")


def test_cli_logs_the_evidence_against_the_training_dataset(mlflow_store, tmp_path):
    client = mlflow_store["client"]
    result = subprocess.run(
        [sys.executable, "-m", "projects.drift", "--model", "models:/churn/1", "--current", str(mlflow_store["current"]),
         "--label", "y", "--prediction", "pred", "--sample-size", "1000"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "DO_NOT_TRACK": "true"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 of 3 columns drifted" in result.stdout and ": x1" in result.stdout
    run = client.get_run(run_id_from(result.stdout))
    assert run.info.status == "FINISHED"
    assert "mlflow.parentRunId" not in run.data.tags  # no active run, no MLFLOW_RUN_ID: a top-level run
    tags = run.data.tags
    assert (tags["gatekeeper.drift"], tags["gatekeeper.candidate.name"], tags["gatekeeper.candidate.version"]) == ("1", "churn", "1")
    assert run.data.params["drift.reference"] == str(mlflow_store["train"])
    assert run.data.params["drift.label"] == "y" and run.data.params["drift.sample_size"] == "1000"
    metrics = run.data.metrics
    assert metrics["n_drifted"] == 1 and metrics["share_drifted"] == pytest.approx(1 / 3)
    assert metrics["drift/x1/score"] > 0.1 > metrics["drift/x2/score"]
    assert "drift/color/score" in metrics and metrics["dataset_drift"] == 0
    # both tables logged as inputs, the reference being exactly what the training run logged
    training = client.get_run(mlflow_store["train_run_id"]).inputs.dataset_inputs[0]
    training_hash = {t.key: t.value for t in training.tags}[INPUT_TAG_CONTENT_HASH]
    inputs = {}
    for dataset_input in run.inputs.dataset_inputs:
        tag = {t.key: t.value for t in dataset_input.tags}
        inputs[tag["mlflow.data.context"]] = tag[INPUT_TAG_CONTENT_HASH]
    assert set(inputs) == {"reference", "current"} and inputs["reference"] == training_hash
    summary = DriftSummary.from_dict(json.loads(artifact(client, run.info.run_id, "gatekeeper/drift.json", tmp_path)))
    assert (summary.candidate_name, summary.candidate_version) == ("churn", "1")
    assert summary.reference.content_hash == training_hash and summary.current.content_hash == inputs["current"]
    assert summary.drifted_columns == ["x1"] and summary.column("x1").method == "wasserstein"
    assert summary.classification["accuracy"] > 0.5 and summary.classification["n_rows"] == 1000
    page = artifact(client, run.info.run_id, "gatekeeper/drift_report.html", tmp_path)
    assert '<script src="http' not in page and not EXTERNAL.search(page)
    assert "Verdicts on the full data" in page and "x1" in page


def test_cli_nests_under_the_active_run(mlflow_store, capsys):
    with mlflow.start_run(experiment_id=mlflow_store["experiment_id"], run_name="pipeline") as parent:
        code = main(["--model", "models:/churn/1", "--current", str(mlflow_store["current"]),
                     "--reference", str(mlflow_store["train"]), "--columns", "x1,x2", "--sample-size", "500"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    child = mlflow_store["client"].get_run(run_id_from(capsys.readouterr().out))
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.metrics["n_columns"] == 2 and child.data.params["drift.columns"] == "x1,x2"
    assert mlflow.active_run() is None


def test_cli_nests_under_MLFLOW_RUN_ID(mlflow_store, capsys, monkeypatch):
    client = mlflow_store["client"]
    parent = client.create_run(mlflow_store["experiment_id"], run_name="orchestrator")
    monkeypatch.setenv("MLFLOW_RUN_ID", parent.info.run_id)
    code = main(["--model", "models:/churn/1", "--current", str(mlflow_store["current"]), "--sample-size", "500"])
    assert code == 0, capsys.readouterr().err
    child = client.get_run(run_id_from(capsys.readouterr().out))
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.experiment_id == parent.info.experiment_id
    assert os.environ["MLFLOW_RUN_ID"] == parent.info.run_id  # restored for whatever runs next
    assert client.get_run(parent.info.run_id).info.status == "RUNNING"  # the parent is not ours to end


def bad_csv(root: Path) -> str:
    path = root / "latin1.csv"
    path.write_bytes("x1,x2,color\n0.1,0.2,caf\xe9\n".encode("latin-1"))
    return str(path)


def empty_csv(root: Path) -> str:
    path = root / "empty.csv"
    path.write_text("x1,x2,color\n")
    return str(path)


@pytest.mark.parametrize(
    "model, current, message",
    [
        ("models:/bare/1", None,
         "no reference found: the training run of bare/1 logged no training dataset; pass --reference"),
        ("models:/churn/1", bad_csv, "not UTF-8 text: re-save it as UTF-8"),
        ("models:/churn/1", empty_csv, "the current table is empty (0 rows"),
        ("models:/churn/1", lambda root: str(root / "nowhere.parquet"), "data file not found"),
        ("models:/churn/99", None, "model version models:/churn/99 not found in the registry"),
        ("churn/1", None, "--model must look like models:/NAME/VERSION"),
    ],
)  # fmt: skip
def test_cli_bad_input_is_a_clear_error(mlflow_store, capsys, model, current, message):
    current_path = current(mlflow_store["root"]) if current else str(mlflow_store["current"])
    code = main(["--model", model, "--current", current_path])
    captured = capsys.readouterr()
    assert code == 1
    assert message in captured.err and captured.err.startswith("drift check failed: ")
    assert "Traceback" not in captured.err and "evidence logged" not in captured.out


def test_cli_process_fails_without_a_traceback(mlflow_store):
    result = subprocess.run(
        [sys.executable, "-m", "projects.drift", "--model", "models:/churn/1", "--current", bad_csv(mlflow_store["root"])],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "DO_NOT_TRACK": "true"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "drift check failed: cannot load the current table" in result.stderr
    assert "Traceback" not in result.stderr
