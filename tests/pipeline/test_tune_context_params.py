"""tune shared by two processes on one PostgreSQL study; bad parameters are clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from projects.scenes import generate, save_version

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_two_tune_processes_share_one_postgres_study(tmp_path, postgres_uri_factory):
    import optuna

    version_dir, _ = save_version(generate(600, "summer", seed=4), tmp_path / "data")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "DO_NOT_TRACK": "true"}
    with postgres_uri_factory() as storage:
        command = [sys.executable, "-m", "projects.tune", "--data", str(version_dir), "--trials", "2",
                   "--epochs", "2", "--storage", storage, "--study", "shared"]
        # Create the MLflow database once so the two processes do not race on its initial migration.
        subprocess.run([sys.executable, "-c", "import mlflow; mlflow.MlflowClient().search_experiments()"],
                       env=env, check=True, cwd=ROOT, timeout=120)
        workers = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(2)]
        outputs = [w.communicate(timeout=600) for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        study = optuna.load_study(study_name="shared", storage=storage)
        assert len(study.trials) == 4  # both processes added their trials to one study
        assert len({t.number for t in study.trials}) == 4
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(search_all_experiments=True)
    parents = runs[runs["tags.mlflow.runName"] == "tune shared"]
    trials = runs[runs["tags.mlflow.runName"].str.startswith("trial ")]
    assert len(parents) == 2 and len(trials) == 4
    assert set(trials["tags.mlflow.parentRunId"]) == set(parents["run_id"])
    assert set(trials["tags.trial_state"]) <= {"COMPLETE", "PRUNED"}
    assert trials["params.lr"].notna().all()


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("projects.retrain", ["--epochs", "abc"], "argument --epochs: expected an integer >= 1, got 'abc'"),
        ("projects.retrain", ["--train-size", "2.5"], "argument --train-size: expected an integer >= 100"),
        ("projects.retrain", ["--mix", "winter"], "unknown mix 'winter'"),
        ("projects.tune", ["--data", "x", "--trials", "0"], "argument --trials: expected an integer >= 1"),
        ("projects.tune", ["--data", "x", "--storage", "redis://x"], "storage must be an optuna RDB URL"),
        ("projects.evaluate", ["--model", "m", "--data", "d", "--label", "y", "--task", "ranking"], "invalid choice"),
    ],
)
def test_bad_parameters_are_clear_errors(module, args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_mlflow_run_rejects_a_bad_float_parameter(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "retrain", "--env-manager", "local",
         "-P", "epochs=2.5"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db",
             "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert result.returncode != 0
    assert "argument --epochs: expected an integer >= 1, got '2.5'" in result.stderr
