"""What ``evaluate`` costs on top of the two models' own inference, and its peak memory.

    .venv/bin/python benchmarks/bench_evaluate.py            # the README figures (4-6 min on 2 cores)
    .venv/bin/python benchmarks/bench_evaluate.py --quick    # a smoke run (~2 min)
    .venv/bin/python benchmarks/bench_evaluate.py --profile  # also cProfile one evaluation of each (+1.5 min)

Budget (issue): evaluation overhead on top of the two models' own inference, at 100k rows, under
10 %; peak memory at 1M rows reported.

Everything runs against an embedded SQLite tracking store in a temporary directory (the
``evaluate`` code asks the gate through ``GatekeeperClient``, which opens the gated store on that
database in-process), with a small policy (accuracy, log-loss, a ``weather`` slice; no drift
required). For each model kind two versions are registered; v1 gets first-release evidence from
``evaluate`` on a small table and is promoted through the gate; then v2 is evaluated against it.
The code measured is this checkout's (the package is installed editable), uncommitted changes
included.

1. Overhead, measured side by side in one process, in alternating order when repeated (medians
   reported; the machine may be shared):

   (a) the two models' own inference: ``mlflow.pyfunc.load_model`` both versions (timed
       separately as "load"), then ``predict`` on the model's input columns of the same rows,
       the data already in memory, in exactly the calls ``evaluate`` makes (4,096 rows each, out
       of 20k-row batches: the same model work, so the difference is evaluate's own); the two
       sums added;
   (b) ``projects.evaluate.evaluate(models:/NAME/2, table.parquet, ...)``, wall time, on the
       table as ``save_version`` stores the pipeline's data (10k-row groups).

   overhead = (b - a) / a, with (a) = predict only; also printed: the same with loading counted
   as the models' own cost, and the overhead measured inside (b) alone -- (b) minus the time of
   its own ``predict`` calls, over that time -- which machine noise cannot move between two runs
   (a CNN predict run on a shared 2-core machine varies by ~10 %, as much as the budget).

   Two model kinds: a scikit-learn logistic regression on the tests' tabular task
   (``benchmarks/evidence.py``: 6 features, a ``weather`` slice; 5 reps) whose inference is almost
   free, so nearly all of (b) is overhead -- the fixed and per-row costs of the evidence; and the
   road-scenes CNN (``projects.train.train``, a couple of quick epochs, width 16 as in retrain) on
   ``projects.scenes.generate`` tables, the pipeline's real case (1 rep by default: ~3 min).

   Breakdown: during (b), functions of ``projects.evaluate`` (and the pyfunc ``predict``) are
   wrapped with timers from the outside (the package is not changed): the first pass (read,
   content hash, keys), the baseline lookup, model loading, the scoring pass (reading batches,
   predict, turning outputs into scores), outcomes, statistics, logging (dataset input, evidence,
   artifacts), the gate's preview, and the rest (run creation, params, metrics, setup). A thread
   samples the RSS every 5 ms and notes the phase of the peak.

2. Peak memory, in a fresh subprocess per case: ``evaluate`` on 1M rows of the tabular task, and on
   40k scenes rows (3085 columns, 3072 of them uint8 pixels) with evaluate's default batch of
   20k and with 4096 (``projects.model.predict_proba``'s); plus evaluate's first pass alone
   (``_read_keys``) on 40k, 100k and 200k scenes rows, to show how reading scales with the table
   (tables above 100k rows are the 100k table repeated with new row ids, written at once like
   ``save_version`` does). The peak is the process's own ``VmHWM`` (interpreter, imports, models,
   data, evidence), next to the RSS right after the imports and the table's size on disk and in
   memory. (``ru_maxrss`` is not used: in a child started by a big parent it reports at least
   the parent's RSS.)

No assertions: it prints figures and writes them to ``benchmarks/results/evaluate.json``, from which
the README's rows are generated (``benchmarks/readme_tables.py``).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from _common import ResultFile, machine_lines, markdown_table, median, own_peak_rss_mb  # noqa: E402

from benchmarks.evaluate_probes import PHASE_ORDER, PREDICT, RssSampler, timed_phases  # noqa: E402

BATCH = 20_000  # evaluate's default batch size
SK_MODEL, CNN_MODEL = "bench-sklearn", "bench-cnn"
SK_SLICES, CNN_SLICES = ["weather"], ["weather", "light", "label_name"]  # the latter: what retrain passes
POLICY = """\
version: 1
defaults:
  primary: {metric: accuracy, margin: 0.0}
  confidence: 0.95
  secondary:
    - {metric: log_loss, tolerance: 0.05}
  slices: {columns: [weather], metric: accuracy, tolerance: 0.03, min_size: 50}
  drift: {required: false}
"""
PIP = ["scikit-learn", "pandas", "numpy"]
PACKAGES = ("scikit-learn", "pandas", "pyarrow")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- models and data ---------------------------------------------------------------------------


def write_policy(workdir: Path) -> Path:
    path = workdir / "policy.yaml"
    path.write_text(POLICY)
    return path


def register_sklearn(model, columns: list[str]) -> str:
    import mlflow
    from mlflow.models import infer_signature

    from benchmarks.evidence import make_data

    sample = make_data(50, seed=5)[columns]
    with mlflow.start_run(run_name=f"train {SK_MODEL}"):
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=PIP, pyfunc_predict_fn="predict_proba",
                                        signature=infer_signature(sample, model.predict_proba(sample)))
    return str(mlflow.register_model(info.model_uri, SK_MODEL).version)


def first_release(name: str, version: str, data: str, label: str, slices: list[str]) -> str:
    """Evidence for v1 from evaluate on a small table, then the gate promotes it."""
    import mlflow

    from projects.evaluate import evaluate
    from gatekeeper_cli.client import GatekeeperClient, PromotionRefused

    evaluate(f"models:/{name}/{version}", data, label, slices, batch_size=BATCH, out=io.StringIO())
    gate = GatekeeperClient(mlflow.get_tracking_uri())
    try:
        return gate.promote(name, version)["verdict"]
    except PromotionRefused as refused:  # should not happen with this policy; an audited override then
        log(f"first release of {name} v{version} refused ({refused}); promoting with an override")
        return gate.promote(name, version, force=True, reason="benchmark set-up")["verdict"]


# -- the measurements --------------------------------------------------------------------------


def inference_only(name: str, versions: list[str], frame, columns: list[tuple[str, str]], exclude: set[str]) -> dict:
    """(a): load each version with pyfunc, predict its input columns in the calls evaluate makes
    (``PREDICT_BATCH`` rows each, from 20k-row batches); seconds summed."""
    import mlflow.pyfunc

    from projects.evaluate.scoring import PREDICT_BATCH, _input_columns  # the choices evaluate makes
    from projects.served import scoring_params

    load = predict = 0.0
    for version in versions:
        start = time.perf_counter()
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        load += time.perf_counter() - start
        inputs, params = frame[_input_columns(model, columns, exclude)], scoring_params(model)
        start = time.perf_counter()
        for offset in range(0, len(inputs), BATCH):
            batch = inputs.iloc[offset:offset + BATCH]
            for start_row in range(0, len(batch), PREDICT_BATCH):
                model.predict(batch.iloc[start_row:start_row + PREDICT_BATCH], params=params)
        predict += time.perf_counter() - start
        del model, inputs
    return {"load": load, "predict": predict}


def full_evaluate(name: str, version: str, data: str, slices: list[str]) -> dict:
    """(b): the whole evaluate call, with the phases timed from outside."""
    from projects.evaluate import evaluate

    with timed_phases() as phases, RssSampler(phases) as memory:
        start = time.perf_counter()
        result = evaluate(f"models:/{name}/{version}", data, "label", slices, batch_size=BATCH, out=io.StringIO())
        total = time.perf_counter() - start
    return {"total": total, "phases": phases.seconds, "verdict": result.preview.get("verdict"),
            "baseline": result.baseline, "n_rows": result.n_rows, "rss_before": memory.start_mb,
            "rss_peak": memory.peak_mb, "peak_phase": memory.peak_phase}


def overhead_case(kind: str, name: str, versions: list[str], frame, data: str, slices: list[str], reps: int) -> dict:
    columns = [(str(c), str(t)) for c, t in frame.dtypes.items()]
    exclude = {"label", "row_id", *slices}
    inference_only(name, versions, frame.iloc[:BATCH // 10], columns, exclude)  # warm-up (imports, first calls)
    runs_a, runs_b = [], []
    for rep in range(reps):
        order = ("a", "b") if rep % 2 == 0 else ("b", "a")
        for which in order:
            gc.collect()
            if which == "a":
                runs_a.append(inference_only(name, versions, frame, columns, exclude))
            else:
                runs_b.append(full_evaluate(name, versions[0], data, slices))
        a, b = runs_a[-1], runs_b[-1]
        log(f"{kind} rep {rep + 1}/{reps}: (a) predict {a['predict']:.2f} s + load {a['load']:.2f} s; "
            f"(b) evaluate {b['total']:.2f} s -> overhead {100 * (b['total'] - a['predict']) / a['predict']:.0f} %")
    keys = sorted({k for r in runs_b for k in r["phases"]})
    phases = {k: median([r["phases"].get(k, 0.0) for r in runs_b]) for k in keys}
    overheads = [(b["total"] - a["predict"]) / a["predict"] for a, b in zip(runs_a, runs_b)]
    inside = [(b["total"] - b["phases"].get(PREDICT, 0.0)) / b["phases"].get(PREDICT, float("nan")) for b in runs_b]
    overheads_load = [(b["total"] - a["predict"] - a["load"]) / (a["predict"] + a["load"]) for a, b in zip(runs_a, runs_b)]
    return {
        "kind": kind, "rows": len(frame), "reps": reps,
        "predict": median([r["predict"] for r in runs_a]), "load": median([r["load"] for r in runs_a]),
        "evaluate": median([r["total"] for r in runs_b]),
        "overhead": median(overheads), "overhead_min": min(overheads), "overhead_max": max(overheads),
        "overhead_with_load": median(overheads_load), "overhead_inside": median(inside),
        "rss_before": median([b["rss_before"] for b in runs_b]), "rss_peak": median([b["rss_peak"] for b in runs_b]),
        "peak_phase": runs_b[-1]["peak_phase"],
        "phases": phases, "predict_inside": phases.get(PREDICT, 0.0), "verdict": runs_b[-1]["verdict"],
        "baseline": runs_b[-1]["baseline"],
    }



def profile_case(name: str, version: str, data: str, slices: list[str], top: int) -> str:
    from projects.evaluate import evaluate

    profiler = cProfile.Profile()
    profiler.enable()
    evaluate(f"models:/{name}/{version}", data, "label", slices, batch_size=BATCH, out=io.StringIO())
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
    lines = text.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return "\n".join(lines[start:start + top + 1])


# -- peak memory in a fresh process ------------------------------------------------------------




def memory_child(spec: str) -> None:
    job = json.loads(spec)
    import mlflow  # noqa: F401

    from projects.evaluate import evaluate

    before = own_peak_rss_mb()
    with timed_phases() as phases, RssSampler(phases) as memory:
        start = time.perf_counter()
        result = evaluate(job["model"], job["data"], "label", job["slices"], batch_size=job["batch_size"], out=io.StringIO())
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "before_mb": before, "peak_mb": own_peak_rss_mb(),
                      "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "peak_phase": memory.peak_phase, "per_phase_mb": memory.per_phase, "batch_size": job["batch_size"],
                      "phase_seconds": {k: v for k, v in phases.seconds.items() if " > " not in k},
                      "n_rows": result.n_rows, "verdict": result.preview.get("verdict")}))


def first_pass_child(spec: str) -> None:
    """Only evaluate's reading (``_read_and_score`` with no model: read every column, hash, keep
    label/slices/row ids): the data's share of the peak, without the models'."""
    job = json.loads(spec)
    from projects.evaluate.core import _read_and_score
    from projects.table_input import open_table

    before = own_peak_rss_mb()
    start = time.perf_counter()
    # the pass reads only these fields of evaluate's plan: no models, no baseline lookup
    plan = SimpleNamespace(table=open_table(job["data"]), label="label", slices=job["slices"], batch_size=job["batch_size"])
    keys, hasher = _read_and_score(plan, [], io.StringIO())
    print(json.dumps({"seconds": time.perf_counter() - start, "before_mb": before, "peak_mb": own_peak_rss_mb(),
                      "n_rows": hasher.n_rows, "batch_size": job["batch_size"]}))


def measure_memory(workdir: Path, model: str, data: Path, slices: list[str], batch_size: int = BATCH,
                   mode: str = "--child-memory") -> dict:
    spec = json.dumps({"model": model, "data": str(data), "slices": slices, "batch_size": batch_size})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), mode, spec],
                          capture_output=True, text=True, cwd=workdir, env=os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"memory run on {data} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table_facts(path: Path, frame=None) -> dict:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    facts = {"file_mb": path.stat().st_size / 2**20, "row_groups": meta.num_row_groups, "columns": meta.num_columns,
             "rows": meta.num_rows}
    if frame is not None:
        facts["memory_mb"] = frame.memory_usage(index=False, deep=True).sum() / 2**20
    return facts


def write_repeated_scenes(frame, rows: int, path: Path) -> None:
    """``rows`` scenes rows: the evaluation table repeated, new row ids; one Parquet file laid out as
    ``save_version`` writes it (``projects.scenes.parquet_options``: 10k-row groups)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from projects.scenes import parquet_options

    base = pa.Table.from_pandas(frame, preserve_index=False)
    parts, copy = [], 0
    while sum(len(p) for p in parts) < rows:
        need = rows - sum(len(p) for p in parts)
        part = base.slice(0, min(need, len(base)))
        ids = pa.array([f"copy{copy}-{i}" for i in range(len(part))])
        parts.append(part.set_column(part.schema.get_field_index("row_id"), "row_id", ids))
        copy += 1
    table = pa.concat_tables(parts)
    pq.write_table(table, path, **parquet_options(table.column_names))


# -- report ------------------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def pct(fraction: float) -> str:
    return f"{100 * fraction:.1f} %" if abs(fraction) < 10 else f"{100 * fraction:,.0f} %"


def _cell(case: dict, seconds: float) -> str:
    return f"{seconds:.3f} s ({100 * seconds / case['evaluate']:.1f} %)"


def print_overhead(cases: list[dict]) -> None:
    print("\n## Overhead of evaluate on top of the two models' inference "
          f"(medians of {', '.join(str(c['reps']) for c in cases)} reps)\n")
    header = ["", *[f"{c['kind']}, {c['rows']:,} rows" for c in cases]]
    rows = [
        ["(a) both models' predict, evaluate's calls", *[fmt_s(c["predict"]) for c in cases]],
        ["    loading both models (pyfunc)", *[fmt_s(c["load"]) for c in cases]],
        ["(b) evaluate, wall", *[fmt_s(c["evaluate"]) for c in cases]],
        ["overhead (b - a) / a", *[f"{pct(c['overhead'])} (reps {pct(c['overhead_min'])}..{pct(c['overhead_max'])})"
                                   for c in cases]],
        ["overhead, loading counted as the models'", *[pct(c["overhead_with_load"]) for c in cases]],
        ["overhead inside (b): (b - its predict) / its predict", *[pct(c["overhead_inside"]) for c in cases]],
        ["gate preview of v2 vs v1", *[f"{c['verdict']} (baseline {c['baseline']})" for c in cases]],
        ["RSS before (b) -> sampled peak during (b)", *[f"{c['rss_before']:.0f} -> {c['rss_peak']:.0f} MB "
                                                         f"(at {c['peak_phase'].split(' > ')[-1]})" for c in cases]],
    ]
    print(markdown_table(header, rows))
    print("\n## Where evaluate's time goes (medians; '>' = inside the phase above; seconds and % of (b))\n")
    rows = []
    for phase in PHASE_ORDER:
        rows.append([phase, *[_cell(c, c["phases"].get(phase, 0.0)) for c in cases]])
        for sub in sorted({k for c in cases for k in c["phases"] if k.startswith(phase + " > ")}):
            rows.append(["  > " + sub.split(" > ", 1)[1], *[_cell(c, c["phases"].get(sub, 0.0)) for c in cases]])
    top = lambda c: sum(v for k, v in c["phases"].items() if " > " not in k)  # noqa: E731
    rows.append(["other (setup, run creation, params, metrics, child run)", *[_cell(c, c["evaluate"] - top(c)) for c in cases]])
    rows.append(["everything but predict (≈ overhead)", *[_cell(c, c["evaluate"] - c["predict_inside"]) for c in cases]])
    print(markdown_table(["phase", *[c["kind"] for c in cases]], rows))


def print_memory(memory: list[dict], reads: list[dict]) -> None:
    print("\n## Peak memory of evaluate, fresh process per case\n")
    header = ["table", "rows", "on disk", "in memory (pandas)", "row groups", "batch", "RSS after imports", "peak RSS",
              "peak reached in", "evaluate took"]
    print(markdown_table(header, [[m["case"], f"{m['rows']:,}", f"{m['file_mb']:.0f} MB", f"{m['memory_mb']:.0f} MB",
                                   str(m["row_groups"]), f"{m['batch_size']:,}", f"{m['before_mb']:.0f} MB",
                                   f"{m['peak_mb']:.0f} MB", m["peak_phase"], fmt_s(m["seconds"])] for m in memory]))
    if reads:
        print("\n## Memory of evaluate's first pass alone (read every column in batches, hash, keep keys), fresh process each\n")
        print(markdown_table(["rows", "on disk", "row groups", "RSS after imports", "peak RSS", "took"],
                             [[f"{r['rows']:,}", f"{r['file_mb']:.0f} MB", str(r["row_groups"]), f"{r['before_mb']:.0f} MB",
                               f"{r['peak_mb']:.0f} MB", fmt_s(r["seconds"])] for r in reads]))
    for m in memory:
        print(f"- {m['case']}, {m['rows']:,} rows, batch {m['batch_size']:,}: sampled RSS per phase (MB) "
              + ", ".join(f"{k} {m['per_phase_mb'][k]:.0f}" for k in ["other", *PHASE_ORDER] if k in m["per_phase_mb"]))


# -- the run, step by step -----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    rows: int
    cnn_rows: int
    reps: int
    cnn_reps: int
    memory_rows: int
    scenes_memory_rows: int
    scenes_batch_sizes: tuple[int, ...]
    read_rows: tuple[int, ...]
    cnn: bool
    profile: bool
    keep: bool


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one rep for the CNN: a smoke run")
    parser.add_argument("--rows", type=int, default=None, help="rows of the overhead tables (default 100000; quick 20000)")
    parser.add_argument("--cnn-rows", type=int, default=None, help="rows of the CNN overhead table (default: --rows; quick 10000)")
    parser.add_argument("--reps", type=int, default=None, help="reps of the scikit-learn case (default 5; quick 3)")
    parser.add_argument("--cnn-reps", type=int, default=1, help="reps of the CNN case (default 1: ~4 min at 100k rows on 2 cores)")
    parser.add_argument("--memory-rows", type=int, default=None, help="tabular rows for peak memory (default 1000000)")
    parser.add_argument("--scenes-memory-rows", type=int, default=None,
                        help="scenes rows for peak memory (default 40000: two 20k batches; quick 10000; 0 skips)")
    parser.add_argument("--scenes-batch-sizes", default="20000,4096",
                        help="evaluate batch sizes for the scenes memory runs (default 20000,4096: evaluate's default, "
                             "and projects.model.predict_proba's)")
    parser.add_argument("--no-cnn", action="store_true", help="only the scikit-learn model")
    parser.add_argument("--profile", action="store_true", help="also print cProfile's top entries of one evaluation each")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    parser.add_argument("--read-rows", default=None,
                        help="scenes rows at which evaluate's first pass alone (read + hash) is measured for memory "
                             "(default 40000,100000,200000; quick 10000,20000; '' skips)")
    parser.add_argument("--child-memory", help=argparse.SUPPRESS)
    parser.add_argument("--child-first-pass", help=argparse.SUPPRESS)
    return parser.parse_args()


def settings_from(args: argparse.Namespace) -> Settings:
    quick, rows = args.quick, args.rows or (20_000 if args.quick else 100_000)
    read_text = args.read_rows if args.read_rows is not None else ("10000,20000" if quick else "40000,100000,200000")
    return Settings(
        rows=rows, cnn_rows=args.cnn_rows or (10_000 if quick else rows), reps=args.reps or (3 if quick else 5),
        cnn_reps=args.cnn_reps, memory_rows=args.memory_rows or (200_000 if quick else 1_000_000),
        scenes_memory_rows=args.scenes_memory_rows if args.scenes_memory_rows is not None else (10_000 if quick else 40_000),
        scenes_batch_sizes=tuple(int(b) for b in args.scenes_batch_sizes.split(",") if b.strip()),
        read_rows=tuple(int(n) for n in read_text.split(",") if n.strip()),
        cnn=not args.no_cnn, profile=args.profile, keep=args.keep,
    )


def enter_workdir() -> Path:
    """A temporary directory holding the tracking database, the policy and every run's artifacts."""
    import logging
    import warnings

    workdir = Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{workdir}/mlflow.db", GATEKEEPER_POLICY=str(write_policy(workdir)),
                      MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true")
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    os.chdir(workdir)
    print(f"workdir {workdir}; tracking {os.environ['MLFLOW_TRACKING_URI']}", flush=True)
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow

    mlflow.set_experiment("bench-evaluate")
    return workdir


def sklearn_step(workdir: Path, settings: Settings, profiles: dict) -> tuple[dict, dict]:
    """The logistic-regression case: its overhead at ``rows``, then its peak memory at ``memory_rows``."""
    from benchmarks.evidence import FEATURES, make_data, models

    t0 = time.perf_counter()
    small = workdir / "sk_small.parquet"
    make_data(2000, seed=12).to_parquet(small, index=False)
    table = make_data(settings.rows, seed=11)
    data = workdir / f"sk_{settings.rows}.parquet"
    table.to_parquet(data, index=False)
    v1 = register_sklearn(models()["weak"][0], FEATURES[:2])
    verdict = first_release(SK_MODEL, v1, str(small), "label", SK_SLICES)
    v2 = register_sklearn(models()["strong"][0], FEATURES)
    log(f"scikit-learn: v{v1} (2 features) promoted ({verdict}), v{v2} (6 features) registered; "
        f"{settings.rows:,}-row table written ({time.perf_counter() - t0:.1f} s)")
    case = overhead_case("scikit-learn", SK_MODEL, [v2, v1], table, str(data), SK_SLICES, settings.reps)
    if settings.profile:
        profiles["scikit-learn"] = profile_case(SK_MODEL, v2, str(data), SK_SLICES, 25)
    del table
    big = workdir / f"sk_{settings.memory_rows}.parquet"
    frame = make_data(settings.memory_rows, seed=13)
    frame.to_parquet(big, index=False)
    facts = table_facts(big, frame)
    del frame
    gc.collect()
    log(f"scikit-learn peak memory at {settings.memory_rows:,} rows ...")
    memory = {"case": "scikit-learn, tabular (9 columns)", **facts,
              **measure_memory(workdir, f"models:/{SK_MODEL}/{v2}", big, SK_SLICES)}
    big.unlink()
    return case, memory


def cnn_versions(workdir: Path) -> tuple[str, str]:
    """Two quickly trained road-scenes CNNs; the first promoted through the gate on a small table."""
    from projects.retrain import evaluation_mix
    from projects.scenes import generate
    from projects.train import train
    from projects.train_config import Hyperparameters, Runtime, TrainConfig, Tracking

    t0 = time.perf_counter()
    trained = [train(generate(n_train, "summer", seed), TrainConfig(
        Hyperparameters(epochs=epochs, seed=seed), Tracking(registered_model=CNN_MODEL, run_name=f"train {CNN_MODEL}"),
        Runtime(progress=False))) for seed, (n_train, epochs) in enumerate([(1500, 1), (3000, 2)], start=1)]
    c1, c2 = str(trained[0].version), str(trained[1].version)
    log(f"CNN: v{c1} (val acc {trained[0].best_val_accuracy:.3f}) and v{c2} "
        f"(val acc {trained[1].best_val_accuracy:.3f}) trained in {time.perf_counter() - t0:.1f} s")
    small = workdir / "cnn_small.parquet"
    generate(2000, evaluation_mix(), 9_999).to_parquet(small, index=False)
    log(f"CNN: v{c1} {first_release(CNN_MODEL, c1, str(small), 'label', CNN_SLICES)}")
    return c1, c2


def cnn_step(workdir: Path, settings: Settings, profiles: dict) -> tuple[dict, list[dict], list[dict]]:
    """The road-scenes CNN: overhead at ``cnn_rows``, then memory (first pass alone, and whole runs per batch size)."""
    from projects.retrain import evaluation_mix
    from projects.scenes import generate, write_parquet

    c1, c2 = cnn_versions(workdir)
    scenes = generate(settings.cnn_rows, evaluation_mix(), 10_000)
    data = workdir / f"cnn_{settings.cnn_rows}.parquet"
    write_parquet(scenes, data)  # as save_version stores the pipeline's data
    case = overhead_case("road-scenes CNN", CNN_MODEL, [c2, c1], scenes, str(data), CNN_SLICES, settings.cnn_reps)
    if settings.profile:
        profiles["road-scenes CNN"] = profile_case(CNN_MODEL, c2, str(data), CNN_SLICES, 25)
    if not settings.scenes_memory_rows:
        return case, [], []
    big = workdir / f"cnn_memory_{settings.scenes_memory_rows}.parquet"
    write_repeated_scenes(scenes, settings.scenes_memory_rows, big)
    facts = table_facts(big) | {"memory_mb": scenes.memory_usage(index=False, deep=True).sum() / 2**20
                                * settings.scenes_memory_rows / len(scenes)}
    reads = []
    for n in settings.read_rows:
        path = workdir / f"cnn_read_{n}.parquet"
        write_repeated_scenes(scenes, n, path)
        log(f"evaluate's first pass alone on {n:,} scenes rows ...")
        reads.append({**table_facts(path), **measure_memory(workdir, "", path, CNN_SLICES, BATCH, "--child-first-pass")})
        path.unlink()
    del scenes
    gc.collect()
    memory = []
    for batch_size in settings.scenes_batch_sizes:
        log(f"CNN peak memory at {settings.scenes_memory_rows:,} rows, batch size {batch_size:,} ...")
        memory.append({"case": "road-scenes CNN (3085 columns)", **facts,
                       **measure_memory(workdir, f"models:/{CNN_MODEL}/{c2}", big, CNN_SLICES, batch_size)})
    big.unlink()
    return case, memory, reads


def main() -> None:
    args = parse_args()
    if args.child_memory or args.child_first_pass:
        memory_child(args.child_memory) if args.child_memory else first_pass_child(args.child_first_pass)
        return
    settings = settings_from(args)
    record = ResultFile("evaluate", PACKAGES)
    for line in machine_lines(PACKAGES):
        print(line)
    workdir = enter_workdir()
    profiles: dict[str, str] = {}
    try:
        sk_case, sk_memory = sklearn_step(workdir, settings, profiles)
        cnn_case, cnn_memory, reads = cnn_step(workdir, settings, profiles) if settings.cnn else (None, [], [])
    finally:
        os.chdir(REPO)
        if settings.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    cases = [c for c in (sk_case, cnn_case) if c is not None]
    print_overhead(cases)
    for kind, text in profiles.items():
        print(f"\n## cProfile, one evaluation, {kind} (top entries by cumulative time; profiling inflates Python calls)\n")
        print(text)
    print_memory([sk_memory, *cnn_memory], reads)
    record.write({"settings": asdict(settings), "overhead": cases, "memory": [sk_memory, *cnn_memory], "first_pass": reads})


if __name__ == "__main__":
    main()
