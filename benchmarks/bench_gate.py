"""What the gate costs a running ``mlflow server``: promotion latency, untouched-call throughput, memory.

Real servers side by side, one SQLite store each, all ``--workers 1`` (uvicorn), on 127.0.0.1
only: "plain" (ungated ``mlflow server``), "gated" (``--registry-store-uri gatekeeper:…
--app-name gatekeeper``) and "bare" (ungated, with this package's entry points hidden: MLflow
alone, see 3). Budgets (issue): a gated promotion with 100k-example evidence costs < 50 ms more
(median) than a plain alias set; calls the gate does not touch keep ≥ 0.97 of plain throughput;
the plugin adds < 30 MB per worker and the worker never imports torch or evidently.

1. Promotion latency. Every repetition moves ``champion`` to a new version whose evidence (100k
   examples, candidate clearly better, logged with ``log_evidence`` next to the dataset input
   carrying the same content hash) was logged against the previous champion *before* timing;
   only ``MlflowClient.set_registered_model_alias`` is timed. The same call on the plain server
   (same chain of versions, no evidence needed) and an unprotected alias on the gated server are
   timed in the same repetition, in rotating order. Two gated columns: the weak mode (evidence on
   any data, judged for the first time by the timed call) and a fourth server, "verified", whose
   policy requires a registered set with verification: there each candidate's verification is
   requested and recorded before timing (``benchmarks/verified_side.py``), so the timed call
   reuses the statistics judged when the verification was requested (``registry_hooks.memo``).
2. Throughput of untouched calls (search_registered_models, get_model_version,
   get_registered_model, log_metric, search_runs) over REST from a few client threads, a fixed
   number of requests per round; each round runs every server once, in rotating order, and the
   ratio is the median of the per-round gated/plain ratios, so machine noise does not favour one
   side. plain/bare is an A/A control (both serve these calls with MLflow's own code): its
   spread is the noise floor the gated/plain ratio has to be read against.
3. Memory: VmRSS of the uvicorn worker (the child of the ``mlflow server`` process) after the
   same warm-up on every server (a few registry calls and one promotion, gated on the gated
   server). MLflow imports every installed registry-store plugin eagerly, so the plain server in
   this venv carries the plugin's modules too; the "bare" server hides this package's entry
   points to show MLflow alone. torch/evidently are detected from the worker's
   mapped files and from ``PYTHONPROFILEIMPORTTIME`` output of the server processes.

No assertions: it prints figures and writes them to ``benchmarks/results/gate.json``, from which
the README's gate table is generated (``benchmarks/readme_tables.py``).

    .venv/bin/python benchmarks/bench_gate.py [--quick] [--reps 30] [--requests 300] [--rounds 10]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
from registry_hooks.contract import POLICY_ENV  # noqa: E402

os.environ["DO_NOT_TRACK"] = "true"
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
for _var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", POLICY_ENV):
    os.environ.pop(_var, None)

import warnings  # noqa: E402

import requests  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

from _common import (  # noqa: E402
    ResultFile, children, cmdline, machine_lines, mapped_files, markdown_table, median, percentile, status_kib,
)
from benchmarks.evidence import Comparison, evaluation, log_evidence_run, register_version  # noqa: E402
from benchmarks.servers import MlflowServer  # noqa: E402
from benchmarks.verified_side import SERVER_ENV as VERIFIED_ENV, RecordingWorker, policy_file, register_set  # noqa: E402

MODEL = "bench-gate"
PROTECTED_ALIAS = "champion"
FREE_ALIAS = "challenger"
DATA_NAME = "bench-eval"
LATENCY_BUDGET_MS = 50.0
THROUGHPUT_BUDGET = 0.97
MEMORY_BUDGET_MB = 30.0
FORBIDDEN = ("torch", "evidently")
PACKAGES = ("mlflow-gatekeeper", "pandas", "pyarrow", "scipy", "sqlalchemy", "uvicorn", "fastapi", "flask", "requests")
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$")  # PYTHONPROFILEIMPORTTIME

warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")


def say(message: str) -> None:
    print(f"· {message}", flush=True)


# -- servers ------------------------------------------------------------------------------------


@dataclass
class Side:
    """One server under test and what the benchmark learned about it."""

    label: str
    server: MlflowServer
    client: MlflowClient | None = None
    versions: list[str] = field(default_factory=list)
    fixture: dict = field(default_factory=dict)
    worker: int | None = None
    memory: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url


# MLflow loads every installed ``mlflow.model_registry_store`` / ``run_context_provider`` entry
# point eagerly, so a plain server in this venv imports the plugin's modules too (unused). The
# "bare" server hides this package's entry points to show what MLflow alone costs.
_HIDE_PLUGIN = """
import importlib.metadata as _md
_entry_points = _md.entry_points
def entry_points(**params):
    found = _entry_points(**params)
    if "group" not in params:
        return found
    return _md.EntryPoints(ep for ep in found
                           if not (ep.dist and ep.dist.name.replace("_", "-").lower() == "mlflow-gatekeeper"))
_md.entry_points = entry_points
"""


def start_servers(stack: ExitStack, workdir: Path) -> tuple[Side, Side, Side, Side]:
    """plain, gated, bare (plain with this package's entry points hidden) and verified (gated,
    requiring a registered, verified set: ``benchmarks.verified_side``), started in parallel."""
    env = {"PYTHONPROFILEIMPORTTIME": "1"}  # every side: lets us see every module the servers import
    hide = workdir / "hide-plugin"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(_HIDE_PLUGIN)
    bare_env = env | {"PYTHONPATH": os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")]))}
    plain = MlflowServer(workdir / "plain", f"sqlite:///{workdir / 'plain.db'}", gated=False, workers=1, env=env)
    gated = MlflowServer(workdir / "gated", f"sqlite:///{workdir / 'gated.db'}", gated=True, workers=1, env=env)
    bare = MlflowServer(workdir / "bare", f"sqlite:///{workdir / 'bare.db'}", gated=False, workers=1, env=bare_env)
    verified = MlflowServer(workdir / "verified", f"sqlite:///{workdir / 'verified.db'}", gated=True, workers=1,
                            policy=policy_file(workdir, DATA_NAME), env=env | VERIFIED_ENV)
    servers = (plain, gated, bare, verified)
    for server in servers:
        stack.callback(server.stop)  # registered before starting: a failed start still stops the others
    started = time.perf_counter()
    with ThreadPoolExecutor(len(servers)) as pool:
        for future in [pool.submit(server.start, 240) for server in servers]:
            future.result()
    say(f"servers healthy in {time.perf_counter() - started:.1f} s: plain {plain.url}, gated {gated.url}, "
        f"bare (plugin hidden) {bare.url}, verified {verified.url}")
    sides = Side("plain", plain), Side("gated", gated), Side("bare", bare), Side("verified", verified)
    for side in sides:
        side.client = MlflowClient(tracking_uri=side.url, registry_uri=side.url)
        workers = children(side.server.process.pid)
        if len(workers) != 1:
            raise RuntimeError(f"{side.label}: expected one uvicorn worker under PID {side.server.process.pid}, got {workers}")
        side.worker = workers[0]
        say(f"{side.label} worker PID {side.worker}: {cmdline(side.worker)[:160]}")
    return sides


# -- evidence -----------------------------------------------------------------------------------


def log_evidence_for(side: Side, candidate: str, baseline: str | None, ev) -> str:
    data, strong, weak = ev
    return log_evidence_run(side.url, Comparison(MODEL, candidate, baseline, strong, weak if baseline else None), data,
                            data_name=DATA_NAME)


# -- 3. memory ----------------------------------------------------------------------------------


def snapshot_memory(side: Side, when: str) -> None:
    side.memory[when] = status_kib(side.worker)


def warm_up(side: Side, ev) -> float:
    """The same client traffic on both sides; returns the seconds the promotion call took."""
    client = side.client
    side.versions.append(register_version(client, MODEL))
    log_evidence_for(side, side.versions[0], None, ev)  # first release (the plain server just stores it)
    started = time.perf_counter()
    client.set_registered_model_alias(MODEL, PROTECTED_ALIAS, side.versions[0])
    promotion = time.perf_counter() - started
    client.set_registered_model_alias(MODEL, FREE_ALIAS, side.versions[0])
    client.get_registered_model(MODEL)
    client.get_model_version(MODEL, side.versions[0])
    client.search_registered_models(max_results=10)
    client.search_model_versions(f"name='{MODEL}'")
    experiment = client.get_experiment_by_name("evaluations")
    client.search_runs([experiment.experiment_id], max_results=10)
    holder = client.get_registered_model(MODEL).aliases.get(PROTECTED_ALIAS)
    if holder != side.versions[0]:
        raise RuntimeError(f"{side.label}: warm-up promotion did not move {PROTECTED_ALIAS} (holder {holder})")
    time.sleep(1.0)
    return promotion


def imported_modules(side: Side) -> list[str]:
    """Every module the server's processes (``mlflow server`` and its worker) imported, in order."""
    return [m.group(1) for m in map(IMPORT_LINE.match, side.server.log().splitlines()) if m]


def forbidden_imports(side: Side) -> dict[str, list[str]]:
    """Where torch / evidently show up: the worker's mapped files, and the servers' import log.

    Mapped files catch torch (shared objects) in the worker itself; evidently is pure Python, so
    only the import log (parent and worker together: both share the log) can show it.
    """
    found: dict[str, list[str]] = {name: [] for name in FORBIDDEN}
    for path in mapped_files(side.worker):
        for name in FORBIDDEN:
            if f"/{name}/" in path or f"lib{name}" in path:
                found[name].append(f"mapped: {path}")
    for module in imported_modules(side):
        for name in FORBIDDEN:
            if module == name or module.startswith(name + "."):
                found[name].append(f"imported: {module}")
    return found


def extra_imports(gated: Side, plain: Side) -> list[str]:
    """Modules the gated server processes imported and the plain ones did not, counted per top-level package."""
    extra = set(imported_modules(gated)) - set(imported_modules(plain))
    counts: dict[str, int] = {}
    for module in extra:
        counts[module.split(".")[0]] = counts.get(module.split(".")[0], 0) + 1
    return [f"{package} ({n})" for package, n in sorted(counts.items(), key=lambda item: -item[1])]


def extra_mapped(gated: Side, plain: Side) -> list[str]:
    """Files (shared objects) the gated worker maps and the plain one doesn't, site-packages-relative."""
    short = lambda path: path.split("site-packages/", 1)[-1]  # noqa: E731
    return sorted(short(p) for p in mapped_files(gated.worker) - mapped_files(plain.worker) if ".so" in p)


# -- 1. promotion latency -----------------------------------------------------------------------


def first_verified_release(verified: Side, worker: RecordingWorker, ev) -> None:
    """The verified server's set registered and its v1 promoted (first-release evidence, verified)."""
    register_set(verified.url, DATA_NAME, ev[0], verified.server.workdir)
    verified.versions.append(register_version(verified.client, MODEL))
    log_evidence_for(verified, verified.versions[0], None, ev)
    worker.verify(MODEL, verified.versions[0])
    verified.client.set_registered_model_alias(MODEL, PROTECTED_ALIAS, verified.versions[0])


def prepare_chain(plain: Side, gated: Side, verified: Side, reps: int, ev) -> None:
    """reps new versions on each side; on the gated ones, evidence for each against its predecessor."""
    started = time.perf_counter()
    for i in range(reps):
        for side in (plain, gated, verified):
            side.versions.append(register_version(side.client, MODEL))
        for side in (gated, verified):
            log_evidence_for(side, side.versions[-1], side.versions[-2], ev)
        if (i + 1) % 10 == 0:
            say(f"  evidence {i + 1}/{reps} logged")
    say(f"prepared {reps} versions per side and {reps} evidence runs in {time.perf_counter() - started:.1f} s")


def timed_ms(call) -> tuple[float, str | None]:
    started = time.perf_counter()
    try:
        call()
        error = None
    except Exception as exc:  # noqa: BLE001 - recorded and reported, never hidden
        error = f"{type(exc).__name__}: {exc}"
    return (time.perf_counter() - started) * 1000, error


def measure_latency(plain: Side, gated: Side, verified: Side, worker: RecordingWorker, reps: int) -> dict[str, list[float]]:
    """Each repetition promotes the next version on every gated column; the verified column's
    candidate is verified (untimed) just before its promotion is timed."""
    columns = {
        "plain": lambda v: plain.client.set_registered_model_alias(MODEL, PROTECTED_ALIAS, plain.versions[v]),
        "gated": lambda v: gated.client.set_registered_model_alias(MODEL, PROTECTED_ALIAS, gated.versions[v]),
        "unprotected": lambda v: gated.client.set_registered_model_alias(MODEL, FREE_ALIAS, gated.versions[v]),
        "verified": lambda v: verified.client.set_registered_model_alias(MODEL, PROTECTED_ALIAS, verified.versions[v]),
    }
    results: dict[str, list[float]] = {name: [] for name in columns}
    errors: list[str] = []
    order = list(columns)
    for i in range(1, reps + 1):
        worker.verify(MODEL, verified.versions[i])
        for name in order[i % len(order):] + order[:i % len(order)]:  # rotate who goes first
            ms, error = timed_ms(lambda: columns[name](i))
            if error:
                errors.append(f"rep {i} {name}: {error[:400]}")
            else:
                results[name].append(ms)
        if errors and any(e.startswith((f"rep {i} gated", f"rep {i} verified")) for e in errors):
            say(f"gated promotion refused at rep {i}; stopping the chain: {errors[-1]}")
            break
    results["errors"] = errors  # type: ignore[assignment]
    for side in (gated, verified):
        holder = side.client.get_registered_model(MODEL).aliases.get(PROTECTED_ALIAS)
        say(f"{side.label} champion after the chain: v{holder} (expected v{side.versions[len(results[side.label])]})")
    return results


# -- 2. throughput of untouched calls -----------------------------------------------------------


def build_fixture(side: Side) -> None:
    """Identical read/write targets on both servers, apart from the latency chain's model."""
    client = side.client
    models = [f"tp-{i}" for i in range(3)]
    for name in models:
        for _ in range(4):
            register_version(client, name)
    read = client.create_experiment("tp-read")
    for i in range(25):
        run = client.create_run(read)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(f"m{k}", float(i * k), 0, k) for k in range(5)],
            params=[Param(f"p{k}", str(i + k)) for k in range(5)],
            tags=[RunTag(f"t{k}", str(k)) for k in range(3)],
        )
        client.set_terminated(run.info.run_id)
    write = client.create_experiment("tp-write")
    side.fixture = {"model": models[0], "version": "2", "read": read, "write_run": client.create_run(write).info.run_id}


def _ops(url: str, fixture: dict):
    api = f"{url}/api/2.0/mlflow"
    steps = itertools.count()
    return [
        ("search_registered_models", lambda s: s.get(f"{api}/registered-models/search",
                                                     params={"filter": "name LIKE 'tp-%'", "max_results": 100})),
        ("get_model_version", lambda s: s.get(f"{api}/model-versions/get",
                                              params={"name": fixture["model"], "version": fixture["version"]})),
        ("get_registered_model", lambda s: s.get(f"{api}/registered-models/get", params={"name": fixture["model"]})),
        ("log_metric", lambda s: s.post(f"{api}/runs/log-metric", json={
            "run_id": fixture["write_run"], "key": "tp", "value": 1.0,
            "timestamp": int(time.time() * 1000), "step": next(steps)})),
        ("search_runs", lambda s: s.post(f"{api}/runs/search",
                                         json={"experiment_ids": [fixture["read"]], "max_results": 50})),
    ]


def throughput_round(side: Side, requests_total: int, threads: int,
                     per_op: dict[str, list[float]] | None = None) -> float:
    """requests/s for ``requests_total`` requests of the mix; per-request ms go to ``per_op``."""
    ops = _ops(side.url, side.fixture)
    per_op = {} if per_op is None else per_op
    counter = itertools.count()
    failures: list[str] = []
    gate = threading.Barrier(threads + 1)

    def worker() -> None:
        session = requests.Session()
        gate.wait()
        while (i := next(counter)) < requests_total:
            name, op = ops[i % len(ops)]
            started = time.perf_counter()
            response = op(session)
            per_op.setdefault(name, []).append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                failures.append(f"{name}: HTTP {response.status_code} {response.text[:200]}")
        session.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{side.label}: {len(failures)} failed requests, e.g. {failures[0]}")
    return requests_total / elapsed


def measure_throughput(sides: list[Side], rounds: int, requests_total: int, threads: int) -> dict:
    """req/s per side and round; every round runs each side once, the order rotating."""
    for side in sides:  # untimed warm-up round: first-call costs stay out of the figures
        throughput_round(side, max(50, requests_total // 10), threads)
    rps: dict[str, list[float]] = {side.label: [] for side in sides}
    per_op: dict[str, dict[str, list[float]]] = {side.label: {} for side in sides}
    for i in range(rounds):
        for side in sides[i % len(sides):] + sides[:i % len(sides)]:
            rps[side.label].append(throughput_round(side, requests_total, threads, per_op[side.label]))
        say(f"  round {i + 1}/{rounds}: " + ", ".join(f"{label} {v[-1]:.0f}" for label, v in rps.items()) + " req/s")
    return {"rps": rps, "per_op": per_op}


# -- run and report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    reps: int
    examples: int
    requests: int
    rounds: int
    threads: int


def parse_settings() -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 promotions, 2 throughput rounds (evidence stays 100k examples)")
    parser.add_argument("--reps", type=int, help="promotions timed per column (default 30, quick 5)")
    parser.add_argument("--examples", type=int, help="rows of evidence (default 100000, also with --quick)")
    parser.add_argument("--requests", type=int, help="requests per throughput round (default 300, quick 150)")
    parser.add_argument("--rounds", type=int, help="throughput rounds, each server once per round (default 10, quick 2)")
    parser.add_argument("--threads", type=int, default=4, help="client threads for throughput (default 4)")
    args = parser.parse_args()
    return Settings(reps=args.reps or (5 if args.quick else 30), examples=args.examples or 100_000,
                    requests=args.requests or (150 if args.quick else 300), rounds=args.rounds or (2 if args.quick else 10),
                    threads=args.threads)


def measure_all(settings: Settings) -> dict:
    """Starts the three servers, runs 3 (memory after warm-up), 1 (latency) and 2 (throughput) on
    them, and returns the raw measurements once they are stopped."""
    ev = evaluation(settings.examples)
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp, ExitStack() as stack:
        plain, gated, bare, verified = start_servers(stack, Path(tmp))
        sides = plain, gated, bare
        worker = RecordingWorker(verified.url, verified.server.backend_uri)
        stack.callback(worker.close)
        for side in sides:
            snapshot_memory(side, "idle")
        first_promotion = {side.label: warm_up(side, ev) for side in sides}
        for side in sides:
            snapshot_memory(side, "warm")
        say(f"warm-up done; first promotion: plain {first_promotion['plain'] * 1000:.0f} ms, "
            f"gated (first release, cold) {first_promotion['gated'] * 1000:.0f} ms")
        first_verified_release(verified, worker, ev)
        prepare_chain(plain, gated, verified, settings.reps, ev)
        latency = measure_latency(plain, gated, verified, worker, settings.reps)
        for side in sides:
            build_fixture(side)
        throughput = measure_throughput(list(sides), settings.rounds, settings.requests, settings.threads)
        for side in sides:
            snapshot_memory(side, "end")
        return {
            "sides": sides, "first_promotion": first_promotion, "latency": latency, "throughput": throughput,
            "bare_plugin_modules": [m for m in imported_modules(bare) if m.split(".")[0] in ("plugins", "registry_hooks")],
            "imports": {side.label: forbidden_imports(side) for side in (plain, gated)},
            "import_lines": {side.label: len(imported_modules(side)) for side in (plain, gated)},
            "extra_mapped": extra_mapped(gated, plain), "extra_modules": extra_imports(gated, plain),
        }


def _summary(values: list[float]) -> dict:
    return {"n": len(values), "median": median(values), "p90": percentile(values, 90),
            "min": min(values, default=float("nan")), "max": max(values, default=float("nan"))}


def figures(measured: dict) -> dict:
    """The record written to ``benchmarks/results/gate.json``: each measure, plain against gated."""
    latency, rps = measured["latency"], measured["throughput"]["rps"]
    lp, lg, lu, lv = latency["plain"], latency["gated"], latency["unprotected"], latency["verified"]
    ratios = [g / p for g, p in zip(rps["gated"], rps["plain"])]
    control = [p / b for p, b in zip(rps["plain"], rps["bare"])]
    memory = {when: {s.label: {key: s.memory[when][key] * 1024 / 1e6 for key in ("VmRSS", "RssAnon")}
                     for s in measured["sides"]} for when in ("idle", "warm", "end")}
    warm = {label: values["VmRSS"] for label, values in memory["warm"].items()}
    forbidden = {name: hits for name, hits in measured["imports"]["gated"].items() if hits}
    return {
        "latency_ms": {"plain": _summary(lp), "gated": _summary(lg), "unprotected": _summary(lu),
                       "verified": _summary(lv),
                       "gated_minus_plain_median": median(lg) - median(lp),
                       "verified_minus_plain_median": median(lv) - median(lp),
                       "paired_difference_median": median([g - p for g, p in zip(lg, lp)]),
                       "verified_paired_difference_median": median([v - p for v, p in zip(lv, lp)]),
                       "unprotected_minus_plain_median": median(lu) - median(lp), "errors": latency["errors"],
                       "first_promotion": {k: v * 1000 for k, v in measured["first_promotion"].items()}},
        "throughput_rps": {"per_round": rps, "median": {k: median(v) for k, v in rps.items()},
                           "gated_over_plain": median(ratios), "gated_over_plain_iqr": _iqr(ratios),
                           "plain_over_bare": median(control), "plain_over_bare_iqr": _iqr(control),
                           "per_request_ms": {label: {op: _summary(v) for op, v in ops.items()}
                                              for label, ops in measured["throughput"]["per_op"].items()}},
        "memory_mb": memory, "added_vs_bare_mb": warm["gated"] - warm["bare"], "added_vs_plain_mb": warm["gated"] - warm["plain"],
        "forbidden_imports": forbidden, "import_lines_logged": measured["import_lines"],
        "plugin_modules_in_bare": len(measured["bare_plugin_modules"]),
        "extra_mapped_files": measured["extra_mapped"], "extra_modules": measured["extra_modules"],
        "budgets": {"latency_ms": LATENCY_BUDGET_MS, "throughput_ratio": THROUGHPUT_BUDGET, "memory_mb": MEMORY_BUDGET_MB},
    }


def _iqr(values: list[float]) -> list[float]:
    return [percentile(values, 25), percentile(values, 75)]


def print_report(result: dict) -> None:
    lat, tp = result["latency_ms"], result["throughput_rps"]
    print("\n== 1. promotion latency: MlflowClient.set_registered_model_alias, ms ==")
    print(markdown_table(["column", "n", "median", "p90", "min", "max"],
                         [[name, str(v["n"]), *(f"{v[k]:.1f}" for k in ("median", "p90", "min", "max"))]
                          for name, v in ((f"plain MLflow, '{PROTECTED_ALIAS}'", lat["plain"]),
                                          (f"gated (weak mode), '{PROTECTED_ALIAS}'", lat["gated"]),
                                          (f"gated (registered set, verified), '{PROTECTED_ALIAS}'", lat["verified"]),
                                          (f"gated, unprotected alias '{FREE_ALIAS}'", lat["unprotected"]))]))
    print(f"median(gated) - median(plain) = {lat['gated_minus_plain_median']:+.1f} ms; median of paired differences = "
          f"{lat['paired_difference_median']:+.1f} ms; unprotected - plain = {lat['unprotected_minus_plain_median']:+.1f} ms; "
          f"first (cold) gated promotion {lat['first_promotion']['gated']:.0f} ms")
    print(f"registered set, verified: median - plain = {lat['verified_minus_plain_median']:+.1f} ms; median of paired "
          f"differences = {lat['verified_paired_difference_median']:+.1f} ms")
    for error in lat["errors"]:
        print(f"ERROR {error}")
    print("\n== 2. throughput of untouched calls, requests/s (REST, same mix) ==")
    rps = tp["per_round"]
    print(markdown_table(["round", "bare", "plain", "gated", "gated/plain", "plain/bare (A/A)"],
                         [[str(i + 1), f"{b:.0f}", f"{p:.0f}", f"{g:.0f}", f"{g / p:.3f}", f"{p / b:.3f}"]
                          for i, (b, p, g) in enumerate(zip(rps["bare"], rps["plain"], rps["gated"]))]))
    print(f"median ratios: gated/plain {tp['gated_over_plain']:.3f} (IQR {tp['gated_over_plain_iqr'][0]:.3f}–"
          f"{tp['gated_over_plain_iqr'][1]:.3f}), plain/bare A/A control {tp['plain_over_bare']:.3f} "
          f"(IQR {tp['plain_over_bare_iqr'][0]:.3f}–{tp['plain_over_bare_iqr'][1]:.3f})")
    print("\n== 3. memory of the uvicorn worker (MB = 10^6 bytes) ==")
    print(markdown_table(["", "bare", "plain", "gated"],
                         [[f"{key} {when}", *(f"{result['memory_mb'][when][side][key]:.1f}" for side in ("bare", "plain", "gated"))]
                          for when in ("idle", "warm", "end") for key in ("VmRSS", "RssAnon")]))
    print(f"gated - bare after warm-up: {result['added_vs_bare_mb']:+.1f} MB; gated - plain: {result['added_vs_plain_mb']:+.1f} MB; "
          f"plugin modules imported by bare: {result['plugin_modules_in_bare']} (expected 0)")
    print(f"files mapped only by the gated worker: {', '.join(result['extra_mapped_files']) or 'none'}")
    print(f"modules imported only by the gated server processes: {', '.join(result['extra_modules']) or 'none'}")
    print(f"torch / evidently in the gated server: {result['forbidden_imports'] or 'neither'} "
          f"({result['import_lines_logged']['gated']} imports logged)")


def main() -> None:
    settings = parse_settings()
    record = ResultFile("gate", PACKAGES)
    for line in machine_lines(PACKAGES):
        print(line)
    print(f"settings: {settings}, 1 uvicorn worker per server, SQLite stores\n", flush=True)
    result = figures(measure_all(settings)) | {"settings": vars(settings)}
    print_report(result)
    record.write(result)


if __name__ == "__main__":
    main()
