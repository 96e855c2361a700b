"""``evaluate`` against a real gated server: its evidence drives the gate, for sklearn and custom
pyfunc models, slices included; bad input is a clear error with no evidence logged."""

from __future__ import annotations

import subprocess
import sys
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from benchmarks.evidence import FEATURES, make_data, models
from projects.evaluate import EvaluationError, evaluate
from gatekeeper_cli.client import GatekeeperClient, PromotionRefused

PIP = ["scikit-learn", "pandas", "numpy"]


class FoggyModel(mlflow.pyfunc.PythonModel):
    """The strong model, except that it is confidently wrong on half of the foggy rows."""

    def __init__(self, inner):
        self.inner = inner

    def predict(self, context, model_input, params=None):
        proba = self.inner.predict_proba(model_input[FEATURES])
        spoil = (model_input["weather"] == "fog").to_numpy() & (np.arange(len(model_input)) % 2 == 0)
        proba[spoil] = proba[spoil][:, ::-1]
        return proba


class NanModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.full((len(model_input), 2), np.nan)


def _register(name: str, python_model=None, sk_model=None, columns=FEATURES) -> str:
    sample = make_data(50, seed=5)[columns]
    with mlflow.start_run(run_name=f"train {name}"):
        if sk_model is not None:
            info = mlflow.sklearn.log_model(sk_model, name="model", pip_requirements=PIP, pyfunc_predict_fn="predict_proba",
                                            signature=infer_signature(sample, sk_model.predict_proba(sample)))
        else:
            info = mlflow.pyfunc.log_model(name="model", python_model=python_model, pip_requirements=PIP,
                                           signature=infer_signature(sample, np.zeros((50, 2))))
    return mlflow.register_model(info.model_uri, name).version


@pytest.fixture
def setup(sqlite_server, model_name, tmp_path):
    mlflow.set_tracking_uri(sqlite_server.url)
    mlflow.set_experiment("evaluate-tests")
    data = make_data(1500, seed=11)
    path = tmp_path / "eval.parquet"
    data.to_parquet(path)
    return sqlite_server, model_name, str(path), data


def test_evidence_from_evaluate_drives_the_gate(setup, tmp_path):
    server, name, data_path, data = setup
    gate = GatekeeperClient(server.url)
    weak = _register(name, sk_model=models()["weak"][0], columns=FEATURES[:2])
    first = evaluate(f"models:/{name}/{weak}", data_path, "label", ["weather"])
    assert first.baseline is None and first.preview["verdict"] == "promote" and first.n_rows == 1500
    gate.promote(name, weak)

    strong = _register(name, sk_model=models()["strong"][0])
    result = evaluate(f"models:/{name}/{strong}", data_path, "label")  # slices default to the policy's
    assert result.baseline == (name, weak)
    assert result.metrics["accuracy"] > 0.9 and result.metrics["improvement/accuracy"] > 0.1
    assert "slice/weather:rain/accuracy" in result.metrics
    assert result.preview["verdict"] == "promote"
    gate.promote(name, strong)
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["gatekeeper.baseline.version"] == weak
    logged = {t.key: t.value for t in run.inputs.dataset_inputs[0].tags}
    assert logged["gatekeeper.content_hash"] == result.data_hash and logged["gatekeeper.n_rows"] == "1500"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "evaluation")}
    assert {"evaluation/slices.png", "evaluation/confusion_candidate.png", "evaluation/confusion_champion.png",
            "evaluation/confident_mistakes.csv", "evaluation/disagreements.csv"} <= artifacts
    champion_runs = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(champion_runs) == 1 and abs(champion_runs["metrics.accuracy"][0] - first.metrics["accuracy"]) < 1e-9

    worse = _register(name, sk_model=models()["weak"][0], columns=FEATURES[:2])
    refused = evaluate(f"models:/{name}/{worse}", data_path, "label", ["weather"])
    assert refused.preview["verdict"] == "refuse_worse"
    with pytest.raises(PromotionRefused, match="worse"):
        gate.promote(name, worse)

    foggy = _register(name, python_model=FoggyModel(models()["strong"][0]), columns=FEATURES + ["weather"])
    slice_result = evaluate(f"models:/{name}/{foggy}", data_path, "label", ["weather"])
    assert slice_result.metrics["accuracy"] > 0.8  # fine overall, but ...
    with pytest.raises(PromotionRefused, match="slice:weather=fog"):
        gate.promote(name, foggy)

    # The team's evaluation data moves on: older evidence on the previous data goes stale.
    newer = tmp_path / "eval-v2.parquet"
    make_data(1500, seed=12).to_parquet(newer)
    candidate = _register(name, sk_model=models()["strong"][0])
    evaluate(f"models:/{name}/{candidate}", data_path, "label", ["weather"], data_name="eval.parquet")
    evaluate(f"models:/{name}/{foggy}", str(newer), "label", ["weather"], data_name="eval.parquet")
    with pytest.raises(PromotionRefused, match="evaluation data 'eval.parquet' changed"):
        gate.promote(name, candidate)


def test_data_as_a_logged_mlflow_dataset_a_pandas_dataset_or_a_frame(setup, tmp_path):
    """Every form of ``data`` reads the same rows, so the evidence carries the same content hash; a
    ``dataset:`` reference whose file changed since its run logged it is refused before logging."""
    server, name, data_path, data = setup
    version = _register(name, sk_model=models()["strong"][0])
    model = f"models:/{name}/{version}"
    from_file = evaluate(model, data_path, "label", ["weather"])

    reference = f"dataset:{from_file.run_id}"
    from_reference = evaluate(model, reference, "label", ["weather"])
    named_reference = evaluate(model, f"{reference}/eval.parquet", "label", ["weather"])
    from_dataset = evaluate(model, mlflow.data.from_pandas(data, source=data_path, name="eval"), "label", ["weather"])
    from_frame = evaluate(model, data, "label", ["weather"])
    results = [from_reference, named_reference, from_dataset, from_frame]
    assert {r.data_hash for r in results} == {from_file.data_hash} and {r.n_rows for r in results} == {1500}
    run = mlflow.get_run(from_reference.run_id)
    assert run.data.params["data"] == reference and run.data.tags["gatekeeper.data.source"] == data_path
    assert run.inputs.dataset_inputs[0].dataset.name == "eval.parquet"  # the referenced dataset's name
    assert mlflow.get_run(from_dataset.run_id).inputs.dataset_inputs[0].dataset.name == "eval"

    with mlflow.start_run(run_name="logs no dataset") as no_inputs:
        pass
    runs_before = len(mlflow.search_runs(search_all_experiments=True))
    make_data(1500, seed=99).to_parquet(data_path)  # the file the run logged is overwritten
    with pytest.raises(EvaluationError, match="is not the table its run logged"):
        evaluate(model, reference, "label", ["weather"])
    with pytest.raises(EvaluationError, match="logged no dataset named 'nope'; it logged: eval.parquet"):
        evaluate(model, f"{reference}/nope", "label", ["weather"])
    with pytest.raises(EvaluationError, match="cannot read run 0123abcd"):
        evaluate(model, "dataset:0123abcd", "label", ["weather"])
    with pytest.raises(EvaluationError, match="logged no dataset inputs"):
        evaluate(model, f"dataset:{no_inputs.info.run_id}", "label", ["weather"])
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs_before


def test_regression_models_are_compared_on_squared_and_absolute_error(setup, tmp_path):
    """A float label means regression: the policy's ``mae`` decides, per slice too."""
    from sklearn.linear_model import LinearRegression

    server, _, _, data = setup
    name = f"regress-{uuid.uuid4().hex[:8]}"
    frame = data.assign(target=2.0 * data["x0"] - data["x1"] + np.random.default_rng(0).normal(0, 0.3, len(data)))
    path = tmp_path / "regression.csv"
    frame.drop(columns=["label"]).to_csv(path, index=False)
    gate = GatekeeperClient(server.url)

    def register(columns: list[str]) -> str:
        model = LinearRegression().fit(frame[columns], frame["target"])
        with mlflow.start_run(run_name=f"train {name}"):
            info = mlflow.sklearn.log_model(model, name="model", pip_requirements=PIP,
                                            signature=infer_signature(frame[columns], model.predict(frame[columns])))
        return mlflow.register_model(info.model_uri, name).version

    weak = register(["x2"])
    first = evaluate(f"models:/{name}/{weak}", str(path), "target")
    assert first.preview["verdict"] == "promote" and {"mae", "rmse", "slice/weather:rain/mae"} <= set(first.metrics)
    gate.promote(name, weak)
    strong = register(["x0", "x1"])
    result = evaluate(f"models:/{name}/{strong}", str(path), "target")
    assert result.baseline == (name, weak) and result.metrics["mae"] < 0.3 < first.metrics["mae"]
    assert result.preview["verdict"] == "promote"
    gate.promote(name, strong)
    worse = register(["x1"])
    assert evaluate(f"models:/{name}/{worse}", str(path), "target").preview["verdict"] == "refuse_worse"
    with pytest.raises(PromotionRefused, match="mae"):
        gate.promote(name, worse)


@pytest.mark.parametrize(
    "change, message",
    [
        ("no_label", "label column 'label' is not in the data"),
        ("float_label", "classification needs integer"),
        ("empty", "holds no rows"),
        ("no_slice", "slice column(s) not in the data: climate"),
        ("missing_feature", "lacks column(s) the model signature requires: x5"),
        ("null_label", "has 3 missing values"),
    ],
)
def test_bad_input_is_a_clear_error_and_logs_no_evidence(setup, tmp_path, change, message):
    server, name, data_path, data = setup
    version = _register(name, sk_model=models()["strong"][0])
    frame, slices, kwargs = data.copy(), ["weather"], {}
    if change == "no_label":
        frame = frame.drop(columns=["label"])
    elif change == "float_label":
        frame["label"] = frame["label"] + 0.5
        kwargs = {"task": "classification"}
    elif change == "empty":
        frame = frame.iloc[:0]
    elif change == "no_slice":
        slices = ["climate"]
    elif change == "missing_feature":
        frame = frame.drop(columns=["x5"])
    else:
        frame["label"] = frame["label"].astype("Int64")
        frame.loc[:2, "label"] = None
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    before = len(mlflow.search_runs(search_all_experiments=True))
    with pytest.raises(EvaluationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate(f"models:/{name}/{version}", str(path), "label", slices, **kwargs)
    assert len(mlflow.search_runs(search_all_experiments=True)) == before


def test_a_model_returning_nan_and_a_missing_version_are_refused(setup):
    server, name, data_path, data = setup
    version = _register(name, python_model=NanModel())
    with pytest.raises(EvaluationError, match="returned NaN"):
        evaluate(f"models:/{name}/{version}", data_path, "label", ["weather"])
    with pytest.raises(EvaluationError, match="does not exist"):
        evaluate(f"models:/{name}/99", data_path, "label", ["weather"])
    with pytest.raises(EvaluationError, match="models:/NAME/VERSION"):
        evaluate(f"runs:/abc/model", data_path, "label", ["weather"])


def test_cli_exit_code_and_message(setup):
    server, name, data_path, data = setup
    result = subprocess.run(
        [sys.executable, "-m", "projects.evaluate", "--model", f"models:/{name}/7", "--data", data_path, "--label", "label"],
        capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "MLFLOW_TRACKING_URI": server.url},
    )
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_cli_with_mlprojects_empty_slices_uses_the_policy_and_reads_a_dataset_reference(setup):
    """``mlflow run . -e evaluate`` passes ``--slices ""`` when none are given: the policy's slices
    apply, as the issue says; ``--data dataset:RUN_ID`` reads what that run logged; the evaluation
    becomes a child of the project's run (``MLFLOW_RUN_ID``), whose params would clash."""
    server, name, data_path, data = setup
    version = _register(name, sk_model=models()["strong"][0])
    first = evaluate(f"models:/{name}/{version}", data_path, "label", [])
    with mlflow.start_run(run_name="what mlflow run creates") as project_run:  # its params clash with evaluate's
        mlflow.log_params({"task": "auto", "slices": "", "data": f"dataset:{first.run_id}"})
    result = subprocess.run(
        [sys.executable, "-m", "projects.evaluate", "--model", f"models:/{name}/{version}",
         "--data", f"dataset:{first.run_id}", "--label", "label", "--slices", ""],
        capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "MLFLOW_TRACKING_URI": server.url, "MLFLOW_RUN_ID": project_run.info.run_id},
    )
    assert result.returncode == 0, result.stderr
    runs = mlflow.search_runs(filter_string=f"params.data = 'dataset:{first.run_id}' and params.task = 'classification'")
    assert len(runs) == 1 and runs["params.slices"][0] == "weather"
    assert runs["tags.mlflow.parentRunId"][0] == project_run.info.run_id  # a child of the project's run
    assert "metrics.slice/weather:rain/accuracy" in runs.columns


def test_against_an_ungated_server_the_preview_is_the_gates_judgement_made_here(tmp_path, model_name, gate_policy,
                                                                                 monkeypatch):
    """A plain MLflow server has no gate to ask: the baseline comes from the gate's rule applied to
    its registry (an alias counts in any case, as the gate counts it), and the preview is ``decide``
    run here on the evidence just logged, under the policy ``GATEKEEPER_POLICY`` names."""
    from benchmarks.servers import MlflowServer
    from registry_hooks.contract import POLICY_ENV

    monkeypatch.setenv(POLICY_ENV, str(gate_policy))
    with MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", gated=False) as plain:
        mlflow.set_tracking_uri(plain.url)
        mlflow.set_experiment("evaluate-ungated")
        path = tmp_path / "eval.parquet"
        make_data(1500, seed=11).to_parquet(path)
        strong = _register(model_name, sk_model=models()["strong"][0])
        first = evaluate(f"models:/{model_name}/{strong}", str(path), "label", ["weather"])
        assert first.baseline is None and first.preview["verdict"] == "promote"
        assert first.preview["judged_here"] == "the registry is not gated"

        mlflow.MlflowClient().set_registered_model_alias(model_name, "CHAMPION", strong)  # ungated: anyone may
        weak = _register(model_name, sk_model=models()["weak"][0], columns=FEATURES[:2])
        refused = evaluate(f"models:/{model_name}/{weak}", str(path), "label", ["weather"])
    assert refused.baseline == (model_name, strong) and refused.preview["baseline"]["source"] == "alias 'champion'"
    assert refused.preview["verdict"] == "refuse_worse" and refused.preview["evidence_run_ids"] == [refused.run_id]
