"""Training the road-scenes CNN: real torch, real MLflow on a throw-away sqlite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from projects import scenes
from projects.datasets import DataError, content_hash, find_dataset_input
from registry_hooks.contract import INPUT_TAG_CONTENT_HASH

torch = pytest.importorskip("torch")
mlflow = pytest.importorskip("mlflow")

from projects.model import PROBABILITY_COLUMNS, RoadSceneNet, predict_proba  # noqa: E402
from projects.served import LOG_PARAM  # noqa: E402
from projects.train import EarlyStopping, fit, train  # noqa: E402
from projects.train_config import Hyperparameters, Runtime, Tracking, TrainConfig  # noqa: E402
from tests.support.tracking import tracking_at  # noqa: E402

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
HYPERPARAMETERS = ("epochs", "lr", "batch_size", "width", "dropout", "weight_decay", "patience", "val_fraction", "seed", "hflip")


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One sqlite tracking + registry store for this module (creating one costs 1-3 s), with an
    experiment whose artifacts stay in a temporary directory. Tests use distinct model names."""
    root = tmp_path_factory.mktemp("mlflow")
    with tracking_at(f"sqlite:///{root / 'mlflow.db'}", "pipeline-tests", root / "artifacts") as (patch, _):
        patch.setenv("DO_NOT_TRACK", "true")
        yield mlflow.MlflowClient()


def _runs(client) -> int:
    return len(client.search_runs([mlflow.get_experiment_by_name("pipeline-tests").experiment_id]))


@pytest.fixture(scope="module")
def small_version(tmp_path_factory):
    """A stored data-set version of 400 summer-like scenes with enough of every class."""
    mix = scenes.Mix("tiny", {c: 0.25 for c in scenes.CLASS_NAMES}, {"clear": 0.8, "rain": 0.2}, {"day": 0.75, "night": 0.25})
    df = scenes.generate(400, mix, seed=7)
    path, manifest = scenes.save_version(df, tmp_path_factory.mktemp("versions"))
    return df, path, manifest


def test_train_logs_registers_and_the_pyfunc_model_serves_probabilities(tracking, small_version):
    df, path, manifest = small_version
    config = TrainConfig(Hyperparameters(epochs=2, patience=5, batch_size=64, width=8, seed=1), Tracking(registered_model="road-scenes"), Runtime(progress=False))
    result = train(path, config)

    assert result.epochs_run == 2 and result.stop_reason == "epochs"
    assert 0.0 <= result.best_val_accuracy <= 1.0 and result.best_epoch in (0, 1)
    run = tracking.get_run(result.run_id)
    params = run.data.params
    assert set(HYPERPARAMETERS) <= set(params)
    assert (params["epochs"], params["lr"], params["batch_size"], params["width"], params["seed"]) == ("2", "0.003", "64", "8", "1")
    assert int(params["n_train"]) + int(params["n_val"]) == len(df) and params["device"] in ("cpu", "cuda")
    for key in ("train_loss", "val_loss", "val_accuracy"):
        history = tracking.get_metric_history(result.run_id, key)
        assert [m.step for m in history] == [0, 1], key
    assert run.data.metrics["best_val_accuracy"] == pytest.approx(result.best_val_accuracy)
    assert run.data.metrics["epochs_run"] == 2
    assert "val_recall_green_cone" in run.data.metrics

    logged = find_dataset_input(result.run_id, "training")
    assert logged is not None and logged.content_hash == content_hash(df) == manifest["content_hash"] == result.data_hash
    assert logged.source == str((path / scenes.DATA_FILE).resolve()) and logged.n_rows == len(df)
    assert logged.name == "road-scenes"
    dataset_tags = {t.key: t.value for t in run.inputs.dataset_inputs[0].tags}
    assert dataset_tags[INPUT_TAG_CONTENT_HASH] == manifest["content_hash"]
    assert mlflow.artifacts.load_dict(f"runs:/{result.run_id}/data/manifest.json") == manifest

    assert result.version == 1 and result.registered_model == "road-scenes"
    version = tracking.get_model_version("road-scenes", "1")
    assert version.run_id == result.run_id

    model = mlflow.pyfunc.load_model(f"models:/road-scenes/{result.version}")
    head = df.head(50)
    served = model.predict(head[scenes.PIXEL_COLUMNS])  # the serving wrapper: a frame, p_<class> per class
    probs = served[PROBABILITY_COLUMNS].to_numpy()
    assert probs.shape == (50, len(scenes.CLASS_NAMES))
    assert list(served["prediction"]) == [scenes.CLASS_NAMES[k] for k in probs.argmax(axis=1)]
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # the served graph is the trained network, and predict_proba takes a whole table
    np.testing.assert_allclose(probs, predict_proba(result.model, head), atol=1e-5)
    np.testing.assert_allclose(predict_proba(model, head, batch_size=16), probs, atol=1e-6)
    assert LOG_PARAM in {spec.name for spec in model.metadata.get_params_schema().params}


def test_nested_run_and_callback_stop(tracking, small_version):
    # a table no other test logs: MLflow keeps one dataset per (name, digest) and experiment,
    # with the source it was first logged with
    df = small_version[0].head(300)
    seen = []

    def stop_now(epoch, val_loss, val_accuracy):
        seen.append((epoch, val_loss, val_accuracy))
        return True

    with mlflow.start_run(run_name="retrain") as parent:
        config = TrainConfig(Hyperparameters(epochs=5, width=8), Tracking(registered_model=None, log_model=False), Runtime(progress=False))
        result = train(df, config, on_epoch=stop_now)
        assert mlflow.active_run().info.run_id == parent.info.run_id  # the parent is active again
    child = tracking.get_run(result.run_id)
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.experiment_id == parent.info.experiment_id
    assert child.data.tags["stop_reason"] == "callback"
    assert result.epochs_run == 1 and result.stop_reason == "callback" and len(seen) == 1
    assert seen[0][0] == 0 and seen[0][2] == pytest.approx(result.best_val_accuracy)
    assert result.model_uri is None and result.version is None
    assert find_dataset_input(result.run_id, "training").source == "in-memory"


def test_invalid_input_fails_before_any_run_is_created(tracking, small_version):
    before = _runs(tracking)
    with pytest.raises(ValueError, match="lr must be > 0"):
        train(small_version[0], TrainConfig(Hyperparameters(lr=-0.1)))
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        train(small_version[0], TrainConfig(Hyperparameters(val_fraction=1.0)))
    with pytest.raises(DataError, match="not a scenes table"):
        train(small_version[0][["row_id", "label"]])
    assert _runs(tracking) == before


def _tensors(n=256, seed=0):
    df = scenes.generate(n, "augmented", seed=seed)
    x = torch.from_numpy(scenes.pixels(df))
    y = torch.from_numpy(df["label"].to_numpy())
    return x[: n // 2], y[: n // 2], x[n // 2 :], y[n // 2 :]


def _fit(data, seed, **overrides):
    from projects.train import seed_everything

    hyperparameters = Hyperparameters(epochs=2, batch_size=32, width=4, seed=seed, **overrides)
    seed_everything(seed)
    model = RoadSceneNet(width=hyperparameters.width)
    outcome = fit(model, data[:2], data[2:], hyperparameters, device=torch.device("cpu"), progress=False)
    return model, outcome


def test_training_is_deterministic_for_a_seed():
    data = _tensors()
    model_a, outcome_a = _fit(data, seed=3)
    model_b, outcome_b = _fit(data, seed=3)
    model_c, outcome_c = _fit(data, seed=4)
    assert outcome_a["history"][-1]["val_loss"] == outcome_b["history"][-1]["val_loss"]
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name
    assert outcome_c["history"][-1]["train_loss"] != outcome_a["history"][-1]["train_loss"]


def test_early_stopping_restores_the_best_weights(monkeypatch):
    import projects.train as train_module

    scripted = iter([1.0, 0.5, 0.8, 0.9, 0.4, 0.3])  # best at epoch 1, then two bad epochs
    real_scores = train_module.loss_accuracy_predictions

    def scripted_scores(model, x, y, batch_size=1024):
        _, accuracy, pred = real_scores(model, x, y, batch_size)
        return next(scripted), accuracy, pred

    snapshots = {}
    model = RoadSceneNet(width=4)

    def snapshot(epoch, val_loss, val_accuracy):
        snapshots[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        return False

    monkeypatch.setattr(train_module, "loss_accuracy_predictions", scripted_scores)
    data = _tensors(128)
    hyperparameters = Hyperparameters(epochs=6, patience=2, batch_size=32, width=4)
    outcome = fit(model, data[:2], data[2:], hyperparameters, on_epoch=snapshot, progress=False)
    assert outcome["stop_reason"] == "patience" and outcome["epochs_run"] == 4
    assert outcome["best_epoch"] == 1 and outcome["best_val_loss"] == 0.5
    restored = model.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in snapshots[1].items())
    assert not all(torch.equal(restored[k], v) for k, v in snapshots[3].items())


def test_early_stopping_counts_like_keras():
    stopper = EarlyStopping(patience=0)
    assert stopper.step(0, 1.0) and not stopper.should_stop
    assert not stopper.step(1, 1.0) and stopper.should_stop
    stopper = EarlyStopping(patience=2)
    for epoch, loss in enumerate([1.0, 0.9, 0.95]):
        stopper.step(epoch, loss)
    assert not stopper.should_stop
    stopper.step(3, 0.91)
    assert stopper.should_stop and stopper.best_epoch == 1


def test_cli_trains_and_prints_the_result(tracking, small_version, capsys):
    from projects.train import main

    path = small_version[1]
    code = main(["--data", str(path / scenes.DATA_FILE), "--registered-model", "cli-model", "--epochs", "1", "--width", "4", "--experiment", "pipeline-tests", "--no-progress"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["version"] == 1 and result["registered_model"] == "cli-model" and result["epochs_run"] == 1
    assert tracking.get_model_version("cli-model", "1").run_id == result["run_id"]
    assert tracking.get_run(result["run_id"]).data.params["width"] == "4"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "-0.01"], "argument --lr: '-0.01' is not a number > 0"),
        (["--lr", "nan"], "argument --lr: 'nan' is not a number > 0"),
        (["--val-fraction", "1.5"], "argument --val-fraction: '1.5' is not a number in (0, 1)"),
        (["--val-fraction", "0"], "argument --val-fraction: '0' is not a number in (0, 1)"),
        (["--epochs", "0"], "argument --epochs: '0' is not an integer >= 1"),
        (["--batch-size", "ten"], "argument --batch-size: 'ten' is not an integer >= 1"),
        (["--device", "tpu"], "'tpu' is not a device"),
        (["--data", "no/such/file.parquet"], "argument --data: data file not found: no/such/file.parquet"),
    ],
)
def test_cli_rejects_bad_parameters(small_version, args, message):
    data = ["--data", str(small_version[1])] if "--data" not in args else []
    proc = subprocess.run(
        [sys.executable, "-m", "projects.train", *data, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""
