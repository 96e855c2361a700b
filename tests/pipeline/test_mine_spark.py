"""``mine --engine spark`` against the local engine on the same logged windows: the same queue.

The same queue means the same folder: it is named by the queue's content hash (every column,
dtype, row and order), so two runs agree exactly when their folders' names do. Both engines run
in this process through the entry point on one SQLite tracking store and a real local Spark; the
candidate is a model from code (its file travels with it, so Spark's Python workers load it too).
"""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pyspark", reason="the spark extra is part of the test install: pip install -e '.[test]'")

from projects.mine import feedback, spark_engine  # noqa: E402 (needs pyspark)
from projects.mine.__main__ import main  # noqa: E402
from projects.mine.core import mine_window  # noqa: E402
from projects.mine.slices import SliceOptions  # noqa: E402
from projects.spark_quantiles import _settle, _Target, exact_quantiles  # noqa: E402
from registry_hooks.inference_records import read_window  # noqa: E402
from registry_hooks.tables import content_hash  # noqa: E402
from tests.unit.test_mine_entry import CLASSES, END, _args, store, write_log  # noqa: E402, F401 (store: a fixture)
pytestmark = pytest.mark.timeout(600)
MASTER = "local[2]"

CANDIDATE = '''
import numpy as np, pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

class Dim(PythonModel):
    """Calls a dark image "nothing" and a bright one "pedestrian", from the pixels alone."""
    def predict(self, context, model_input, params=None):
        bright = model_input.to_numpy(dtype=float).mean(axis=1) / 255.0
        p = np.column_stack([np.full(len(bright), 0.05), np.full(len(bright), 0.05), 0.9 * bright, 0.9 * (1 - bright)])
        classes = np.array(%r)
        return pd.DataFrame({"prediction": classes[p.argmax(axis=1)], "confidence": p.max(axis=1),
                             **{f"p_{c}": p[:, k] for k, c in enumerate(classes)}})

set_model(Dim())
''' % (list(CLASSES),)


@pytest.fixture(scope="module")
def spark():
    from projects.spark_session import session

    return session(MASTER, "mine")


def _feedback_file(tmp_path, truth: pd.DataFrame) -> str:
    """Labels on 1,500 rows (the slice search uses labels), 20 flags, some rows both."""
    rows = truth.sample(1500, random_state=2)[["request_id", "label"]].assign(flag=None, note=None)
    flags = truth.sample(20, random_state=3)[["request_id"]].assign(label=None, flag=["wrong", "unsure"] * 10, note="x")
    path = tmp_path / "feedback.parquet"
    pd.concat([rows, flags]).astype(object).to_parquet(path, index=False)
    return str(path)


def _mined(capsys, tmp_path, **extra) -> tuple[str, list[str]]:
    assert main(_args(tmp_path, **extra)) == 0
    printed = capsys.readouterr().out
    return re.search(r"^queue (\S+) logged to run", printed, re.M).group(1), [
        line for line in printed.splitlines() if line.startswith(("slice ", "window "))]


@pytest.mark.parametrize("case", ["labels-candidate-flags", "confidence-proxy", "random-control"])
def test_spark_writes_the_local_engines_queue(tmp_path, store, capsys, spark, case):  # noqa: F811
    import mlflow

    client, champion_run = store
    truth = write_log(tmp_path / "log", 3000, champion_run, seed=5, pixels=case.startswith("labels"))
    extra = {"budget": "0.05", "seed": "7", "spark-master": MASTER}
    if case.startswith("labels"):
        (tmp_path / "candidate.py").write_text(CANDIDATE)
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="model", python_model=str(tmp_path / "candidate.py"), pip_requirements=["mlflow"])
        mlflow.register_model(info.model_uri, "road-scenes")
        extra.update(candidate="", feedback=_feedback_file(tmp_path, truth))
    elif case == "random-control":
        extra.update(selection="random", feedback=_feedback_file(tmp_path, truth))

    local_folder, local_lines = _mined(capsys, tmp_path, **extra)
    spark_folder, spark_lines = _mined(capsys, tmp_path, engine="spark", **extra)

    assert spark_folder == local_folder and spark_lines == local_lines
    runs = client.search_runs([client.get_experiment_by_name("mine").experiment_id], "attributes.run_name = 'mine'")
    by_engine = {run.data.params["engine"]: run for run in runs}
    assert set(by_engine) == {"local", "spark"}
    assert by_engine["local"].data.metrics == by_engine["spark"].data.metrics
    assert by_engine["local"].data.params["queue"] == by_engine["spark"].data.params["queue"]
    manifest = json.loads((tmp_path / "queues" / local_folder.rsplit("/", 1)[-1] / "manifest.json").read_text())
    queue = pd.read_parquet(tmp_path / "queues" / manifest["content_hash"] / "queue.parquet")
    assert len(queue) == 150 and queue["request_id"].is_unique
    if case.startswith("labels"):
        assert manifest["slices"]["basis"] == "labels" and manifest["slices"]["found"]
        assert set(manifest["reasons"]) >= {"flag", "disagreement"} and manifest["reasons"]["disagreement"] > 0
        assert manifest["reasons"]["flag"] > 0 and manifest["reasons"]["high_loss"] > 0
    elif case == "confidence-proxy":
        assert manifest["slices"]["basis"] == "uncertain" and manifest["reasons"]["low_confidence"] > 0
    else:
        assert set(queue["reasons"]) == {"random"} and queue["label"].isna().all()


def _ragged_log(root) -> tuple[dt.datetime, dt.datetime]:
    """Parts that differ: an integer column missing from some (nulls once read together) and of
    two widths, a numeric summary of two widths, a boolean one with nulls in some parts only, a class only later parts have, request ids a
    caller reused at other times, and a numeric summary with NaN and repeated values."""
    rng = np.random.default_rng(11)
    start = END - dt.timedelta(hours=6)
    for hour in range(6):
        n = 400
        moment = start + dt.timedelta(hours=hour)
        p = rng.dirichlet(np.ones(3 + (hour >= 3)), n)
        classes = ["cat", "dog", "owl", "eagle"][:p.shape[1]]
        columns = {
            "time": pa.array(np.full(n, np.datetime64(moment.replace(tzinfo=None), "us")), pa.timestamp("us", "UTC")),
            "request_id": pa.array([f"h{hour}-{i}" if i >= 5 else f"reused-{i}" for i in range(n)]),
            "model_run_id": pa.array(np.where(rng.random(n) < 0.7, "champ", "old")),
            "prediction": pa.array(np.asarray(classes)[p.argmax(axis=1)]), "confidence": pa.array(p.max(axis=1)),
            **{f"p_{c}": pa.array(p[:, k]) for k, c in enumerate(classes)},
            "weather": pa.array(rng.choice(["clear", "rain", None], n, p=[0.6, 0.3, 0.1])),
            "img_brightness": pa.array(np.where(rng.random(n) < 0.05, np.nan, np.round(rng.random(n), 2)),
                                       pa.float32() if hour < 2 else pa.float64()),  # widened when read together
            "retried": pa.array([bool(v) if hour % 2 else None for v in rng.random(n) < 0.5], pa.bool_()),
        }
        if hour % 3:
            columns["schema_version"] = pa.array(np.ones(n, np.int16 if hour < 3 else np.int64))
        folder = root / f"date={moment:%Y-%m-%d}" / f"hour={moment:%H}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table(columns), folder / "part-0.parquet")
    return start, END


@pytest.mark.parametrize("min_labelled", [100, 10_000])
def test_ragged_parts_are_mined_and_typed_as_the_local_read_does(tmp_path, spark, min_labelled):
    start, end = _ragged_log(tmp_path / "log")
    local_window = read_window(start, end, str(tmp_path / "log")).to_pandas()
    labelled = local_window.sample(600, random_state=1)
    given = feedback.frame([{"request_id": r, "label": "cat" if k % 3 else "owl", "flag": None, "revision": 1}
                            for k, r in enumerate(labelled["request_id"])])
    options = SliceOptions(min_support=20, min_labelled=min_labelled)
    local = mine_window(feedback.attach(local_window, given), champion_run_id="champ", fraction=0.1, options=options, seed=2)
    job = spark_engine.Job(start, end, str(tmp_path / "log"), given, "champ", None, 0.1, options, 2, "reasons", tmp_path / "work")
    mined, scored = spark_engine.mine(spark, job)

    assert local.queue["schema_version"].dtype == float and local.queue["retried"].dtype == object
    assert mined.search == local.search and mined.search.tested > 0
    assert content_hash(mined.queue) == content_hash(local.queue)
    assert (mined.queue.dtypes == local.queue.dtypes).all() and scored == 0
    assert (mined.window_rows, mined.champion_rows, mined.budget) == (local.window_rows, local.champion_rows, local.budget)
    assert mined.candidates == {reason: len(picks) for reason, picks in local.picks.items()}
    for reason, picks in mined.picks.items():  # each reason's first 2 x budget rows, in the local order
        head = local.picks[reason].iloc[:2 * local.budget]
        assert local_window.loc[head.index, "request_id"].tolist() == picks.index.get_level_values(0).tolist()
        assert np.array_equal(head["score"].to_numpy(), picks["score"].to_numpy())


def test_exact_quantiles_are_numpys_to_the_bit(spark):
    rng = np.random.default_rng(4)
    for n in (1, 7, 5000):
        spread = rng.standard_cauchy(n)
        ties = np.round(rng.random(n), 1)
        holes = np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n))
        frame = spark.createDataFrame(pd.DataFrame({"spread": spread, "ties": ties, "holes": holes,
                                                    "none": np.full(n, np.nan)})).repartition(3)
        for points in ([0.1, 0.25, 0.5, 0.75], [0.0, 1.0], np.linspace(0, 1, 9)[1:-1]):
            found = exact_quantiles(frame, ["spread", "ties", "holes", "none"], points, relative_error=1e-3)
            for column, values in (("spread", spread), ("ties", ties), ("holes", holes[~np.isnan(holes)])):
                if len(values):
                    assert np.array_equal(found[column], np.quantile(values, points)), (n, column, points)
            assert found["none"] is None


def test_a_bracket_that_misses_is_widened_until_it_holds_the_order_statistics(spark):
    values = np.random.default_rng(6).normal(size=3000)
    clean = spark.createDataFrame(pd.DataFrame({"x": values})).repartition(2)
    points = [0.1, 0.5, 0.9]
    wrong = np.array([[5.0, 6.0], [-6.0, -5.0], [0.0, 0.0]])  # above, below, and too narrow for its points
    found = _settle(clean, {"x": _Target.of(len(values), points)}, {"x": wrong}, margin=1e-3)
    assert np.array_equal(found["x"], np.quantile(values, points))
