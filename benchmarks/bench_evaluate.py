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
   (``tests.support.evidence``: 6 features, a ``weather`` slice; 5 reps) whose inference is almost
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

No assertions: it prints figures, whether the budget was met, and a markdown table for the README.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from _common import machine_lines, markdown_table, median, own_peak_rss_mb  # noqa: E402

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


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- phase timers (wrapping package functions from the outside) --------------------------------


class Phases:
    """Accumulates seconds per call path ("first pass > content hash") while patches are active."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.stack: list[str] = []
        self._undo: list[tuple[object, str, object]] = []

    def _add(self, key: str, seconds: float) -> None:
        path = " > ".join([*self.stack, key])
        self.seconds[path] = self.seconds.get(path, 0.0) + seconds

    def wrap(self, owner: object, attr: str, key: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            self.stack.append(key)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.stack.pop()
                self._add(key, elapsed)

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def wrap_generator(self, owner: object, attr: str, key_for) -> None:
        """Time every ``next()`` of the generator ``owner.attr(...)`` returns (reading batches)."""
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            key = key_for(*args, **kwargs)
            iterator = iter(original(*args, **kwargs))
            while True:
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    self._add(key, time.perf_counter() - start)
                    return
                self._add(key, time.perf_counter() - start)
                yield item

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler:
    """Samples this process's RSS every few ms in a thread: the peak, and the phase it happened in."""

    def __init__(self, phases: Phases | None = None, interval: float = 0.005):
        import threading

        self.phases, self.interval = phases, interval
        self.start_mb = rss_mb()
        self.peak_mb, self.peak_phase = self.start_mb, "before"
        self.per_phase: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_mb()
            stack = list(self.phases.stack) if self.phases is not None else []
            phase = stack[0] if stack else "other"
            self.per_phase[phase] = max(self.per_phase.get(phase, 0.0), value)
            if value > self.peak_mb:
                self.peak_mb, self.peak_phase = value, " > ".join(stack) or "other"
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# the phases, in the order they happen; (patch target, attribute, label)
PHASE_ORDER = [
    "the one pass: read, hash, keep keys, score",
    "baseline lookup (gate)",
    "load both models",
    "read batches",
    "score",
    "outcomes (per-example fields)",
    "statistics (overall + slices)",
    "log dataset input",
    "log evidence (outcomes.arrow)",
    "artifacts (charts, tables)",
    "gate preview (explain)",
]


@contextlib.contextmanager
def timed_phases() -> Phases:
    import mlflow.pyfunc

    import projects.datasets
    import projects.evaluate.core as core
    import projects.evaluate.report as report
    import registry_hooks.evidence

    phases = Phases()
    phases.wrap(core, "_read_and_score", PHASE_ORDER[0])
    phases.wrap(projects.datasets.StreamingHash, "update", "content hash")
    phases.wrap(core, "_baseline", PHASE_ORDER[1])
    phases.wrap(core.Scorer, "__init__", PHASE_ORDER[2])
    phases.wrap(core.Scorer, "score", PHASE_ORDER[4])
    phases.wrap(mlflow.pyfunc.PyFuncModel, "predict", "predict")
    phases.wrap_generator(core, "iter_table", lambda *a, **k: PHASE_ORDER[3])
    phases.wrap(core, "outcomes", PHASE_ORDER[5])
    phases.wrap(core, "compare_all", PHASE_ORDER[6])
    phases.wrap(core, "log_dataset_input", PHASE_ORDER[7])
    phases.wrap(registry_hooks.evidence, "log_evidence", PHASE_ORDER[8])
    phases.wrap(report, "log_artifacts", PHASE_ORDER[9])
    phases.wrap(core, "_preview", PHASE_ORDER[10])
    try:
        yield phases
    finally:
        phases.restore()


# -- models and data ---------------------------------------------------------------------------


def write_policy(workdir: Path) -> Path:
    path = workdir / "policy.yaml"
    path.write_text(POLICY)
    return path


def register_sklearn(model, columns: list[str]) -> str:
    import mlflow
    from mlflow.models import infer_signature

    from tests.support.evidence import make_data

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

    load = predict = 0.0
    for version in versions:
        start = time.perf_counter()
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        load += time.perf_counter() - start
        inputs = frame[_input_columns(model, columns, exclude)]
        start = time.perf_counter()
        for offset in range(0, len(inputs), BATCH):
            batch = inputs.iloc[offset:offset + BATCH]
            for start_row in range(0, len(batch), PREDICT_BATCH):
                model.predict(batch.iloc[start_row:start_row + PREDICT_BATCH])
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
        "phases": phases, "verdict": runs_b[-1]["verdict"], "baseline": runs_b[-1]["baseline"],
    }


PREDICT = f"{PHASE_ORDER[0]} > {PHASE_ORDER[4]} > predict"


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
    keys, hasher = _read_and_score(open_table(job["data"]), "label", job["slices"], job["batch_size"], [], io.StringIO())
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


# -- main --------------------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def print_overhead(cases: list[dict]) -> None:
    print("\n## Overhead of evaluate on top of the two models' inference "
          f"(medians of {', '.join(str(c['reps']) for c in cases)} reps)\n")
    header = ["", *[f"{c['kind']}, {c['rows']:,} rows" for c in cases]]
    rows = [
        ["(a) both models' predict, evaluate's calls", *[fmt_s(c["predict"]) for c in cases]],
        ["    loading both models (pyfunc)", *[fmt_s(c["load"]) for c in cases]],
        ["(b) evaluate, wall", *[fmt_s(c["evaluate"]) for c in cases]],
        ["overhead b - a", *[fmt_s(c["evaluate"] - c["predict"]) for c in cases]],
        ["overhead (b - a) / a", *[f"{pct(c['overhead'])} (reps {pct(c['overhead_min'])}..{pct(c['overhead_max'])})"
                                   for c in cases]],
        ["overhead, loading counted as the models'", *[pct(c["overhead_with_load"]) for c in cases]],
        ["overhead inside (b): (b - its predict) / its predict", *[pct(c["overhead_inside"]) for c in cases]],
        ["budget < 10 %", *[f"{'met' if c['overhead'] < 0.10 else 'NOT met'} by (b - a) / a, "
                            f"{'met' if c['overhead_inside'] < 0.10 else 'NOT met'} inside (b)" for c in cases]],
        ["gate preview of v2 vs v1", *[f"{c['verdict']} (baseline v{c['baseline'][1] if c['baseline'] else None})" for c in cases]],
        ["RSS before (b) -> sampled peak during (b)", *[f"{c['rss_before']:.0f} -> {c['rss_peak']:.0f} MB (+{c['rss_peak'] - c['rss_before']:.0f}; "
                                                         f"at {c['peak_phase'].split(' > ')[-1]})" for c in cases]],
    ]
    print(markdown_table(header, rows))
    print("\n## Where evaluate's time goes (medians; '>' = inside the phase above; seconds and % of (b))\n")
    header = ["phase", *[c["kind"] for c in cases]]
    rows = []
    for phase in PHASE_ORDER:
        subs = sorted({k for c in cases for k in c["phases"] if k.startswith(phase + " > ")})
        rows.append([phase, *[_cell(c, c["phases"].get(phase, 0.0)) for c in cases]])
        for sub in subs:
            rows.append(["  > " + sub.split(" > ", 1)[1], *[_cell(c, c["phases"].get(sub, 0.0)) for c in cases]])
    top = lambda c: sum(v for k, v in c["phases"].items() if " > " not in k)  # noqa: E731
    rows.append(["other (setup, run creation, params, metrics, child run)", *[_cell(c, c["evaluate"] - top(c)) for c in cases]])
    rows.append(["total (b)", *[_cell(c, c["evaluate"]) for c in cases]])
    rows.append(["everything but predict (≈ overhead)",
                 *[_cell(c, c["evaluate"] - c["phases"].get(PREDICT, 0.0)) for c in cases]])
    print(markdown_table(header, rows))


def pct(fraction: float) -> str:
    return f"{100 * fraction:.1f} %" if abs(fraction) < 10 else f"{100 * fraction:,.0f} %"


def _cell(case: dict, seconds: float) -> str:
    return f"{seconds:.3f} s ({100 * seconds / case['evaluate']:.1f} %)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one rep for the CNN: a smoke run")
    parser.add_argument("--rows", type=int, default=None, help="rows of the overhead tables (default 100000; quick 20000)")
    parser.add_argument("--cnn-rows", type=int, default=None, help="rows of the CNN overhead table (default: --rows; quick 10000)")
    parser.add_argument("--reps", type=int, default=None, help="reps of the scikit-learn case (default 5; quick 3)")
    parser.add_argument("--cnn-reps", type=int, default=None,
                        help="reps of the CNN case (default 1: one rep is ~4 min at 100k rows on 2 cores)")
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
    args = parser.parse_args()
    if args.child_memory:
        memory_child(args.child_memory)
        return
    if args.child_first_pass:
        first_pass_child(args.child_first_pass)
        return
    quick = args.quick
    rows = args.rows or (20_000 if quick else 100_000)
    cnn_rows = args.cnn_rows or (10_000 if quick else rows)
    reps = args.reps or (3 if quick else 5)
    cnn_reps = args.cnn_reps or 1
    memory_rows = args.memory_rows or (200_000 if quick else 1_000_000)
    read_text = args.read_rows if args.read_rows is not None else ("10000,20000" if quick else "40000,100000,200000")
    read_rows = [int(n) for n in read_text.split(",") if n.strip()]
    scenes_memory_rows = args.scenes_memory_rows if args.scenes_memory_rows is not None else (10_000 if quick else 40_000)

    began = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{workdir}/mlflow.db", GATEKEEPER_POLICY=str(write_policy(workdir)),
                      MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true")
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    os.chdir(workdir)  # run artifacts land under the temporary directory
    for line in machine_lines(("mlflow", "torch", "scikit-learn", "pandas", "pyarrow", "numpy")):
        print(line)
    print(f"workdir {workdir}; tracking {os.environ['MLFLOW_TRACKING_URI']}", flush=True)

    import warnings

    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow

    mlflow.set_experiment("bench-evaluate")
    cases, memory, profiles, reads = [], [], {}, []
    try:
        # --- scikit-learn -------------------------------------------------------------------
        from tests.support.evidence import FEATURES, make_data, models

        t0 = time.perf_counter()
        small = workdir / "sk_small.parquet"
        make_data(2000, seed=12).to_parquet(small, index=False)
        table = make_data(rows, seed=11)
        data = workdir / f"sk_{rows}.parquet"
        table.to_parquet(data, index=False)
        v1 = register_sklearn(models()["weak"][0], FEATURES[:2])
        verdict = first_release(SK_MODEL, v1, str(small), "label", SK_SLICES)
        v2 = register_sklearn(models()["strong"][0], FEATURES)
        log(f"scikit-learn: v{v1} (2 features) promoted ({verdict}), v{v2} (6 features) registered; "
            f"{rows:,}-row table written ({time.perf_counter() - t0:.1f} s)")
        cases.append(overhead_case("scikit-learn", SK_MODEL, [v2, v1], table, str(data), SK_SLICES, reps))
        if args.profile:
            profiles["scikit-learn"] = profile_case(SK_MODEL, v2, str(data), SK_SLICES, 25)
        del table
        gc.collect()

        big = workdir / f"sk_{memory_rows}.parquet"
        frame = make_data(memory_rows, seed=13)
        frame.to_parquet(big, index=False)
        facts = table_facts(big, frame)
        del frame
        gc.collect()
        log(f"scikit-learn peak memory at {memory_rows:,} rows ...")
        memory.append({"case": "scikit-learn, tabular (9 columns)", **facts,
                       **measure_memory(workdir, f"models:/{SK_MODEL}/{v2}", big, SK_SLICES)})
        big.unlink()

        # --- road-scenes CNN ----------------------------------------------------------------
        if not args.no_cnn:
            from projects.retrain import evaluation_mix
            from projects.scenes import generate, write_parquet
            from projects.train import train

            t0 = time.perf_counter()
            trained = []
            for seed, (n_train, epochs) in enumerate([(1500, 1), (3000, 2)], start=1):
                result = train(generate(n_train, "summer", seed), registered_model=CNN_MODEL, epochs=epochs, seed=seed,
                               run_name=f"train {CNN_MODEL}", progress=False)
                trained.append(result)
            c1, c2 = str(trained[0].version), str(trained[1].version)
            log(f"CNN: v{c1} (val acc {trained[0].best_val_accuracy:.3f}) and v{c2} "
                f"(val acc {trained[1].best_val_accuracy:.3f}) trained in {time.perf_counter() - t0:.1f} s")
            small = workdir / "cnn_small.parquet"
            generate(2000, evaluation_mix(), 9_999).to_parquet(small, index=False)
            verdict = first_release(CNN_MODEL, c1, str(small), "label", CNN_SLICES)
            t0 = time.perf_counter()
            scenes = generate(cnn_rows, evaluation_mix(), 10_000)
            data = workdir / f"cnn_{cnn_rows}.parquet"
            write_parquet(scenes, data)  # as save_version stores the pipeline's data
            log(f"CNN: v{c1} promoted ({verdict}); {cnn_rows:,} scenes generated and written in "
                f"{time.perf_counter() - t0:.1f} s")
            cases.append(overhead_case("road-scenes CNN", CNN_MODEL, [c2, c1], scenes, str(data), CNN_SLICES, cnn_reps))
            if args.profile:
                profiles["road-scenes CNN"] = profile_case(CNN_MODEL, c2, str(data), CNN_SLICES, 25)
            if scenes_memory_rows:
                big = workdir / f"cnn_memory_{scenes_memory_rows}.parquet"
                if scenes_memory_rows == cnn_rows:
                    shutil.copy(data, big)
                else:
                    write_repeated_scenes(scenes, scenes_memory_rows, big)
                facts = table_facts(big)
                facts["memory_mb"] = (scenes.memory_usage(index=False, deep=True).sum() / 2**20) * scenes_memory_rows / len(scenes)
                for n in read_rows:
                    path = workdir / f"cnn_read_{n}.parquet"
                    write_repeated_scenes(scenes, n, path)
                    log(f"evaluate's first pass alone on {n:,} scenes rows ...")
                    reads.append({**table_facts(path), **measure_memory(workdir, "", path, CNN_SLICES, BATCH, "--child-first-pass")})
                    path.unlink()
                del scenes
                gc.collect()
                for batch_size in (int(b) for b in args.scenes_batch_sizes.split(",") if b.strip()):
                    log(f"CNN peak memory at {scenes_memory_rows:,} rows, batch size {batch_size:,} ...")
                    memory.append({"case": "road-scenes CNN (3085 columns)", **facts,
                                   **measure_memory(workdir, f"models:/{CNN_MODEL}/{c2}", big, CNN_SLICES, batch_size)})
                big.unlink()
    finally:
        os.chdir(REPO)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print_overhead(cases)
    if profiles:
        for kind, text in profiles.items():
            print(f"\n## cProfile, one evaluation, {kind} (top entries by cumulative time; profiling inflates Python calls)\n")
            print(text)
    print("\n## Peak memory of evaluate, fresh process per case\n")
    header = ["table", "rows", "on disk", "in memory (pandas)", "row groups", "batch", "RSS after imports", "peak RSS",
              "peak - imports", "peak reached in", "evaluate took"]
    print(markdown_table(header, [[m["case"], f"{m['rows']:,}", f"{m['file_mb']:.0f} MB", f"{m['memory_mb']:.0f} MB",
                                   str(m["row_groups"]), f"{m['batch_size']:,}", f"{m['before_mb']:.0f} MB",
                                   f"{m['peak_mb']:.0f} MB", f"{m['peak_mb'] - m['before_mb']:.0f} MB",
                                   m["peak_phase"], fmt_s(m["seconds"])] for m in memory]))
    if reads:
        print("\n## Memory of evaluate's first pass alone (read every column in batches of 20k, hash, keep keys), "
              "scenes tables, fresh process each\n")
        print(markdown_table(["rows", "on disk", "row groups", "RSS after imports", "peak RSS", "peak - imports", "took"],
                             [[f"{r['rows']:,}", f"{r['file_mb']:.0f} MB", str(r["row_groups"]), f"{r['before_mb']:.0f} MB",
                               f"{r['peak_mb']:.0f} MB", f"{r['peak_mb'] - r['before_mb']:.0f} MB", fmt_s(r["seconds"])]
                              for r in reads]))
        if len(reads) > 1 and reads[0]["rows"] >= 2 * BATCH:
            slope = (reads[-1]["peak_mb"] - reads[0]["peak_mb"]) / (reads[-1]["rows"] - reads[0]["rows"]) * 1024
            print(f"\n({slope:.1f} KB more peak per row from {reads[0]['rows']:,} to {reads[-1]['rows']:,} rows, "
                  f"batches of {BATCH:,} throughout; a scenes row is 3.0 KB of pixels)")
    print("\nsampled RSS maximum per phase (MB), and the slowest phases (s), of each case:")
    for m in memory:
        print(f"- {m['case']}, {m['rows']:,} rows, batch {m['batch_size']:,}:\n  RSS: "
              + ", ".join(f"{k} {m['per_phase_mb'][k]:.0f}" for k in ["other", *PHASE_ORDER] if k in m["per_phase_mb"])
              + "\n  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(m["phase_seconds"].items(), key=lambda kv: -kv[1])[:5]))

    command = "python benchmarks/bench_evaluate.py"
    print("\n## For the README\n")
    readme = []
    for c in cases:
        inside = c["evaluate"] - c["phases"].get(PREDICT, 0.0)
        if "CNN" in c["kind"]:
            what = f"`evaluate` overhead on the two models' inference, {c['rows'] // 1000}k rows, road-scenes CNN"
            figure = (f"{pct(c['overhead_inside'])} measured inside the call ({fmt_s(inside)} of {fmt_s(c['evaluate'])} "
                      f"is not the models' predict); {pct(c['overhead'])} as (evaluate − separate predict run) / predict "
                      f"({fmt_s(c['evaluate'])} vs {fmt_s(c['predict'])})")
        else:
            what = f"`evaluate` on the two models, {c['rows'] // 1000}k rows, scikit-learn logistic regression"
            figure = (f"{fmt_s(c['evaluate'])} for {fmt_s(c['predict'])} of inference ({pct(c['overhead'])}): "
                      "inference is nearly free, this is the evidence's own cost")
        readme.append([what, figure, "< 10 %" if "CNN" in c["kind"] else "", f"`{command}`" if not readme else "same"])
    for m in memory:
        batch = f", batch {m['batch_size']:,}" if "CNN" in m["case"] else ""
        readme.append([f"`evaluate` peak memory, {m['rows']:,} rows, {m['case'].split(' (')[0]}{batch} "
                       f"({m['file_mb']:.0f} MB Parquet, {m['memory_mb']:.0f} MB in pandas)",
                       f"{m['peak_mb']:,.0f} MB peak RSS ({m['before_mb']:.0f} MB after imports), {fmt_s(m['seconds'])}",
                       "reported", "same"])
    print("| what | figure | target | command |\n|---|---|---|---|")
    for row in readme:
        print("| " + " | ".join(row) + " |")
    print(f"\nreproduce: .venv/bin/python benchmarks/bench_evaluate.py{' --quick' if quick else ''}")
    print(f"benchmark took {time.perf_counter() - began:.0f} s in all; {machine_lines(())[0]}")


if __name__ == "__main__":
    main()
