"""``evaluate -P engine=spark`` against a real gated server and a real local Spark: on the same file
(Parquet and CSV, 100k rows) the Spark and local engines log the same content hash, the same
outcomes file (the manifest's digest) and get the same verdict, for a scikit-learn and a torch
model; without pyspark, or with a table in memory, ``engine=spark`` is a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.models import infer_signature

from benchmarks.evidence import FEATURES, make_data, models
from gatekeeper_cli.client import GatekeeperClient
from projects.evaluate import EvaluationError, evaluate
from registry_hooks.contract import EVIDENCE_MANIFEST_PATH, TAG_CANDIDATE_NAME, TAG_DATA_HASH

pytest.importorskip("pyspark", reason="the spark extra is part of the test install: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[2]
ROWS = 100_000
PIP = ["scikit-learn", "pandas", "numpy"]


class _Net(torch.nn.Module):
    """A small MLP over the six features, returning class probabilities."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(len(FEATURES), 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def forward(self, x):
        return torch.softmax(self.layers(x.float()), dim=1)  # float64 features, as CSV and Parquet both carry them


def _torch_model() -> torch.nn.Module:
    torch.manual_seed(0)
    train = make_data(4000, seed=1)
    x = torch.tensor(train[FEATURES].to_numpy(), dtype=torch.float32)
    y = torch.tensor(train["label"].to_numpy())
    net = _Net()
    optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        optimiser.zero_grad()
        torch.nn.functional.nll_loss(torch.log(net(x)), y).backward()
        optimiser.step()
    return net.eval()


def _register(name: str, model, flavour: str, columns: list[str] = FEATURES) -> str:
    sample = make_data(50, seed=5)[columns]
    with mlflow.start_run(run_name=f"train {name} ({flavour})"):
        if flavour == "torch":
            output = model(torch.tensor(sample.to_numpy())).detach().numpy()  # a float64 tensor signature
            info = mlflow.pytorch.log_model(model, name="model", serialization_format="pt2", input_example=sample.to_numpy(),
                                            signature=infer_signature(sample.to_numpy(), output), pip_requirements=["torch"])
        else:
            info = mlflow.sklearn.log_model(model, name="model", pip_requirements=PIP, pyfunc_predict_fn="predict_proba",
                                            signature=infer_signature(sample, model.predict_proba(sample)))
    return mlflow.register_model(info.model_uri, name).version


def _outcomes_digest(run_id: str) -> str:
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=EVIDENCE_MANIFEST_PATH)
    with open(path) as handle:
        return json.load(handle)["outcomes"]["sha256"]


@pytest.fixture(scope="module", autouse=True)
def _spark_stopped_afterwards():
    """The engine keeps its Spark session for the next evaluation in the process; the tests after
    these should not share the machine with an idle JVM and its Python workers."""
    yield
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same 100k rows as Parquet and CSV."""
    folder = tmp_path_factory.mktemp("spark-data")
    data = make_data(ROWS, seed=11)
    parquet, csv = folder / "eval.parquet", folder / "eval.csv"
    data.to_parquet(parquet, row_group_size=30_000)  # several row groups: several Spark partitions
    data.drop(columns="row_id").to_csv(csv, index=False)  # no row_id: ids are row positions in both engines
    return {"parquet": str(parquet), "csv": str(csv)}


@pytest.mark.timeout(900)
def test_spark_and_local_engines_log_the_same_evidence(sqlite_server, model_name, files):
    mlflow.set_tracking_uri(sqlite_server.url)
    mlflow.set_experiment("spark-engine")
    gate = GatekeeperClient(sqlite_server.url)
    champion = _register(model_name, *models()["weak"][:1], "sklearn", models()["weak"][1])
    evaluate(f"models:/{model_name}/{champion}", files["parquet"], "label", ["weather"])
    gate.promote(model_name, champion)
    candidates = {"sklearn": _register(model_name, models()["strong"][0], "sklearn"),
                  "torch": _register(model_name, _torch_model(), "torch")}
    local_runs = {}
    for flavour, version in candidates.items():
        for kind, path in files.items():
            results = {engine: evaluate(f"models:/{model_name}/{version}", path, "label", ["weather"], engine=engine)
                       for engine in ("local", "spark")}
            local_runs[flavour, kind] = results["local"]
            local, spark = results["local"], results["spark"]
            what = f"{flavour} model on {kind}"
            assert local.n_rows == spark.n_rows == ROWS, what
            assert local.baseline == spark.baseline == (model_name, champion), what
            assert local.data_hash == spark.data_hash, what
            assert _outcomes_digest(local.run_id) == _outcomes_digest(spark.run_id), what
            assert local.preview["verdict"] == spark.preview["verdict"] == "promote", what
            assert local.metrics == pytest.approx(spark.metrics, rel=1e-12, abs=1e-12), what
            params = mlflow.get_run(spark.run_id).data.params
            assert params["engine"] == "spark" and mlflow.get_run(local.run_id).data.params["engine"] == "local"
            artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(spark.run_id, "evaluation")}
            assert {"evaluation/slices.png", "evaluation/confusion_candidate.png", "evaluation/highest_loss.csv",
                    "evaluation/disagreements.csv"} <= artifacts, what
            local_table = pd.read_csv(mlflow.artifacts.download_artifacts(
                run_id=local.run_id, artifact_path="evaluation/highest_loss.csv"))
            spark_table = pd.read_csv(mlflow.artifacts.download_artifacts(
                run_id=spark.run_id, artifact_path="evaluation/highest_loss.csv"))
            assert local_table["row_id"].astype(str).tolist() == spark_table["row_id"].astype(str).tolist(), what
    # as a user runs it: ``mlflow run . -e evaluate -P engine=spark``, the same outcomes as the local engine's
    local = local_runs["sklearn", "parquet"]
    run_id = _mlflow_run_evaluate(sqlite_server.url, model=f"models:/{model_name}/{candidates['sklearn']}",
                                  data=files["parquet"], slices="weather", engine="spark")
    assert _outcomes_digest(run_id) == _outcomes_digest(local.run_id)
    assert mlflow.get_run(run_id).data.tags[TAG_DATA_HASH] == local.data_hash
    # the gate judges Spark's evidence like any other: the sklearn candidate, evaluated last by Spark, promotes
    assert gate.promote(model_name, candidates["sklearn"])["verdict"] == "promote"


def _mlflow_run_evaluate(url: str, **params) -> str:
    """``mlflow run . -e evaluate`` in its own process; returns the evidence run's id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GATEKEEPER_", "PYTEST_"))}
    env.update(MLFLOW_TRACKING_URI=url, DO_NOT_TRACK="true", PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    done = subprocess.run([sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "evaluate", "--env-manager", "local",
                           "--experiment-name", "spark-engine", *[a for k, v in params.items() for a in ("-P", f"{k}={v}")]],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    found = mlflow.search_runs(experiment_names=["spark-engine"], filter_string="params.engine = 'spark'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found["run_id"][0]


class _ServedLikeModel(mlflow.pyfunc.PythonModel):
    """Answers as this project's served model does: a frame with the predicted class and one
    ``p_<class>`` column per class (Spark gets it as a struct of the probability columns)."""

    def __init__(self, inner):
        self.inner = inner

    def predict(self, context, model_input, params=None):
        proba = self.inner.predict_proba(model_input[FEATURES])
        return pd.DataFrame({"prediction": np.where(proba[:, 1] > 0.5, "go", "stop"), "p_0": proba[:, 0], "p_1": proba[:, 1]})


def test_a_frame_of_class_probabilities_and_a_regression_model_give_the_same_evidence_on_both_engines(
        sqlite_server, model_name, tmp_path):
    """The output shapes the 100k test does not cover: a served-style frame (a struct in Spark) and
    regression values, on a table without row ids (positions in both engines)."""
    import cloudpickle
    from sklearn.linear_model import LinearRegression

    mlflow.set_tracking_uri(sqlite_server.url)
    mlflow.set_experiment("spark-engine-shapes")
    data = make_data(20_000, seed=21).drop(columns="row_id")
    data["target"] = data["x0"] * 2.0 + data["x1"]
    path = tmp_path / "shapes.parquet"
    data.to_parquet(path, row_group_size=6_000)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Spark's workers cannot import the tests package
    try:
        sample = data[FEATURES].head(50)
        with mlflow.start_run():
            served = mlflow.pyfunc.log_model(name="model", python_model=_ServedLikeModel(models()["strong"][0]),
                                             pip_requirements=PIP, signature=infer_signature(sample))
        served_version = mlflow.register_model(served.model_uri, model_name).version
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    regression_name = f"{model_name}-regression"
    with mlflow.start_run():
        fitted = LinearRegression().fit(data[FEATURES[:2]].head(1000), data["target"].head(1000) + 0.1)
        info = mlflow.sklearn.log_model(fitted, name="model", pip_requirements=PIP,
                                        signature=infer_signature(data[FEATURES[:2]].head(50), fitted.predict(data[FEATURES[:2]].head(50))))
    regression_version = mlflow.register_model(info.model_uri, regression_name).version
    for model, label in ((f"models:/{model_name}/{served_version}", "label"),
                         (f"models:/{regression_name}/{regression_version}", "target")):
        local, spark = (evaluate(model, str(path), label, ["weather"], engine=engine) for engine in ("local", "spark"))
        assert local.data_hash == spark.data_hash and local.n_rows == spark.n_rows == 20_000, model
        assert _outcomes_digest(local.run_id) == _outcomes_digest(spark.run_id), model
        assert local.preview["verdict"] == spark.preview["verdict"], model
        assert local.metrics == pytest.approx(spark.metrics, rel=1e-12, abs=1e-12), model
    assert "mae" in spark.metrics and "slice/weather:fog/mae" in spark.metrics


def test_spark_engine_refuses_a_table_in_memory_and_a_bad_engine(sqlite_server, model_name):
    mlflow.set_tracking_uri(sqlite_server.url)
    version = _register(model_name, models()["strong"][0], "sklearn")
    frame = make_data(200, seed=3)
    with pytest.raises(EvaluationError, match="engine=spark reads a Parquet or CSV file"):
        evaluate(f"models:/{model_name}/{version}", frame, "label", ["weather"], engine="spark")
    with pytest.raises(EvaluationError, match="engine must be one of local, spark"):
        evaluate(f"models:/{model_name}/{version}", frame, "label", ["weather"], engine="dask")
    assert mlflow.search_runs(filter_string=f"tags.`{TAG_CANDIDATE_NAME}` = '{model_name}'").empty


def test_without_pyspark_engine_spark_is_a_clear_error(sqlite_server, model_name, files, tmp_path):
    """A Python where ``import pyspark`` fails (a shadowing package that raises ImportError, as a
    missing install does): the command line exits 2 with the install hint, nothing logged."""
    mlflow.set_tracking_uri(sqlite_server.url)
    version = _register(model_name, models()["strong"][0], "sklearn")
    shadow = tmp_path / "shadow" / "pyspark"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named pyspark')\n")
    env = dict(os.environ, MLFLOW_TRACKING_URI=sqlite_server.url, PYTHONPATH=str(shadow.parent))
    done = subprocess.run([sys.executable, "-m", "projects.evaluate", "--model", f"models:/{model_name}/{version}",
                           "--data", files["parquet"], "--label", "label", "--slices", "weather", "--engine", "spark"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "engine=spark needs pyspark" in done.stderr and "pip install 'mlflow-gatekeeper[spark]'" in done.stderr
    assert mlflow.search_runs(filter_string=f"tags.`{TAG_CANDIDATE_NAME}` = '{model_name}'").empty
