"""Every ``MLproject`` entry point through the real ``mlflow run . -e NAME --env-manager local`` CLI.

Each runs in its own ``mlflow run`` process on a throw-away SQLite store, with the smallest sizes
that still exercise its code, and nothing prepared beforehand that a fresh clone would lack (data is
made by the ``scenes`` entry point, or by ``tune`` / ``retrain`` themselves). Float parameters are
given as a user may type them (``lr=3e-3``, ``epochs=1.0``): the project's run keeps them as typed,
so a job that logged its own params into that run would be refused ("Changing param values is
not allowed"). Every output is checked for that refusal and for the run-context provider failing
to register.

``retrain`` (and ``tune``, whose training set its test compares with) runs again on a fresh
PostgreSQL database: its promotion goes through the gated store in-process, code of this project
that differs by database. The other entry points reach only MLflow's own tracking store, the same
code on both; the rest of this project's database code runs on PostgreSQL in tests/gate (the
gate, the verifier) and tests/pipeline (test_story, test_autopilot, test_tune_context_params).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from projects import inference_log
from projects.scenes import generate, save_version
from registry_hooks.contract import TAG_DATASET_VERSION, TAG_GIT_COMMIT, TAG_PIPELINE_STEP
from tests.pipeline.test_run_context import REGISTRATION_FAILURE, is_commit_of_this_repository

mlflow = pytest.importorskip("mlflow")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
TESTED = {"scenes", "train", "tune", "evaluate", "drift", "retrain", "mine", "curate", "autopilot"}  # autopilot: also tests/pipeline/test_autopilot.py
MODEL = "entry-points"
_RUN_ID = re.compile(r"in run with ID '([0-9a-f]+)'")


@dataclass
class Project:
    """``mlflow run`` of this repository against one tracking store and experiment."""

    root: Path
    uri: str
    experiment_id: str

    @property
    def client(self):
        return mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def run(self, entry_point: str, **params) -> tuple:
        """Run it; returns the project's run (finished), its stdout and all its output, once checked."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MLFLOW_", "GATEKEEPER_", "PYTEST_"))}
        env.update(MLFLOW_TRACKING_URI=self.uri, DO_NOT_TRACK="true", PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
        command = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", entry_point, "--env-manager", "local",
                   "--experiment-id", self.experiment_id, *[a for k, v in params.items() for a in ("-P", f"{k}={v}")]]
        result = subprocess.run(command, cwd=self.root, env=env, capture_output=True, text=True, timeout=540)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-6000:]
        assert REGISTRATION_FAILURE not in output and "Changing param values" not in output, output[-6000:]
        run = self.client.get_run(_RUN_ID.search(output).group(1))
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.project.entryPoint"] == entry_point
        assert all(run.data.params[k] == str(v) for k, v in params.items())  # as typed: "3e-3", "1.0"
        return run, result.stdout, output

    def children(self, run) -> dict:
        """The runs whose parent is ``run``, by run name."""
        found = self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
        return {child.info.run_name: child for child in found}

    def load_json(self, run, path: str) -> dict:
        return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{path}")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    """The embedded SQLite default."""
    root = tmp_path_factory.mktemp("entry-points-sqlite")
    return _project(root, f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def project_per_store(request, tmp_path_factory):
    """``project``, then the same runs on PostgreSQL (a database per run)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("project")
        return
    with request.getfixturevalue("postgres_uri_factory")() as uri:
        yield _project(tmp_path_factory.mktemp("entry-points-postgres"), uri)


def _project(root: Path, uri: str) -> Project:
    experiment_id = mlflow.MlflowClient(tracking_uri=uri).create_experiment(
        "entry-points", artifact_location=(root / "artifacts").as_uri())
    return Project(root, uri, experiment_id)


@pytest.fixture(scope="module")
def scenes_run(project):
    out = project.root / "scenes"
    run, stdout, _ = project.run("scenes", n="200.0", mix="summer", seed=3, out=out)
    return run, Path(json.loads(stdout[stdout.index("{"):stdout.rindex("}") + 1])["path"])


@pytest.fixture(scope="module")
def window(project) -> Path:
    """A rainy-season data-set version, as a window of production data (not what is tested here)."""
    return save_version(generate(200, "rainy_season", seed=5), project.root / "windows")[0]


@pytest.fixture(scope="module")
def train_run(project, scenes_run):
    return project.run("train", data=scenes_run[1], registered_model=MODEL, epochs=1, lr="3e-3", batch_size=64,
                       width=4)[0]


def test_every_entry_point_is_tested_here():
    assert set(yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]) == TESTED


def test_scenes_writes_a_version_and_the_project_run_names_it(project, scenes_run):
    run, version = scenes_run
    manifest = json.loads((version / "manifest.json").read_text())
    assert version.parent == project.root / "scenes" and version.name == manifest["content_hash"]
    assert (manifest["n"], manifest["mix"]["name"], manifest["seed"]) == (200, "summer", 3)
    assert (version / "data.parquet").is_file()
    assert run.data.tags[TAG_DATASET_VERSION] == manifest["content_hash"]
    assert project.load_json(run, "data/manifest.json") == manifest


def test_train_logs_a_child_run_and_registers_its_model(project, scenes_run, train_run):
    manifest = json.loads((scenes_run[1] / "manifest.json").read_text())
    child = project.children(train_run)["train"]
    assert child.info.status == "FINISHED"
    assert (child.data.params["lr"], child.data.params["epochs"], child.data.params["width"]) == ("0.003", "1", "4")
    assert 0 <= child.data.metrics["best_val_accuracy"] <= 1 and child.data.metrics["epochs_run"] == 1
    assert project.load_json(child, "data/manifest.json") == manifest
    (dataset_input,) = child.inputs.dataset_inputs
    assert {t.key: t.value for t in dataset_input.tags}["gatekeeper.content_hash"] == manifest["content_hash"]
    version = project.client.get_model_version(MODEL, "1")
    assert version.run_id == child.info.run_id


def test_evaluate_scores_a_version_directory_and_logs_evidence(project, train_run, window):
    run, _, output = project.run("evaluate", model=f"models:/{MODEL}/1", data=window, label="label", slices="weather")
    child = project.children(run)[f"evaluate {MODEL} v1"]
    assert 0 <= child.data.metrics["accuracy"] <= 1 and "slice/weather:rain/accuracy" in child.data.metrics
    evidence = project.load_json(child, "gatekeeper/evidence.json")
    manifest = json.loads((window / "manifest.json").read_text())
    assert evidence["candidate"] == {"name": MODEL, "version": "1"} and evidence["baseline"] is None
    assert (evidence["data"]["content_hash"], evidence["data"]["n_rows"]) == (manifest["content_hash"], 200)
    assert f"{MODEL} v1 vs no production version (first release) on 200 rows" in output and "gate preview:" in output


def test_drift_takes_a_version_directory_and_compares_it_with_the_training_set(project, scenes_run, train_run, window):
    run, _, _ = project.run("drift", model=f"models:/{MODEL}/1", current=window, columns="weather,light,img_brightness")
    child = project.children(run)[f"drift-{MODEL}-v1"]
    assert child.data.tags["gatekeeper.drift"] == "1"
    assert child.data.params["drift.current"] == str((window / "data.parquet").resolve())
    assert child.data.metrics["n_columns"] == 3
    summary = project.load_json(child, "gatekeeper/drift.json")
    hashes = {side: json.loads((path / "manifest.json").read_text())["content_hash"]
              for side, path in (("current", window), ("reference", scenes_run[1]))}
    assert {side: summary[side]["content_hash"] for side in hashes} == hashes
    assert "gatekeeper/drift_report.html" in [f.path for f in project.client.list_artifacts(child.info.run_id, "gatekeeper")]


def test_autopilot_without_a_gated_server_says_what_it_needs(project):
    """Its runs through a gated server are in tests/pipeline/test_autopilot.py; on a bare store the
    lease and the feedback have nowhere to live, and it says so before doing anything."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GATEKEEPER_", "PYTEST_"))}
    env.update(MLFLOW_TRACKING_URI=project.uri, DO_NOT_TRACK="true", PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    result = subprocess.run([sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "autopilot", "--env-manager", "local",
                             "--experiment-id", project.experiment_id, "-P", "simulate_weeks=2"],
                            cwd=project.root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "autopilot: needs a gated server (MLFLOW_TRACKING_URI=http://…)" in result.stderr


def test_mine_queues_what_the_registered_model_logged_while_serving(project, train_run, window, monkeypatch):
    log = project.root / "inference-log"
    monkeypatch.setenv(inference_log.LOG_ENV, str(log))
    monkeypatch.setenv(inference_log.INPUTS_ENV, "full")  # the pixels too: mining shadow-scores the candidate on them
    served = mlflow.pyfunc.load_model(project.client.get_model_version_download_uri(MODEL, "1"))
    served.predict(pd.read_parquet(window / "data.parquet"))  # 200 predictions, as traffic
    inference_log.close_all()
    run, stdout, _ = project.run("mine", registered_model=MODEL, log=log, feedback="none", window_days="1.0",
                                 budget="0.1", min_support=20, out=project.root / "queues")
    child = project.children(run)["mine"]
    assert (child.data.metrics["window_rows"], child.data.metrics["queue_rows"]) == (200, 20)
    assert f"candidate models:/{MODEL}/1 scored in the shadow on 200 row(s)" in stdout  # no champion: v1 is newer
    (queue,) = (project.root / "queues").iterdir()
    assert child.data.params["queue"] == queue.name and len(pd.read_parquet(queue / "queue.parquet")) == 20


@pytest.fixture(scope="module")
def tune_run(project_per_store):
    project = project_per_store
    return project.run("tune", trials=2, epochs="1.0", train_size=100, data_dir=project.root / "tune-data")[0]


def test_tune_without_data_builds_retrains_training_set_and_nests_its_trials(project_per_store, tune_run):
    project = project_per_store
    (version,) = (project.root / "tune-data" / "train").iterdir()
    manifest = json.loads((version / "manifest.json").read_text())
    assert (manifest["n"], manifest["mix"]["name"], manifest["seed"]) == (100, "summer", 0)
    study = project.children(tune_run)["tune road-scenes"]
    assert study.data.params["storage"] == "memory" != tune_run.data.params["storage"]  # clashed before: "''"
    assert study.data.params["epochs"] == "1" and "best_val_accuracy" in study.data.metrics
    trials = project.children(study)
    assert set(trials) == {"trial 0", "trial 1"}
    assert {t.data.tags["trial_state"] for t in trials.values()} <= {"COMPLETE", "PRUNED"}
    for trial in trials.values():
        (dataset_input,) = trial.inputs.dataset_inputs
        assert {t.key: t.value for t in dataset_input.tags}["gatekeeper.content_hash"] == manifest["content_hash"]


def test_retrain_steps_carry_the_run_context_tags(project_per_store, tune_run):
    project = project_per_store
    run, _, output = project.run("retrain", registered_model=f"{MODEL}-retrain", train_size=100, eval_size=100,
                              window_size=100, epochs="1.0", data_dir=project.root / "retrain-data")
    cycle = project.children(run)[f"retrain {MODEL}-retrain"]
    assert cycle.data.params["epochs"] == "1"
    assert cycle.data.tags["gatekeeper.verdict"] in ("promote", "refuse_worse", "refuse_insufficient_evidence")
    assert "=== retrain summary ===" in output
    steps = project.children(cycle)
    assert set(steps) == {"train", f"drift-{MODEL}-retrain-v1", f"evaluate {MODEL}-retrain v1"}
    dataset = cycle.data.tags[TAG_DATASET_VERSION]
    for name, step in steps.items():
        tags = step.data.tags
        assert name.startswith(tags[TAG_PIPELINE_STEP]) and tags[TAG_DATASET_VERSION] == dataset, (name, tags)
        assert is_commit_of_this_repository(tags[TAG_GIT_COMMIT]), tags[TAG_GIT_COMMIT]
    # tune's default data is the very training set retrain builds with the same mix, size and seed
    (tuned,) = (project.root / "tune-data" / "train").iterdir()
    assert tuned.name == dataset


def test_curate_adds_the_labelled_queue_rows_to_a_new_training_version(project):
    """Without a gate: labels from a file (a correction in it), no hard-case set; its own queue and base."""
    from projects.mine.run import write_queue
    from tests.unit.test_curate import make_queue

    incoming = generate(6, "rainy_season", seed=8)
    queue = make_queue(incoming, [None] * 6, slices={2: "weather=rain"})
    folder = write_queue(queue, {"registered_model": MODEL, "window": {"start": "2026-12-04T00:00:00+00:00",
                                                                       "end": "2026-12-05T00:00:00+00:00"}},
                         project.root / "curate-queues")
    labels = pd.DataFrame({"request_id": ["req-0", "req-0", "req-1", "req-2", "req-3", "req-4"],
                           "label": ["nothing", *incoming["label_name"][:5]], "revision": [1, 2, 1, 1, 1, 1]})
    labels.to_csv(project.root / "labels.csv", index=False)
    base, _ = save_version(generate(40, "summer", seed=6), project.root / "curate-base")
    run, stdout, _ = project.run("curate", queue=folder, base=base, registered_model=MODEL, feedback=project.root / "labels.csv",
                                 out=project.root / "curated", hard_cases="none", min_labels="2.0")
    child = project.children(run)["curate"]
    assert (child.data.metrics["rows_added"], child.data.metrics["rows_skipped_unlabelled"]) == (5, 1)
    assert child.data.metrics["training_rows"] == 45 and child.data.params["min_labels"] == "2"
    (version,) = (project.root / "curated").iterdir()
    assert stdout.strip().splitlines()[-1] == f"curated: {version}"
    assert run.data.tags[TAG_DATASET_VERSION] == child.data.tags[TAG_DATASET_VERSION] == version.name
    manifest = project.load_json(child, "data/manifest.json")
    assert manifest["curation"]["added"]["by_label"] == dict(sorted(incoming["label_name"][:5].value_counts().items()))
    assert "hard_cases=none: no hard-case set registered" in stdout
    contexts = {{t.key: t.value for t in d.tags}["mlflow.data.context"] for d in child.inputs.dataset_inputs}
    assert contexts == {"base", "queue", "training"}
