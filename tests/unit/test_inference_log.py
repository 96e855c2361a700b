"""The inference log (``projects.inference_log``): parts of bounded size and age, written whole,
read back by time window, a full queue counted, and a kill -9 losing at most the last seconds."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from projects import inference_log
from projects.inference_log import Batch, InferenceLogError, LogConfig, Writer
from registry_hooks.inference_records import read_window

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 9, 59, 58, tzinfo=UTC)


def batch(n: int, moment: dt.datetime = T0, start: int = 0, width: int = 12) -> Batch:
    ids = np.asarray([f"id-{i}" for i in range(start, start + n)], dtype=object)
    pixels = (np.arange(start, start + n)[:, None] + np.arange(width)[None, :]).astype(np.uint8)
    return Batch(moment, {"request_id": ids, "prediction": np.full(n, "nothing", dtype=object)}, pixels,
                 constants={"model_run_id": "run1", "model_id": "m-1"})


def parts(root: Path) -> list[Path]:
    return sorted(root.rglob("part-*.parquet"))


@pytest.fixture
def writer(tmp_path):
    made = []

    def make(**config) -> Writer:
        made.append(Writer(LogConfig(str(tmp_path / "log"), **config)))
        return made[-1]

    yield make
    for w in made:
        w.close()


def test_a_part_per_1024_rows_and_the_rest_on_close(writer, tmp_path, monkeypatch):
    monkeypatch.setattr(inference_log, "FLUSH_SECONDS", 60.0)  # only size and close trigger here
    log = writer()
    for i in range(10):
        assert log.submit(batch(256, start=256 * i))
    deadline = time.monotonic() + 10
    while log.stats()["rows_written"] < 2048 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.stats()["rows_written"] >= 2048 and log.stats()["rows_queued"] <= 512
    log.close()
    stats = log.stats()
    assert (stats["rows_written"], stats["rows_dropped"], stats["write_errors"], stats["rows_queued"]) == (2560, 0, 0, 0)
    files = parts(tmp_path / "log")
    sizes = [pq.read_metadata(f).num_rows for f in files]
    assert sum(sizes) == 2560 and all(s >= 1024 for s in sizes[:-1]) and len(files) == stats["parts_written"]
    assert all(f.parent.as_posix().endswith("date=2026-03-01/hour=09") for f in files)
    assert all(f.name.startswith(f"part-{os.getpid()}-") for f in files)


def test_a_few_rows_are_written_after_two_seconds_without_close(writer, tmp_path, monkeypatch):
    monkeypatch.setattr(inference_log, "FLUSH_SECONDS", 0.3)
    log = writer()
    log.submit(batch(3))
    time.sleep(0.1)
    assert parts(tmp_path / "log") == []
    deadline = time.monotonic() + 5
    while not parts(tmp_path / "log") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [pq.read_metadata(f).num_rows for f in parts(tmp_path / "log")] == [3]


def test_rows_are_stored_with_version_time_model_and_a_pixel_reference(writer, tmp_path):
    log = writer()
    log.submit(batch(4))
    assert log.flush()
    table = pq.read_table(parts(tmp_path / "log")[0]).to_pylist()
    assert [r["request_id"] for r in table] == ["id-0", "id-1", "id-2", "id-3"]
    first = table[0]
    assert first["schema_version"] == inference_log.SCHEMA_VERSION and first["time"] == T0
    assert (first["model_run_id"], first["model_id"], first["prediction"]) == ("run1", "m-1", "nothing")
    import hashlib

    assert first["input_sha256"] == hashlib.sha256(bytes(range(12))).hexdigest() and "pixels" not in first


def test_full_inputs_keep_the_pixels(writer, tmp_path):
    log = writer(inputs="full")
    log.submit(batch(2, start=5))
    log.close()
    rows = pq.read_table(parts(tmp_path / "log")[0]).to_pylist()
    assert np.frombuffer(rows[1]["pixels"], np.uint8).tolist() == list(range(6, 18))


def test_rows_are_split_by_hour_and_a_window_reads_only_its_hours(writer, tmp_path):
    log = writer()
    hours = [T0 - dt.timedelta(hours=1), T0, T0 + dt.timedelta(seconds=3), T0 + dt.timedelta(hours=30)]
    for k, moment in enumerate(hours):
        log.submit(batch(5, moment, start=10 * k))
    log.close()
    folders = sorted({f.parent.relative_to(tmp_path / "log").as_posix() for f in parts(tmp_path / "log")})
    assert folders == ["date=2026-03-01/hour=08", "date=2026-03-01/hour=09", "date=2026-03-01/hour=10", "date=2026-03-02/hour=15"]
    window = read_window(T0, T0 + dt.timedelta(hours=1), root=str(tmp_path / "log"))
    assert sorted(window.column("request_id").to_pylist()) == sorted(f"id-{i}" for i in [*range(10, 15), *range(20, 25)])
    assert read_window(T0 + dt.timedelta(days=3), T0 + dt.timedelta(days=4), root=str(tmp_path / "log")).num_rows == 0
    # a local time zone reads the same instants; a naive datetime is refused
    paris = dt.timezone(dt.timedelta(hours=1))
    assert read_window(T0.astimezone(paris), (T0 + dt.timedelta(hours=1)).astimezone(paris), root=str(tmp_path / "log")).num_rows == 10
    with pytest.raises(ValueError, match="timezone-aware"):
        read_window(T0.replace(tzinfo=None), T0, root=str(tmp_path / "log"))


def test_a_window_over_parts_with_different_columns_has_all_of_them(writer, tmp_path):
    log = writer()
    log.submit(batch(2))
    assert log.flush()
    with_weather = batch(2, start=2)
    log.submit(Batch(T0, {**with_weather.columns, "weather": np.asarray(["rain", "fog"], dtype=object)}, with_weather.pixels))
    log.close()
    rows = read_window(T0, T0 + dt.timedelta(seconds=1), root=str(tmp_path / "log")).to_pylist()
    assert sorted((r["request_id"], r["weather"]) for r in rows) == [("id-0", None), ("id-1", None), ("id-2", "rain"), ("id-3", "fog")]


def test_readers_never_see_a_part_being_written(writer, tmp_path, monkeypatch):
    """The part appears under its final name only once complete: while the writer is held inside
    the rename, the folder holds a dot-file the reader skips."""
    log = writer()
    entered, release = threading.Event(), threading.Event()
    real_mv = log.fs.mv

    def slow_mv(source, target, **kwargs):
        entered.set()
        release.wait(10)
        return real_mv(source, target, **kwargs)

    monkeypatch.setattr(log.fs, "mv", slow_mv)
    log.submit(batch(7))
    flushed = threading.Thread(target=log.flush)
    flushed.start()
    assert entered.wait(10)
    folder = tmp_path / "log" / "date=2026-03-01" / "hour=09"
    hidden = [p.name for p in folder.iterdir()]
    assert len(hidden) == 1 and hidden[0].startswith(".part-") and hidden[0].endswith(".parquet.tmp")
    assert pq.read_metadata(folder / hidden[0]).num_rows == 7  # complete before the rename
    assert read_window(T0, T0 + dt.timedelta(hours=1), root=str(tmp_path / "log")).num_rows == 0
    release.set()
    flushed.join(10)
    assert read_window(T0, T0 + dt.timedelta(hours=1), root=str(tmp_path / "log")).num_rows == 7


class Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record):
        self.seen.append(record.getMessage())


def test_a_full_queue_waits_50_ms_then_counts_the_drop(writer, monkeypatch):
    monkeypatch.setattr(inference_log, "QUEUE_ROWS", 8)
    monkeypatch.setattr(inference_log, "FLUSH_SECONDS", 60.0)  # nothing leaves the queue meanwhile
    log, messages = writer(), Messages()
    assert log.submit(batch(8))
    logging.getLogger("projects.inference_log").addHandler(messages)
    try:
        started = time.monotonic()
        assert not log.submit(batch(3))
        waited = time.monotonic() - started
    finally:
        logging.getLogger("projects.inference_log").removeHandler(messages)
    assert 0.04 <= waited < 0.5
    assert log.stats()["rows_dropped"] == 3 and log.stats()["batches_dropped"] == 1
    assert any("dropped 3 row(s)" in m for m in messages.seen)
    log.close()
    assert log.stats()["rows_written"] == 8


def test_drops_and_counts_reach_the_metrics_file(writer, tmp_path):
    log = writer()
    log.submit(batch(4))
    log.close()
    assert not log.submit(batch(2))  # after close: dropped, counted
    files = list((tmp_path / "log" / inference_log.METRICS_DIR).glob("writer-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["rows_written"] == 4
    assert log.stats()["rows_dropped"] == 2


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GATEKEEPER_INFERENCE_LOG": ""}, "GATEKEEPER_INFERENCE_LOG is empty"),
        ({"GATEKEEPER_INFERENCE_LOG": "  "}, "GATEKEEPER_INFERENCE_LOG is empty"),
        ({"GATEKEEPER_LOG_INPUTS": "all"}, "GATEKEEPER_LOG_INPUTS='all' is not one of reference, full"),
        ({"GATEKEEPER_LOG_INPUTS": "FULL"}, "GATEKEEPER_LOG_INPUTS='FULL' is not one of"),
    ],
)
def test_bad_environment_values_name_the_variable(environ, message):
    with pytest.raises(InferenceLogError, match=message):
        LogConfig.from_env(environ)


def test_environment_defaults_off_and_uris():
    assert LogConfig.from_env({}) == LogConfig("./inference-log", "reference")
    assert LogConfig.from_env({"GATEKEEPER_INFERENCE_LOG": "off"}).root is None
    assert inference_log.writer_for(LogConfig(None)) is None
    assert LogConfig.from_env({"GATEKEEPER_INFERENCE_LOG": "s3://bucket/log", "GATEKEEPER_LOG_INPUTS": "full"}) == LogConfig("s3://bucket/log", "full")


def test_an_fsspec_uri_works_like_a_folder():
    root = f"memory://inference-test-{os.getpid()}"
    log = Writer(LogConfig(root))
    log.submit(batch(6))
    log.close()
    assert read_window(T0, T0 + dt.timedelta(hours=1), root=root).num_rows == 6


SCORER = textwrap.dedent(
    """
    import datetime as dt, sys, time
    import numpy as np
    from projects import inference_log
    from projects.inference_log import Batch, LogConfig

    log = inference_log.writer_for(LogConfig(sys.argv[1]))
    for i in range(100000):
        ids = np.asarray([f"r{i}"], dtype=object)
        log.submit(Batch(dt.datetime.now(dt.timezone.utc), {"request_id": ids}, np.zeros((1, 4), np.uint8)))
        print(i, time.time(), flush=True)
        time.sleep(0.01)
    """
)


def _scorer(tmp_path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCORER, str(tmp_path / "log")], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def _sent(proc: subprocess.Popen) -> list[tuple[int, float]]:
    return [(int(i), float(t)) for i, t in (line.split() for line in proc.stdout.read().splitlines())]


def _logged(tmp_path) -> list[int]:
    now = dt.datetime.now(UTC)
    table = read_window(now - dt.timedelta(hours=1), now + dt.timedelta(hours=1), root=str(tmp_path / "log"))
    return sorted(int(r[1:]) for r in table.column("request_id").to_pylist()) if table.num_rows else []


def test_kill_9_loses_at_most_the_last_two_seconds(tmp_path):
    proc = _scorer(tmp_path)
    time.sleep(6)  # imports, then about 4 s of requests: at least one timed part is written
    proc.kill()
    killed = time.time()
    proc.wait(10)
    sent, logged = _sent(proc), _logged(tmp_path)
    assert len(logged) > 0 and logged == list(range(len(logged)))  # a prefix, no holes
    lost = [t for i, t in sent if i >= len(logged)]
    assert lost, "a kill -9 always loses the rows still waiting"
    # everything older than the flush period (plus one write and scheduling slack) is on disk
    assert killed - min(lost) <= inference_log.FLUSH_SECONDS + 1.0, (killed - min(lost), len(lost))


def test_sigterm_writes_everything_then_dies_of_the_signal(tmp_path):
    proc = _scorer(tmp_path)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == -signal.SIGTERM
    sent = _sent(proc)
    assert _logged(tmp_path) == [i for i, _ in sent]
