"""The served model logs itself: a model trained by the pipeline's own code, wrapped by
``projects.serving``, served by a real ``mlflow models serve`` process that scores real HTTP
requests, stopped with SIGTERM, its inference log read back -- and the same through
``mlflow.pyfunc.load_model``."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from benchmarks.servers import free_port
from projects import inference_log, scenes
from registry_hooks import inference_records

torch = pytest.importorskip("torch")
mlflow = pytest.importorskip("mlflow")

from projects import serving  # noqa: E402
from projects.model import predict_proba  # noqa: E402
from projects.train import train  # noqa: E402
from projects.train_config import Hyperparameters, Runtime, Tracking, TrainConfig  # noqa: E402
from tests.support.tracking import tracking_at  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
NAME = "road-scenes-served"
METADATA = ["weather", "light", *scenes.SUMMARY_COLUMNS]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A registered wrapper model: trained for one epoch on 300 scenes, logged as train logs it."""
    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with tracking_at(uri, "serving", root / "artifacts"):
        table = scenes.generate(300, "augmented", seed=3)
        config = TrainConfig(Hyperparameters(epochs=1, width=4, batch_size=64), Tracking(registered_model=None, log_model=False),
                             Runtime(progress=False))
        trained = train(table, config)
        with mlflow.start_run(run_id=trained.run_id):
            info = serving.log_model(trained.model)
        version = mlflow.register_model(info.model_uri, NAME).version
        yield {"uri": uri, "root": root, "run_id": trained.run_id, "model_id": info.model_id,
               "model": f"models:/{NAME}/{version}", "table": scenes.generate(12, "rainy_season", seed=11)}


def _payload(frame) -> dict:
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}


def _stopped(server: subprocess.Popen, timeout: float) -> bool:
    """Whether every process of the server's session has exited: the CLI (reaped here, else it
    stays in the group as a zombie), then uvicorn, which gets SIGTERM when its parent dies."""
    deadline = time.monotonic() + timeout
    server.wait(timeout)
    while time.monotonic() < deadline:
        try:
            os.killpg(server.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _records(root: Path):
    now = dt.datetime.now(dt.timezone.utc)
    table = inference_records.read_window(now - dt.timedelta(hours=2), now + dt.timedelta(hours=1), root=str(root))
    return table.to_pandas().set_index("request_id") if table.num_rows else None


def _sha256(frame) -> list[str]:
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in frame[scenes.PIXEL_COLUMNS].to_numpy(np.uint8)]


def test_mlflow_models_serve_logs_every_request(served, tmp_path):
    log_root, port = tmp_path / "log", free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": served["uri"], "GATEKEEPER_INFERENCE_LOG": str(log_root),
           "PYTHONPATH": str(REPO), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", served["model"], "--env-manager", "local",
                               "-h", "127.0.0.1", "-p", str(port), "-w", "1"], env=env, cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=(tmp_path / "server.log").open("w"))
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{base}/ping", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.3)

        table = served["table"]
        pixels_only = table.head(5)[scenes.PIXEL_COLUMNS]
        tagged = table.tail(7)[["row_id", *METADATA, *scenes.PIXEL_COLUMNS]].rename(columns={"row_id": "request_id"})
        answers = []
        for frame in (pixels_only, tagged):
            response = requests.post(f"{base}/invocations", json=_payload(frame), timeout=60)
            assert response.status_code == 200, response.text[:2000]
            answers.append(response.json()["predictions"])
    finally:
        os.kill(server.pid, signal.SIGTERM)
        assert _stopped(server, 30), "the server did not stop on SIGTERM"

    untagged, given = answers
    assert [a["request_id"] for a in given] == table.tail(7)["row_id"].tolist()
    for answer in untagged:  # new ids: <UTC yyyymmddHH>-<uuid4 hex>
        prefix, _, suffix = answer["request_id"].partition("-")
        assert len(prefix) == 10 and prefix.isdigit() and len(suffix) == 32
    for answer in untagged + given:
        probabilities = [answer[f"p_{name}"] for name in scenes.CLASS_NAMES]
        assert answer["prediction"] == scenes.CLASS_NAMES[int(np.argmax(probabilities))]
        assert answer["confidence"] == pytest.approx(max(probabilities)) and sum(probabilities) == pytest.approx(1, abs=1e-5)

    records = _records(log_root)  # SIGTERM wrote them: 12 rows, well under a part's 1,024 and 2 s
    assert records is not None and len(records) == 12
    ids = [a["request_id"] for a in untagged + given]
    assert sorted(records.index) == sorted(ids)
    logged = records.loc[ids]
    assert logged["prediction"].tolist() == [a["prediction"] for a in untagged + given]
    np.testing.assert_allclose(logged["confidence"], [a["confidence"] for a in untagged + given], rtol=1e-6)
    assert set(logged["model_run_id"]) == {served["run_id"]} and set(logged["model_id"]) == {served["model_id"]}
    assert set(logged["schema_version"]) == {inference_log.SCHEMA_VERSION}
    assert logged["input_sha256"].tolist() == _sha256(pixels_only) + _sha256(tagged)
    assert logged["weather"].tolist() == [None] * 5 + table.tail(7)["weather"].tolist()
    np.testing.assert_allclose(logged["img_brightness"].iloc[5:], table.tail(7)["img_brightness"], rtol=1e-6)
    assert "pixels" not in logged.columns  # GATEKEEPER_LOG_INPUTS defaults to reference


def test_pyfunc_load_model_logs_the_same_way_and_predict_proba_reads_it(served, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served["uri"])
    monkeypatch.setenv("GATEKEEPER_INFERENCE_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("GATEKEEPER_LOG_INPUTS", "full")
    model = mlflow.pyfunc.load_model(served["model"])
    table = served["table"]
    output = model.predict(table)  # a whole scenes table: extra columns are ignored
    probabilities = predict_proba(model, table, batch_size=5)  # the evaluation path: scores, logs nothing
    inference_log.close_all()

    np.testing.assert_allclose(probabilities, output[[f"p_{c}" for c in scenes.CLASS_NAMES]].to_numpy(), atol=1e-6)
    records = _records(tmp_path / "log")
    assert len(records) == len(table) and sorted(records.index) == sorted(output["request_id"])
    logged = records.loc[output["request_id"]]
    assert logged["prediction"].tolist() == output["prediction"].tolist()
    assert logged["light"].tolist() == table["light"].tolist()
    assert set(logged["model_id"]) == {served["model_id"]}
    stored = np.stack([np.frombuffer(p, np.uint8) for p in logged["pixels"]])
    np.testing.assert_array_equal(stored, table[scenes.PIXEL_COLUMNS].to_numpy(np.uint8))


def test_missing_or_out_of_range_pixels_are_a_clear_error(served, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served["uri"])
    monkeypatch.setenv("GATEKEEPER_INFERENCE_LOG", "off")
    model = mlflow.pyfunc.load_model(served["model"])
    with pytest.raises(Exception, match="lacks 3072 pixel column"):
        model.predict(served["table"][["row_id", "weather"]])
    too_bright = served["table"][scenes.PIXEL_COLUMNS].head(2).astype("int64")
    too_bright.iloc[1, 5] = 300
    with pytest.raises(Exception, match=r"integers in 0..255, got int64 in \[\d+, 300\]"):
        model.predict(too_bright)
