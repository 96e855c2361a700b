"""``python -m projects.mine`` in-process on a SQLite tracking store and a constructed log.

No gate server: the candidate is ``none`` and feedback comes from a file or not at all
(``--feedback none``), which is what the entry point offers for a store with no gate in front.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.pyfunc import PythonModel

from projects.mine.__main__ import build_parser, main
from tests.support.tracking import tracking_at

CLASSES = ("orange_cone", "green_cone", "pedestrian", "nothing")
END = dt.datetime(2026, 12, 5, 12, tzinfo=dt.timezone.utc)


def write_log(root, n: int, champion_run: str, seed: int = 0, pixels: bool = False) -> pd.DataFrame:
    """``n`` records over the day before ``END`` in the log's layout (one part per hour), with
    errors planted on rain at night, 4/5 of them served by the champion; returns the true labels."""
    rng = np.random.default_rng(seed)
    times = (END - pd.to_timedelta(rng.uniform(0, 24 * 3600, n), unit="s")).astype("datetime64[us, UTC]")  # as the log's writer
    p = rng.dirichlet(np.full(len(CLASSES), 0.5), n)
    frame = pd.DataFrame({"request_id": [f"req-{i}" for i in range(n)], "time": times,
                          "model_run_id": np.where(rng.random(n) < 0.8, champion_run, "older-run"), "model_id": "m",
                          "prediction": np.asarray(CLASSES)[p.argmax(axis=1)], "confidence": p.max(axis=1),
                          **{f"p_{c}": p[:, k] for k, c in enumerate(CLASSES)},
                          "weather": rng.choice(["clear", "rain", "fog"], n, p=[0.6, 0.3, 0.1]),
                          "light": rng.choice(["day", "night"], n, p=[0.6, 0.4]),
                          "img_brightness": rng.random(n), "input_sha256": [f"{i:064x}" for i in range(n)]})
    truth = frame["prediction"].copy()
    bad = (frame["weather"] == "rain") & (frame["light"] == "night") & (rng.random(n) < 0.5)
    truth[bad] = "nothing"
    truth[bad & (frame["prediction"] == "nothing")] = "pedestrian"
    if pixels:  # as GATEKEEPER_LOG_INPUTS=full keeps them: 3,072 bytes a row
        frame["pixels"] = [rng.integers(0, 256, 3072, dtype=np.uint8).tobytes() for _ in range(n)]
    for hour, part in frame.groupby(frame["time"].dt.floor("h")):
        folder = root / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(part, preserve_index=False)
        if pixels:
            table = table.set_column(table.schema.get_field_index("pixels"), "pixels", table["pixels"].cast(pa.binary(3072)))
        pq.write_table(table, folder / "part-0.parquet")
    return frame.assign(label=truth)


@pytest.fixture()
def store(tmp_path):
    import mlflow

    with tracking_at(f"sqlite:///{tmp_path / 'mlflow.db'}", "mine", tmp_path / "artifacts"):
        client = mlflow.MlflowClient()
        with mlflow.start_run() as run:
            pass
        client.create_registered_model("road-scenes")
        version = client.create_model_version("road-scenes", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        client.set_registered_model_alias("road-scenes", "champion", version.version)
        yield client, run.info.run_id


def _args(tmp_path, **extra) -> list[str]:
    values = {"end": END.isoformat(), "window-days": "1", "candidate": "none", "log": str(tmp_path / "log"),
              "out": str(tmp_path / "queues"), "feedback": "none", **extra}
    return [item for key, value in values.items() for item in (f"--{key}", value)]


def test_mining_a_logged_window_writes_and_logs_the_queue(tmp_path, store, capsys):
    client, champion_run = store
    truth = write_log(tmp_path / "log", 4000, champion_run)
    labelled = truth.iloc[:2500][["request_id", "label"]].assign(flag=None, note=None)
    labelled.loc[2600] = ["req-2600", None, "wrong", "looks like a cone"]
    labelled.to_csv(tmp_path / "feedback.csv", index=False)

    assert main(_args(tmp_path, feedback=str(tmp_path / "feedback.csv"), budget="0.01")) == 0
    printed = capsys.readouterr().out
    assert "slice weather=rain and light=night (labels)" in printed
    [folder] = (tmp_path / "queues").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    queue = pd.read_parquet(folder / "queue.parquet")
    assert manifest["content_hash"] == folder.name and manifest["budget"]["rows"] == 40 and len(queue) == 40
    assert manifest["champion"]["run_id"] == champion_run
    assert manifest["window"]["champion_rows"] == (truth["model_run_id"] == champion_run).sum()
    assert queue.iloc[0]["request_id"] == "req-2600" and queue.iloc[0]["reasons"].startswith("flag")
    assert manifest["reasons"]["slice"] > 0 and manifest["reasons"]["high_loss"] > 0
    assert len(pd.read_csv(folder / "queue.csv")) == 40

    [run] = client.search_runs([client.get_experiment_by_name("mine").experiment_id], "attributes.run_name = 'mine'")
    assert run.data.metrics["queue_rows"] == 40 and run.data.metrics["window_rows"] == 4000
    assert run.data.metrics["reason_flag_rows"] == 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "charts")}
    assert artifacts == {f"charts/reason_{r}.png" for r in ("flag", "slice", "low_confidence", "disagreement", "high_loss")}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "queue")} == {
        "queue/queue.parquet", "queue/queue.csv", "queue/manifest.json"}
    assert run.inputs.dataset_inputs[0].dataset.name.startswith("labelling-queue")


class AlwaysNothing(PythonModel):
    """A candidate that calls every image ``nothing``, sure of it: it disagrees wherever the
    champion saw an object. Pickled by reference: it loads in this process only."""

    def predict(self, context, model_input, params=None):
        n = len(model_input)
        assert model_input.shape[1] == 3072 and str(model_input.dtypes.iloc[0]) == "uint8"
        p = np.tile([0.01, 0.01, 0.01, 0.97], (n, 1))
        return pd.DataFrame({"prediction": ["nothing"] * n, "confidence": p[:, 3],
                             **{f"p_{c}": p[:, k] for k, c in enumerate(CLASSES)}})


def test_the_newest_version_newer_than_the_champion_is_shadow_scored_on_logged_pixels(tmp_path, store):
    import mlflow

    client, champion_run = store
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=AlwaysNothing(), pip_requirements=["mlflow"])
    assert str(mlflow.register_model(info.model_uri, "road-scenes").version) == "2"
    truth = write_log(tmp_path / "log", 400, champion_run, pixels=True)
    assert main(_args(tmp_path, candidate="", budget="0.1")) == 0
    [folder] = (tmp_path / "queues").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    queue = pd.read_parquet(folder / "queue.parquet")
    assert manifest["candidate"] == "models:/road-scenes/2"
    assert any("scored in the shadow on 400 row(s)" in note for note in manifest["notes"])
    picked = queue[queue["reason_disagreement"]]
    assert len(picked) >= 10 and (picked["prediction"] != "nothing").all()
    assert len(queue) == 40 and queue["pixels"].map(len).eq(3072).all()
    assert (truth["prediction"] != "nothing").sum() > 40


def test_an_empty_window_without_feedback_still_logs_a_run(tmp_path, store, capsys):
    client, _ = store
    assert main(_args(tmp_path)) == 0
    printed = capsys.readouterr().out
    assert "0 row(s)" in printed and "the log holds no records" in printed and "feedback not fetched" in printed
    [folder] = (tmp_path / "queues").iterdir()
    assert json.loads((folder / "manifest.json").read_text())["queue_rows"] == 0
    [run] = client.search_runs([client.get_experiment_by_name("mine").experiment_id], "attributes.run_name = 'mine'")
    assert run.data.metrics["queue_rows"] == 0


@pytest.mark.parametrize("argument, value", [("budget", "0"), ("budget", "1.5"), ("window-days", "-1"),
                                             ("end", "2026-12-05T00:00:00"), ("end", "yesterday"),
                                             ("min-support", "2.5"), ("seed", "-1"), ("candidate", "models:/x"),
                                             ("feedback", "/no/such/file.csv"), ("registered-model", " "),
                                             ("engine", "gpu"), ("spark-master", " ")])
def test_a_bad_value_is_refused_naming_the_parameter(argument, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([f"--{argument}", value])
    assert exit_info.value.code == 2
    assert f"--{argument}" in capsys.readouterr().err
