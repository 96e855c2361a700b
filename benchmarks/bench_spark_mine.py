"""``mine`` on the Spark engine (local mode) against the local engine: time, memory, the same queue.

    .venv/bin/python benchmarks/bench_spark_mine.py       # 1M and 5M rows on both engines, 50M on Spark alone (README figures)
    .venv/bin/python benchmarks/bench_spark_mine.py --sizes 20000 --spark-only-sizes "" --engines local   # a smoke run
    .venv/bin/python benchmarks/bench_spark_mine.py --workdir /data/bench-mine --keep   # generate once, mine again later

The data, per size N: an inference log in the scorer's layout, ``<root>/date=YYYY-MM-DD/hour=HH/part-0.parquet``
with the columns ``projects.inference_log.to_table`` writes (schema_version, time, model_run_id,
model_id, request_id ``<yyyymmddHH>-<32 hex>``, prediction, confidence, ``p_<class>`` for the four
road-scene classes, weather, light, three ``img_*`` summaries, input_sha256), N rows spread evenly
over the 168 hours of the 7 days before END. It is generated vectorised, hour by hour (an hour of
the 50M-row log is 300k rows; the log is never held whole), with no Python object per row. 4/5 of
the rows were served by the champion's run, the rest by the previous champion's; 5 % of the
predictions are wrong, 50 % on rain at night (the slice the search must find). A feedback file
(Parquet: request_id, label, flag, note) labels about 3,000 champion rows with the truth (the slice
search runs on labels from 500 labelled rows) and flags about 300 others ``wrong`` (where the
prediction is) or ``unsure``. A SQLite tracking store in the work folder holds ``road-scenes`` v1
(the previous champion's run) and v2 ``@champion``, whose run is made before the log names it.
Log and feedback are written once per size (``--keep`` and ``--workdir`` reuse them); generation
is timed apart and is not in the mining time.

Per size and engine, one fresh ``python -m projects.mine --engine E --spark-master M
--registered-model road-scenes --candidate none --feedback FILE --log ROOT --end END --window-days 7
--out OUT --budget 0.02 --seed 0`` with ``MLFLOW_TRACKING_URI`` at the store: the wall time of the
whole process (interpreter start, imports, Spark session, reading the window, mining, writing the
queue, logging the run), the job's own peak RSS (its ``VmHWM``, read every 0.1 s until it exits:
what it grows in its last 0.1 s is missed), and for Spark the peak RSS of the JVM (in local mode
also the executors) and the peak sum of the Python workers' RSS below the job, sampled every
0.1 s (``benchmarks._common.Descendants``). Checked, not only timed: both engines at a size must
write the same queue folder (named by the queue's content hash, read from the job's last line
``queue <folder> logged to run <id>``) and the same manifest fields ``queue_rows``, ``reasons``,
``slices.found`` and ``slices.basis``; a disagreement is printed and recorded.

The local engine holds the whole window in pandas (``read_window(...).to_pandas()``, the slice
search and the queue in memory): the ``--spark-only-sizes`` (default 50M rows: about 7 GB of
Parquet, far more as pandas objects) run on Spark alone.

No assertions: figures go to ``benchmarks/results/spark_mine.json`` (``readme_tables.spark_mine``
makes README rows of them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import Descendants, ResultFile, log, machine_lines, markdown_table, status_kib  # noqa: E402
from projects.inference_log import SCHEMA_VERSION  # noqa: E402
from registry_hooks.inference_records import partition  # noqa: E402

ENGINES = ("local", "spark")
SIZES = "1000000,5000000"
SPARK_ONLY_SIZES = "50000000"
PACKAGES = ("pyspark", "pyarrow", "pandas", "scipy")
MODEL = "road-scenes"
EXPERIMENT = "bench-mine"
CLASSES = ("orange_cone", "green_cone", "pedestrian", "nothing")  # as tests/unit/test_mine_entry.py
WEATHERS, WEATHER_SHARES = ("clear", "rain", "fog"), (0.6, 0.3, 0.1)
LIGHTS, LIGHT_SHARES = ("day", "night"), (0.6, 0.4)
SUMMARIES = ("img_brightness", "img_contrast", "img_sharpness")
END = dt.datetime(2026, 12, 5, 12, tzinfo=dt.timezone.utc)
WINDOW_DAYS = 7
HOURS = WINDOW_DAYS * 24
CHAMPION_SHARE = 0.8
ERROR_RATE, SLICE_ERROR_RATE = 0.05, 0.5  # wrong predictions: everywhere, and on rain at night
LABELLED, FLAGGED = 3000, 300  # feedback, about: labelled champion rows, flagged rows
GENERATOR = "1"  # a cached log another version of the generator wrote is written again
COMPARED = ("queue", "queue_rows", "reasons", "slices.found", "slices.basis")  # "queue": the folder's name
QUEUE_LINE = re.compile(r"^queue (?P<folder>.+) logged to run (?P<run>\S+)$", re.M)
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
HEX_PAIRS = _HEX[np.arange(256) >> 4].astype("<u2") | _HEX[np.arange(256) & 15].astype("<u2") << 8  # a byte's two digits


# -- the data --------------------------------------------------------------------------------------


def hex_strings(prefix: bytes, raw: np.ndarray) -> pa.Array:
    """``prefix`` and the hex digits of each row of ``raw`` (n x k bytes) as one Arrow string
    array, built from a single character buffer: no Python string per row."""
    n, k = raw.shape
    width = len(prefix) + 2 * k
    chars = np.empty((n, width), np.uint8)
    chars[:, :len(prefix)] = np.frombuffer(prefix, np.uint8)
    chars[:, len(prefix):] = HEX_PAIRS[raw].view(np.uint8)
    offsets = np.arange(n + 1, dtype=np.int32) * width
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars))


def strings(codes: np.ndarray, values: tuple[str, ...]) -> pa.Array:
    """``values[codes]`` as a plain Arrow string array (the log stores no dictionaries)."""
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(values, pa.string())).dictionary_decode()


def hour_rows(rng: np.random.Generator, hour: dt.datetime, n: int, runs: dict[str, str],
              rates: tuple[float, float]) -> tuple[pa.Table, pa.Table]:
    """One hour of the log, as the scorer writes it, and the feedback given on it (``rates``: the
    chance that a champion row is labelled, that another row is flagged)."""
    p = rng.dirichlet(np.full(len(CLASSES), 0.5), n).astype(np.float32)
    predicted = p.argmax(axis=1)
    weather = rng.choice(len(WEATHERS), n, p=WEATHER_SHARES)
    light = rng.choice(len(LIGHTS), n, p=LIGHT_SHARES)
    planted = (weather == WEATHERS.index("rain")) & (light == LIGHTS.index("night"))
    wrong = rng.random(n) < np.where(planted, SLICE_ERROR_RATE, ERROR_RATE)
    truth = np.where(wrong, (predicted + rng.integers(1, len(CLASSES), n)) % len(CLASSES), predicted)
    served_by = (rng.random(n) >= CHAMPION_SHARE).astype(np.int32)  # 0: the champion, 1: the previous one
    moments = np.datetime64(hour.replace(tzinfo=None), "us") + np.sort(rng.integers(0, 3_600_000_000, n)).astype("timedelta64[us]")
    request_ids = hex_strings(f"{hour:%Y%m%d%H}-".encode(), rng.integers(0, 256, (n, 16), dtype=np.uint8))
    log_table = pa.table({
        "schema_version": pa.array(np.full(n, SCHEMA_VERSION, np.int16)),
        "time": pa.array(moments, pa.timestamp("us", tz="UTC")),
        "model_run_id": strings(served_by, (runs["champion"], runs["previous"])),
        "model_id": strings(served_by, (f"m-{runs['champion']}", f"m-{runs['previous']}")),
        "request_id": request_ids,
        "prediction": strings(predicted, CLASSES),
        "confidence": pa.array(p.max(axis=1)),
        **{f"p_{name}": pa.array(p[:, k]) for k, name in enumerate(CLASSES)},
        "weather": strings(weather, WEATHERS),
        "light": strings(light, LIGHTS),
        **{name: pa.array(rng.random(n, dtype=np.float32)) for name in SUMMARIES},
        "input_sha256": hex_strings(b"", rng.integers(0, 256, (n, 32), dtype=np.uint8)),
    })
    labelled = (served_by == 0) & (rng.random(n) < rates[0])
    flagged = ~labelled & (rng.random(n) < rates[1])
    chosen = np.flatnonzero(labelled | flagged)
    is_label, is_wrong = labelled[chosen], wrong[chosen]
    feedback = pa.table({
        "request_id": request_ids.take(pa.array(chosen)),
        "label": pa.array(np.asarray(CLASSES, object)[truth[chosen]], pa.string(), mask=~is_label),
        "flag": pa.array(np.where(is_wrong, "wrong", "unsure").astype(object), pa.string(), mask=is_label),
        "note": pa.array(np.full(len(chosen), "looks wrong", object), pa.string(), mask=is_label | ~is_wrong),
    })
    return log_table, feedback


def generate(folder: Path, n: int, runs: dict[str, str], seed: int) -> dict:
    """``folder/log/`` (the log, hour by hour) and ``folder/feedback.parquet``, written under a
    ``.partial`` name and renamed when complete; returns what was written, with its time."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.perf_counter()
    per_hour = np.full(HOURS, n // HOURS)
    per_hour[: n % HOURS] += 1
    rates = (min(1.0, LABELLED / (CHAMPION_SHARE * n)), min(1.0, FLAGGED / n))
    feedback, champion_rows = [], 0
    for index, rows in enumerate(per_hour):
        if not rows:
            continue
        hour = END - dt.timedelta(hours=HOURS - index)
        table, given = hour_rows(np.random.default_rng([seed, n, index]), hour, int(rows), runs, rates)
        part = partial / "log" / partition(hour)
        part.mkdir(parents=True)
        pq.write_table(table, part / "part-0.parquet")
        feedback.append(given)
        champion_rows += pc.sum(pc.equal(table["model_run_id"], runs["champion"])).as_py()
    given = pa.concat_tables(feedback)
    pq.write_table(given, partial / "feedback.parquet")
    seconds = time.perf_counter() - started
    labels = given["label"].length() - given["label"].null_count
    record = {"generator": GENERATOR, "rows": n, "seed": seed, "runs": runs, "seconds": seconds,
              "rows_per_second": n / seconds, "champion_rows": champion_rows, "labels": labels,
              "flags": given["flag"].length() - given["flag"].null_count,
              "log_bytes": sum(f.stat().st_size for f in (partial / "log").rglob("*.parquet"))}
    (partial / "generated.json").write_text(json.dumps(record, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return record


def cached_log(cache: Path, n: int, runs: dict[str, str], seed: int) -> dict:
    """The size's log and feedback: the ones already in ``cache`` when the same generator wrote
    them for the same runs and seed (``cached`` true), else freshly generated."""
    folder = cache / str(n)
    marker = folder / "generated.json"
    if marker.exists():
        record = json.loads(marker.read_text())
        if (record["generator"], record["runs"], record["seed"]) == (GENERATOR, runs, seed):
            return record | {"cached": True}
    return generate(folder, n, runs, seed) | {"cached": False}


def tracking_store(workdir: Path) -> dict[str, str]:
    """``road-scenes`` v1 (the previous champion's run) and v2 ``@champion`` in the work folder's
    store, made once per folder; the two run ids."""
    made = workdir / "store.json"
    if made.exists():
        return json.loads(made.read_text())
    (workdir / "mlflow.db").unlink(missing_ok=True)  # half made by an interrupted run
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.create_experiment(EXPERIMENT, artifact_location=(workdir / "artifacts").as_uri())
    client.create_registered_model(MODEL)
    runs = {}
    for role in ("previous", "champion"):
        run = client.create_run(experiment, run_name=f"train ({role})")
        client.set_terminated(run.info.run_id)
        version = client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        runs[role] = run.info.run_id
    client.set_registered_model_alias(MODEL, "champion", version.version)
    made.write_text(json.dumps(runs) + "\n")
    return runs


# -- one mining job --------------------------------------------------------------------------------


class _Job(Descendants):
    """The job's own peak RSS (its ``VmHWM`` as last read before it exits) beside the JVM and
    the Python workers below it."""

    def __init__(self, pid: int):
        super().__init__(pid, interval=0.1)
        self.driver_mb = 0.0

    def sample(self) -> None:
        try:
            self.driver_mb = max(self.driver_mb, status_kib(self.root).get("VmHWM", 0) / 1024)
        except OSError:  # exited
            pass
        super().sample()


def has_engine_option() -> bool:
    """Whether ``python -m projects.mine`` takes ``--engine`` yet (whether the Spark engine has landed)."""
    from projects.mine.__main__ import build_parser

    return not build_parser().parse_known_args(["--engine", "local"])[1]


def mine(engine: str, data: Path, out: Path, args: argparse.Namespace, engine_option: bool) -> dict:
    """``python -m projects.mine`` on the log and feedback in ``data``, in a fresh process with its
    working folder ``out``: its time and memory, and what it wrote (``compared``: ``COMPARED``)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    command = [sys.executable, "-m", "projects.mine",
               *(["--engine", engine, "--spark-master", args.spark_master] if engine_option else []),
               "--registered-model", MODEL, "--candidate", "none", "--feedback", str(data / "feedback.parquet"),
               "--log", str(data / "log"), "--end", END.isoformat(), "--window-days", str(WINDOW_DAYS),
               "--out", str(out / "queues"), "--budget", str(args.budget), "--seed", "0"]
    with open(out / "stderr.txt", "w") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=out, stdout=subprocess.PIPE, stderr=stderr, text=True)
        with _Job(process.pid) as job:
            stdout = process.communicate()[0]
        seconds = time.perf_counter() - started
    (out / "stdout.txt").write_text(stdout)
    figures = {"seconds": seconds, "driver_peak_mb": job.driver_mb, "jvm_peak_mb": job.jvm_mb,
               "workers_peak_mb": job.workers_mb, "exit": process.returncode}
    queue = QUEUE_LINE.search(stdout)
    if process.returncode != 0 or queue is None:
        return figures | {"error": (out / "stderr.txt").read_text()[-3000:] or stdout[-3000:]}
    folder = out / queue["folder"]
    manifest = json.loads((folder / "manifest.json").read_text()) | {"queue": folder.name}
    return figures | {"run_id": queue["run"], "window_rows": manifest["window"]["rows"],
                      "budget_rows": manifest["budget"]["rows"], "queue_rows": manifest["queue_rows"],
                      "slices": [found["slice"] for found in manifest["slices"]["found"]], "notes": manifest["notes"],
                      "compared": {key: _field(manifest, key) for key in COMPARED}}


def _field(manifest: dict, dotted: str):
    for key in dotted.split("."):
        manifest = manifest[key]
    return manifest


def agreement(found: dict[str, dict]) -> tuple[bool | None, list[str]]:
    """Whether the engines wrote the same queue at one size (every ``COMPARED`` field), and each
    difference; None when fewer than two engines ran or one failed."""
    failed = [engine for engine, figures in found.items() if "error" in figures]
    if len(found) < 2 or failed:
        return None, [f"not compared: {', '.join(failed)} failed"] if failed else []
    (first, theirs), *others = found.items()
    differences = [f"engines disagree on {key}: {first} {_short(theirs['compared'][key])} vs {engine} {_short(figures['compared'][key])}"
                   for engine, figures in others for key in COMPARED
                   if theirs["compared"][key] != figures["compared"][key]]
    return not differences, differences


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 300 else text[:300] + " …"


# -- the benchmark ---------------------------------------------------------------------------------


def summary(found: dict) -> str:
    """One job's figures in a line."""
    memory = f"driver peak {found['driver_peak_mb']:,.0f} MB, JVM {found['jvm_peak_mb']:,.0f} MB, workers {found['workers_peak_mb']:,.0f} MB"
    if "error" in found:
        return f"failed (exit {found['exit']}) after {found['seconds']:.1f} s, {memory}:\n{found['error']}"
    slices = found["slices"]
    return (f"{found['seconds']:.1f} s, {memory}; {found['window_rows']:,} rows in the window, queue "
            f"{found['compared']['queue'][:12]}… of {found['queue_rows']:,} rows, {len(slices)} slice(s) found"
            + (f", first {slices[0]} ({found['compared']['slices.basis']})" if slices else ""))


def _sizes(text: str) -> list[int]:
    return [int(size) for size in text.split(",") if size.strip()]


def _engines(text: str) -> list[str]:
    chosen = [engine.strip() for engine in text.split(",") if engine.strip()]
    if not chosen or set(chosen) - set(ENGINES):
        raise argparse.ArgumentTypeError(f"a comma-separated choice of {', '.join(ENGINES)}, got {text!r}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=_sizes, default=SIZES, help=f"log rows, comma-separated, mined by every engine (default {SIZES})")
    parser.add_argument("--spark-only-sizes", type=_sizes, default=SPARK_ONLY_SIZES,
                        help=f"log rows mined by Spark alone: the local engine holds the whole window in pandas "
                             f"(default {SPARK_ONLY_SIZES}; '' for none)")
    parser.add_argument("--engines", type=_engines, default=",".join(ENGINES), help=f"default {','.join(ENGINES)}")
    parser.add_argument("--spark-master", default="local[*]", help="passed to --spark-master (default local[*])")
    parser.add_argument("--budget", type=float, default=0.02, help="the job's --budget (default 0.02)")
    parser.add_argument("--seed", type=int, default=0, help="the data's seed (the job's --seed is 0)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="the store, the logs, the queues (default: a new temporary folder); a log a run with "
                             "--keep left there is used again, not generated")
    parser.add_argument("--keep", action="store_true",
                        help="keep each size's log and feedback for a later run with --workdir (without it each is "
                             "deleted once mined, and a temporary work folder at the end)")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> list[tuple[int, list[str]]]:
    """(rows, engines) in the order they run: every engine on ``--sizes``, Spark alone after."""
    alone = [engine for engine in args.engines if engine != "local"]
    if args.spark_only_sizes and not alone:
        log(f"--spark-only-sizes {','.join(map(str, args.spark_only_sizes))} skipped: spark is not in --engines")
    return [(n, args.engines) for n in args.sizes] + [(n, alone) for n in args.spark_only_sizes if alone]


def table(records: list[dict]) -> str:
    answers = {True: "yes", False: "**NO**", None: "—"}
    rows = []
    for record in records:
        generation = record["generation"]
        made = f"{generation['seconds']:.1f} s" + (" (an earlier run)" if generation["cached"] else "")
        for position, (engine, found) in enumerate(record["engines"].items()):
            spark, failed = engine != "local", "error" in found
            rows.append([f"{record['rows']:,}", engine, f"failed (exit {found['exit']})" if failed else f"{found['seconds']:.1f} s",
                         "" if position else made, f"{found['driver_peak_mb']:,.0f} MB",
                         f"{found['jvm_peak_mb']:,.0f} MB" if spark else "—",
                         f"{found['workers_peak_mb']:,.0f} MB" if spark else "—",
                         "—" if failed else f"{found['queue_rows']:,}", answers[record["same_queue"]]])
    return markdown_table(["rows", "engine", "time", "generation", "driver peak", "JVM peak", "workers peak",
                           "queue rows", "same queue"], rows)


def main() -> None:
    args = parse_args()
    result_file = ResultFile("spark_mine", PACKAGES)
    print(machine_lines(PACKAGES)[0], flush=True)
    steps = plan(args)
    engine_option = has_engine_option()
    if not engine_option:
        if any(engine != "local" for _, engines in steps for engine in engines):
            raise SystemExit("python -m projects.mine has no --engine option yet (no Spark engine): run with --engines local")
        log("python -m projects.mine has no --engine option yet: the local engine runs without --engine/--spark-master")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_spark_mine_"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"work folder {workdir}")
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{workdir}/mlflow.db", MLFLOW_EXPERIMENT_NAME=EXPERIMENT,
                      DO_NOT_TRACK="true", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
                      PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        os.environ.pop(name, None)
    records = []
    try:
        runs = tracking_store(workdir)
        for n, engines in steps:
            log(f"{n:,} rows: the log and feedback")
            data = cached_log(workdir / "cache", n, runs, args.seed)
            log(f"{n:,} rows: " + ("written by an earlier run, used again" if data["cached"] else
                f"generated in {data['seconds']:.1f} s ({data['rows_per_second']:,.0f} rows/s)")
                + f": {data['log_bytes'] / 2**20:,.0f} MB of Parquet, {data['champion_rows']:,} champion rows, "
                  f"{data['labels']:,} labels, {data['flags']:,} flags")
            found = {}
            for engine in engines:
                log(f"{engine} engine on {n:,} rows")
                found[engine] = mine(engine, workdir / "cache" / str(n), workdir / "runs" / f"{n}-{engine}", args, engine_option)
                log(summary(found[engine]))
            if "local" in args.engines and "local" not in engines:
                log(f"local engine not run on {n:,} rows: it holds the whole window in pandas (--spark-only-sizes)")
            same, differences = agreement(found)
            for difference in differences:
                log(f"{n:,} rows: {difference}")
            records.append({"rows": n, "generation": data, "engines": found, "same_queue": same,
                            "differences": differences})
            if not args.keep:
                shutil.rmtree(workdir / "cache" / str(n))
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            log(f"logs kept: --workdir {workdir} uses them again")
    figures = {"end": END.isoformat(), "window_days": WINDOW_DAYS, "budget": args.budget,
               "spark_master": args.spark_master, "engine_option": engine_option, "sizes": records}
    text = table(records)
    print(text)
    skipped = [f"{n:,}" for n, engines in steps if "local" in args.engines and "local" not in engines]
    if skipped:
        print(f"\nlocal engine not run on {', '.join(skipped)} rows: it holds the whole window in pandas.")
    result_file.write(figures | {"table": text})


if __name__ == "__main__":
    main()
