"""``python -m projects.mine`` reading the feedback people gave through a real gated server.

The unit tests (``tests/unit/test_mine_*.py``) prove each reason on constructed windows; this one
proves the join that matters in production: flags and labels posted to
``/gatekeeper/api/feedback`` reach the miner, flagged predictions head the queue, and labelled
ones the model found unlikely come back as high-loss rows — with the run logged on the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from benchmarks.servers import MlflowServer
from gatekeeper_cli.client import GatekeeperClient
from registry_hooks.inference_records import LOG_ENV
from tests.support.traffic import CLASSES, predictions

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory, gate_policy):
    workdir = tmp_path_factory.mktemp("mine-gate")
    with MlflowServer(workdir, f"sqlite:///{workdir}/mlflow.db", policy=gate_policy,
                      env={LOG_ENV: str(workdir / "log")}) as running:
        yield running


def test_flags_and_labels_given_through_the_gate_steer_the_queue(server, tmp_path: Path):
    traffic = predictions(server.url, server.env[LOG_ENV], "mined", n=600, caller_ids=0)
    gate = GatekeeperClient(server.url)
    flagged = {traffic.ids[0]: "unsure", traffic.ids[1]: "wrong", traffic.ids[2]: "wrong"}
    # labelled rows whose label is a class the model did not predict: each has a real loss
    wrong_labels = {i: next(c for c in CLASSES if c != traffic.predicted[k]) for k, i in enumerate(traffic.ids[10:40], 10)}
    items = [{"request_id": i, "flag": f} for i, f in flagged.items()] + \
            [{"request_id": i, "label": label} for i, label in wrong_labels.items()]
    assert gate.submit_feedback("mined", items)["created"] == len(items)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTEST_"))}
    env.update(MLFLOW_TRACKING_URI=server.url, MLFLOW_EXPERIMENT_NAME="mining", DO_NOT_TRACK="true")
    out = tmp_path / "queues"
    result = subprocess.run([sys.executable, "-m", "projects.mine", "--registered-model", "mined", "--window-days", "1",
                             "--candidate", "none", "--log", server.env[LOG_ENV], "--out", str(out), "--budget", "0.05"],
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    [folder] = out.iterdir()
    queue = pd.read_parquet(folder / "queue.parquet")
    assert len(queue) == 30  # ceil(0.05 x 600)
    head = queue.head(3)
    assert set(head["request_id"]) == set(flagged)
    assert list(head["flag"]) == ["wrong", "wrong", "unsure"] and head["reason_flag"].all()
    lossy = queue[queue["reason_high_loss"]]
    assert len(lossy) > 0 and set(lossy["request_id"]) <= set(wrong_labels)
    assert (lossy["label"] == lossy["request_id"].map(wrong_labels)).all()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["feedback"] == {"source": "gate", "requests": len(items)}

    client = MlflowClient(server.url)
    [run] = client.search_runs([client.get_experiment_by_name("mining").experiment_id], "attributes.run_name = 'mine'")
    assert run.data.metrics["reason_flag_rows"] == 3 and run.data.metrics["window_rows"] == 600
    assert run.data.params["queue"] == folder.name
