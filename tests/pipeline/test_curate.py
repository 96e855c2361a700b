"""``python -m projects.curate`` on a queue ``python -m projects.mine`` made, against a real gated server.

The unit tests (``tests/unit/test_curate.py``) prove each rule on constructed queues; this one
proves the loop between the processes: predictions logged with their pixels are mined into a
queue, people label the queue through ``/gatekeeper/api/feedback`` *after* mining (one label
corrected), and curation fetches those labels from the gate, writes the new training-set version
and registers the next version of the hard-case set, which already held a window ``retrain``
registered: a failure found once is tested forever.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from benchmarks.servers import MlflowServer
from gatekeeper_cli.client import GatekeeperClient
from gatekeeper_cli.sets import register
from projects.inference_log import Batch, LogConfig, Writer
from projects.scenes import CLASS_NAMES, generate, load_version, pixels, save_version
from registry_hooks.inference_records import LOG_ENV, new_request_id
from tests.support.traffic import register as register_model

pytestmark = pytest.mark.timeout(300)
MODEL = "curated"


@pytest.fixture(scope="module")
def server(tmp_path_factory, gate_policy):
    workdir = tmp_path_factory.mktemp("curate-gate")
    with MlflowServer(workdir, f"sqlite:///{workdir}/mlflow.db", policy=gate_policy,
                      env={LOG_ENV: str(workdir / "log")}) as running:
        yield running


def serve(url: str, log_root: str, scenes: pd.DataFrame) -> list[str]:
    """``scenes`` as predictions of ``MODEL``'s version 1, logged with their pixels (as
    ``GATEKEEPER_LOG_INPUTS=full`` does): unsure at night in the rain, sure elsewhere."""
    run_id = register_model(url, MODEL)
    now = dt.datetime.now(dt.timezone.utc)
    ids = [new_request_id(now) for _ in range(len(scenes))]
    hard = ((scenes["weather"] == "rain") & (scenes["light"] == "night")).to_numpy()
    confidence = np.where(hard, 0.3, 0.95)
    rest = (1 - confidence) / (len(CLASS_NAMES) - 1)
    p = np.repeat(rest[:, None], len(CLASS_NAMES), axis=1)
    guess = np.where(hard, CLASS_NAMES.index("nothing"), scenes["label"].to_numpy())
    p[np.arange(len(scenes)), guess] = confidence
    columns = {"request_id": np.asarray(ids, dtype=object), "prediction": np.asarray(CLASS_NAMES, dtype=object)[guess],
               "confidence": confidence, **{f"p_{c}": p[:, k] for k, c in enumerate(CLASS_NAMES)},
               "weather": scenes["weather"].to_numpy(), "light": scenes["light"].to_numpy()}
    writer = Writer(LogConfig(log_root, inputs="full"))
    writer.submit(Batch(now, columns, pixels(scenes), {"model_run_id": run_id, "model_id": ""}))
    writer.close()
    return ids


def python(module: str, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTEST_"))}
    env.update(MLFLOW_TRACKING_URI=url, MLFLOW_EXPERIMENT_NAME="curation", DO_NOT_TRACK="true")
    result = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_labels_given_after_mining_become_a_training_version_and_hard_cases(server, tmp_path: Path):
    scenes = generate(240, "rainy_season", seed=4)
    ids = serve(server.url, server.env[LOG_ENV], scenes)
    truth = dict(zip(ids, scenes["label_name"]))
    python("projects.mine", server.url, "--registered-model", MODEL, "--window-days", "1", "--candidate", "none",
           "--log", server.env[LOG_ENV], "--out", str(tmp_path / "queues"), "--budget", "0.2", "--min-support", "10")
    [folder] = (tmp_path / "queues").iterdir()
    queue = pd.read_parquet(folder / "queue.parquet")
    assert queue["label"].isna().all() and queue["reason_slice"].any()  # nobody had labelled anything yet

    gate = GatekeeperClient(server.url)
    labelled, corrected = list(queue["request_id"])[:-4], queue["request_id"].iloc[0]  # 4 left unlabelled
    wrong = next(c for c in CLASS_NAMES if c != truth[corrected])
    gate.submit_feedback(MODEL, [{"request_id": corrected, "label": wrong}])
    gate.submit_feedback(MODEL, [{"request_id": i, "label": truth[i]} for i in labelled])  # corrects the first
    window, _ = save_version(generate(20, "rainy_season", seed=30), tmp_path / "windows")
    register(gate, "hard-cases", str(window), "label", "a production window the drift report flagged")
    base, _ = save_version(generate(50, "summer", seed=1), tmp_path / "data" / "train")

    result = python("projects.curate", server.url, "--queue", str(folder), "--base", str(base),
                    "--registered-model", MODEL, "--out", str(tmp_path / "data" / "train"))
    lines = result.stdout.strip().splitlines()
    report = json.loads(lines[-2])
    assert lines[-1] == f"curated: {report['path']}" and report["changed"] and report["base"] == base.name
    table, manifest = load_version(report["path"])
    added = table.iloc[50:]
    assert len(added) == len(labelled) == report["rows_added"]
    assert dict(zip(added["row_id"], added["label_name"])) == {i: truth[i] for i in labelled}  # the correction won
    curation = manifest["curation"]
    assert curation["queue"]["content_hash"] == folder.name and curation["base"]["content_hash"] == base.name
    assert curation["skipped"] == {"unlabelled": 4, "no_pixels": 0, "duplicate": 0}
    assert curation["feedback"]["source"] == "gate"

    hard = queue[queue["reason_slice"] & queue["request_id"].isin(labelled)]
    versions = gate.sets("hard-cases")
    assert [v["version"] for v in versions] == [2, 1] and report["hard_cases"]["version"] == 2
    assert versions[0]["n_rows"] == 20 + len(hard) and versions[0]["description"].startswith(f"curate: {len(hard)} hard")

    client = MlflowClient(server.url)
    run = client.get_run(report["run_id"])
    assert run.data.metrics["rows_added"] == len(labelled) and run.data.metrics["hard_cases_added"] == len(hard)
    inputs = {{t.key: t.value for t in d.tags}["mlflow.data.context"]: {t.key: t.value for t in d.tags}
              for d in run.inputs.dataset_inputs}
    assert {c: inputs[c]["gatekeeper.content_hash"] for c in ("base", "queue", "training")} == {
        "base": base.name, "queue": folder.name, "training": manifest["content_hash"]}
    assert inputs["hard_cases"]["gatekeeper.content_hash"] == versions[0]["content_hash"]
