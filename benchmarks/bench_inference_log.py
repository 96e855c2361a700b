"""The inference log's cost: what writing every prediction down adds to a predict call.

One process, one served model (``projects.serving``'s wrapper around the road-scenes CNN at its
default width, logged to a throw-away SQLite store and loaded with ``mlflow.pyfunc.load_model``,
the path every MLflow serving route shares). "Off" is the same loaded model called with
``log_inference=false``: the same network, the same output DataFrame, no hand-over to the log.

(a) Latency per ``predict`` call at batch 1 and 256, logging on and off interleaved call by call
(so a slow moment of the shared machine hits both), for each ``GATEKEEPER_LOG_INPUTS`` mode:
medians, p90, the added milliseconds and on/off ratios of the medians, in wall time and in the
process's CPU time (steadier on a loaded machine). Goal (issue 11): < 5 % added at batch 256.

(b) Throughput: rows per second over back-to-back batch-256 calls for ``--seconds`` each, on and
off in four blocks (on, off, off, on), per wall second and per CPU second, the writer thread's
Parquet writing included (it shares the cores with torch); then the rows written, parts, drops and
the writer's own CPU time per 1,000 rows, read from the writer.

(c) The request thread's hand-over alone (building a call's record and queueing it), in
microseconds: the part of "on" that a request waits for, free of the forward pass's noise.

    .venv/bin/python benchmarks/bench_inference_log.py [--reps 200] [--seconds 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ResultFile, machine_lines, markdown_table, median, percentile  # noqa: E402

PACKAGES = ("pyarrow", "pandas", "fsspec")
BATCHES = (1, 256)
MODES = ("reference", "full")
OFF = {"log_inference": False}


def served_model(workdir: Path):
    """Log the wrapper once to a store under ``workdir``; returns its model URI."""
    import mlflow

    from projects import serving
    from projects.model import RoadSceneNet

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    mlflow.set_experiment("bench-inference-log")
    with mlflow.start_run():
        return serving.log_model(RoadSceneNet().eval()).model_uri


def load(uri: str, log_root: Path, mode: str):
    """The model as a scorer with this log configuration loads it (the writer is per config)."""
    import mlflow

    os.environ["GATEKEEPER_INFERENCE_LOG"] = str(log_root / mode)
    os.environ["GATEKEEPER_LOG_INPUTS"] = mode
    return mlflow.pyfunc.load_model(uri)


def frames():
    """A batch-256 scenes frame (pixels and metadata, as a caller with metadata sends) and its first row."""
    from projects.scenes import PIXEL_COLUMNS, SUMMARY_COLUMNS, generate

    table = generate(256, "rainy_season", seed=5)[["weather", "light", *SUMMARY_COLUMNS, *PIXEL_COLUMNS]]
    return {1: table.head(1), 256: table}


def _timed(model, frame, params) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call. The machine is shared: CPU time, which another
    process's load barely moves, is the steadier figure; it counts every thread of this process
    (torch's and the log writer's)."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.predict(frame, params=params)
    return time.perf_counter() - wall, time.process_time() - cpu


def latency(model, frame, reps: int) -> dict:
    """Call by call, on and off alternating (which goes first alternates too)."""
    samples = {"on": [], "off": []}
    for _ in range(5):  # warm-up: first calls allocate
        _timed(model, frame, None), _timed(model, frame, OFF)
    for rep in range(reps):
        for name in (("on", "off") if rep % 2 == 0 else ("off", "on")):
            samples[name].append(_timed(model, frame, None if name == "on" else OFF))
    figures: dict = {"reps": reps}
    for clock, k in (("wall", 0), ("cpu", 1)):
        values = {name: [s[k] for s in samples[name]] for name in samples}
        for name in values:
            figures[f"{clock}_{name}_median_ms"] = round(median(values[name]) * 1000, 3)
            figures[f"{clock}_{name}_p90_ms"] = round(percentile(values[name], 90) * 1000, 3)
        figures[f"{clock}_added_ms"] = round(figures[f"{clock}_on_median_ms"] - figures[f"{clock}_off_median_ms"], 3)
        figures[f"{clock}_ratio"] = round(figures[f"{clock}_on_median_ms"] / figures[f"{clock}_off_median_ms"], 4)
    return figures


def throughput(model, frame, seconds: float, writer) -> dict:
    """Rows per wall second and per CPU second, four alternating blocks of ``seconds / 2`` per
    setting; an "on" block ends once its rows are on disk, so the writing is charged to it."""
    rows, wall, cpu = {"on": 0, "off": 0}, {"on": 0.0, "off": 0.0}, {"on": 0.0, "off": 0.0}
    for name in ("on", "off", "off", "on"):
        params = None if name == "on" else OFF
        started, cpu_started = time.perf_counter(), time.process_time()
        while time.perf_counter() - started < seconds / 2:
            model.predict(frame, params=params)
            rows[name] += len(frame)
        if name == "on":
            writer.flush()
        wall[name] += time.perf_counter() - started
        cpu[name] += time.process_time() - cpu_started
    result = {}
    for name in rows:
        result[f"{name}_rows_per_s"] = round(rows[name] / wall[name], 1)
        result[f"{name}_rows_per_cpu_s"] = round(rows[name] / cpu[name], 1)
    result["ratio"] = round(result["on_rows_per_s"] / result["off_rows_per_s"], 4)
    result["cpu_ratio"] = round(result["on_rows_per_cpu_s"] / result["off_rows_per_cpu_s"], 4)
    return result


def hand_over(model, frame, reps: int) -> dict:
    """The request thread's share alone, in microseconds: building the record of a call and
    queueing it (what ``predict`` does after scoring when logging is on). Timed apart from the
    network because on a loaded machine the forward pass's noise is larger than this cost."""
    import datetime as dt

    from projects.scenes import PIXEL_COLUMNS

    wrapper = model.unwrap_python_model()
    output = wrapper.predict(None, frame, OFF)
    pixels = frame[PIXEL_COLUMNS].to_numpy(np.uint8)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        wrapper._log.submit(wrapper._record(frame, output, pixels, dt.datetime.now(dt.timezone.utc)))
        times.append(time.perf_counter() - started)
    return {"median_us": round(median(times) * 1e6, 1), "p90_us": round(percentile(times, 90) * 1e6, 1), "reps": reps}


def measure(uri: str, log_root: Path, mode: str, reps: int, seconds: float) -> dict:
    from projects import inference_log

    model = load(uri, log_root, mode)
    data = frames()
    figures = {f"batch_{n}": latency(model, data[n], reps if n == 1 else max(reps // 4, 20)) for n in BATCHES}
    figures["hand_over"] = {f"batch_{n}": hand_over(model, data[n], reps if n == 1 else max(reps // 4, 20)) for n in BATCHES}
    writer = inference_log.writer_for(inference_log.LogConfig.from_env())
    figures["throughput_batch_256"] = throughput(model, data[256], seconds, writer)
    started = time.perf_counter()
    writer.flush()
    figures["final_flush_s"] = round(time.perf_counter() - started, 3)
    figures["writer"] = writer.stats()
    figures["bytes_on_disk"] = sum(p.stat().st_size for p in (log_root / mode).rglob("part-*.parquet"))
    return figures


def report(results: dict) -> None:
    keys = ("off_median_ms", "on_median_ms", "added_ms", "ratio")
    header = ["inputs", "batch", *(f"{clock} {k.replace('_', ' ')}" for clock in ("wall", "cpu") for k in keys)]
    rows = [[mode, str(n), *(str(f[f"batch_{n}"][f"{clock}_{k}"]) for clock in ("wall", "cpu") for k in keys)]
            for mode, f in results.items() for n in BATCHES]
    print(markdown_table(header, rows))
    for mode, f in results.items():
        t, w = f["throughput_batch_256"], f["writer"]
        print(f"{mode}: batch-256 throughput off {t['off_rows_per_s']:,} rows/s, on {t['on_rows_per_s']:,} (on/off {t['ratio']}); "
              f"per CPU second off {t['off_rows_per_cpu_s']:,}, on {t['on_rows_per_cpu_s']:,} (on/off {t['cpu_ratio']}); "
              f"written {w['rows_written']:,} rows in {w['parts_written']} parts ({f['bytes_on_disk'] / 2**20:.1f} MiB, "
              f"writer CPU {1e6 * w['write_cpu_seconds'] / max(w['rows_written'], 1):.1f} ms per 1,000 rows), "
              f"dropped {w['rows_dropped']}, final flush {f['final_flush_s']} s")
        print(f"{mode}: the request thread's hand-over (record + queue) median "
              + ", ".join(f"{f['hand_over'][f'batch_{n}']['median_us']} us at batch {n}" for n in BATCHES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200, help="interleaved on/off pairs at batch 1 (a quarter at 256)")
    parser.add_argument("--seconds", type=float, default=6.0, help="throughput: seconds per setting")
    args = parser.parse_args()
    result = ResultFile("inference_log", PACKAGES)
    print("\n".join(machine_lines(("mlflow", "torch", *PACKAGES))))
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        uri = served_model(workdir)
        results = {mode: measure(uri, workdir / "log", mode, args.reps, args.seconds) for mode in MODES}
    report(results)
    goal = {clock: results["reference"]["batch_256"][f"{clock}_ratio"] - 1 for clock in ("wall", "cpu")}
    print("goal: < 5 % added at batch 256 (reference inputs): " + ", ".join(
        f"{clock} {100 * added:+.1f} % ({'met' if added < 0.05 else 'not met'})" for clock, added in goal.items()))
    result.write({"reps": args.reps, "seconds": args.seconds, "modes": results,
                  "goal": {"batch": 256, "max_added": 0.05, **{f"{c}_added": round(a, 4) for c, a in goal.items()},
                           "met": all(a < 0.05 for a in goal.values())}})


if __name__ == "__main__":
    main()
