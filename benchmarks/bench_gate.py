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
   timed in the same repetition, in rotating order.
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

No assertions: it prints figures and whether each budget was met.

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
os.environ["DO_NOT_TRACK"] = "true"
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
for _var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "GATEKEEPER_POLICY"):
    os.environ.pop(_var, None)

import warnings  # noqa: E402

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

from _common import (  # noqa: E402
    children, cmdline, machine_lines, mapped_files, markdown_table, median, percentile, status_kib,
)
from tests.support.evidence import Scored, log_evidence_run, make_data, register_version  # noqa: E402
from tests.support.servers import MlflowServer  # noqa: E402

MODEL = "bench-gate"
PROTECTED_ALIAS = "champion"
FREE_ALIAS = "challenger"
DATA_NAME = "bench-eval"
LATENCY_BUDGET_MS = 50.0
THROUGHPUT_BUDGET = 0.97
MEMORY_BUDGET_MB = 30.0
FORBIDDEN = ("torch", "evidently")
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


def start_servers(stack: ExitStack, workdir: Path) -> tuple[Side, Side, Side]:
    """plain, gated and bare (plain with this package's entry points hidden), started in parallel."""
    env = {"PYTHONPROFILEIMPORTTIME": "1"}  # every side: lets us see every module the servers import
    hide = workdir / "hide-plugin"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(_HIDE_PLUGIN)
    bare_env = env | {"PYTHONPATH": os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")]))}
    plain = MlflowServer(workdir / "plain", f"sqlite:///{workdir / 'plain.db'}", gated=False, workers=1, env=env)
    gated = MlflowServer(workdir / "gated", f"sqlite:///{workdir / 'gated.db'}", gated=True, workers=1, env=env)
    bare = MlflowServer(workdir / "bare", f"sqlite:///{workdir / 'bare.db'}", gated=False, workers=1, env=bare_env)
    servers = (plain, gated, bare)
    for server in servers:
        stack.callback(server.stop)  # registered before starting: a failed start still stops the others
    started = time.perf_counter()
    with ThreadPoolExecutor(len(servers)) as pool:
        for future in [pool.submit(server.start, 240) for server in servers]:
            future.result()
    say(f"servers healthy in {time.perf_counter() - started:.1f} s: plain {plain.url}, gated {gated.url}, "
        f"bare (plugin hidden) {bare.url}")
    sides = Side("plain", plain), Side("gated", gated), Side("bare", bare)
    for side in sides:
        side.client = MlflowClient(tracking_uri=side.url, registry_uri=side.url)
        workers = children(side.server.process.pid)
        if len(workers) != 1:
            raise RuntimeError(f"{side.label}: expected one uvicorn worker under PID {side.server.process.pid}, got {workers}")
        side.worker = workers[0]
        say(f"{side.label} worker PID {side.worker}: {cmdline(side.worker)[:160]}")
    return sides


# -- evidence -----------------------------------------------------------------------------------


def evaluation(n: int, seed: int = 11):
    """100k generated examples and per-example outcomes: candidate ~86 % right, baseline ~80 %."""
    rng = np.random.default_rng(seed)
    data = make_data(n, seed)
    label = data["label"].to_numpy()

    def scored(accuracy: float) -> Scored:
        right = rng.random(n) < accuracy
        proba_label = np.where(right, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.5, n))
        return Scored(prediction=np.where(right, label, 1 - label), proba_label=proba_label)

    return data, scored(0.86), scored(0.80)


def log_evidence_for(side: Side, candidate: str, baseline: str | None, ev) -> str:
    data, strong, weak = ev
    return log_evidence_run(side.url, MODEL, candidate, baseline, data, strong, weak if baseline else None,
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


def prepare_chain(plain: Side, gated: Side, reps: int, ev) -> None:
    """reps new versions on each side; on the gated one, evidence for each against its predecessor."""
    started = time.perf_counter()
    for i in range(reps):
        for side in (plain, gated):
            side.versions.append(register_version(side.client, MODEL))
        log_evidence_for(gated, gated.versions[-1], gated.versions[-2], ev)
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


def measure_latency(plain: Side, gated: Side, reps: int) -> dict[str, list[float]]:
    columns = {
        "plain": lambda v: plain.client.set_registered_model_alias(MODEL, PROTECTED_ALIAS, plain.versions[v]),
        "gated": lambda v: gated.client.set_registered_model_alias(MODEL, PROTECTED_ALIAS, gated.versions[v]),
        "unprotected": lambda v: gated.client.set_registered_model_alias(MODEL, FREE_ALIAS, gated.versions[v]),
    }
    results: dict[str, list[float]] = {name: [] for name in columns}
    errors: list[str] = []
    order = list(columns)
    for i in range(1, reps + 1):
        for name in order[i % 3:] + order[:i % 3]:  # rotate who goes first
            ms, error = timed_ms(lambda: columns[name](i))
            if error:
                errors.append(f"rep {i} {name}: {error[:400]}")
            else:
                results[name].append(ms)
        if errors and any(e.startswith(f"rep {i} gated") for e in errors):
            say(f"gated promotion refused at rep {i}; stopping the chain: {errors[-1]}")
            break
    results["errors"] = errors  # type: ignore[assignment]
    holder = gated.client.get_registered_model(MODEL).aliases.get(PROTECTED_ALIAS)
    say(f"gated champion after the chain: v{holder} (expected v{gated.versions[len(results['gated'])]})")
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


# -- report -------------------------------------------------------------------------------------


def fmt_ms(values: list[float]) -> str:
    return f"{median(values):.1f} / {percentile(values, 90):.1f} ms" if values else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 promotions, 2 throughput rounds (evidence stays 100k examples)")
    parser.add_argument("--reps", type=int, help="promotions timed per column (default 30, quick 5)")
    parser.add_argument("--examples", type=int, help="rows of evidence (default 100000, also with --quick)")
    parser.add_argument("--requests", type=int, help="requests per throughput round (default 300, quick 150)")
    parser.add_argument("--rounds", type=int, help="throughput rounds, each server once per round (default 10, quick 2)")
    parser.add_argument("--threads", type=int, default=4, help="client threads for throughput (default 4)")
    args = parser.parse_args()
    reps = args.reps or (5 if args.quick else 30)
    examples = args.examples or 100_000
    requests_total = args.requests or (150 if args.quick else 300)
    rounds = args.rounds or (2 if args.quick else 10)

    began = time.perf_counter()
    header = machine_lines(("mlflow", "mlflow-gatekeeper", "numpy", "pandas", "pyarrow", "scipy", "sqlalchemy",
                            "uvicorn", "fastapi", "flask", "requests"))
    for line in header:
        print(line)
    print(f"settings: {reps} promotions/column, evidence of {examples} examples, throughput {rounds} rounds x "
          f"{requests_total} requests from {args.threads} threads, 1 uvicorn worker per server, SQLite stores\n",
          flush=True)

    ev = evaluation(examples)
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp, ExitStack() as stack:
        plain, gated, bare = start_servers(stack, Path(tmp))
        for side in (plain, gated, bare):
            snapshot_memory(side, "idle")

        # 3 (first): memory after the same warm-up on every server
        first_promotion = {side.label: warm_up(side, ev) for side in (plain, gated, bare)}
        for side in (plain, gated, bare):
            snapshot_memory(side, "warm")
        bare_plugin_modules = [m for m in imported_modules(bare) if m.split(".")[0] in ("plugins", "registry_hooks")]
        say(f"warm-up done; first promotion: plain {first_promotion['plain'] * 1000:.0f} ms, "
            f"gated (first release, cold) {first_promotion['gated'] * 1000:.0f} ms")

        # 1. promotion latency
        prepare_chain(plain, gated, reps, ev)
        latency = measure_latency(plain, gated, reps)
        say(f"latency: plain {fmt_ms(latency['plain'])}, gated {fmt_ms(latency['gated'])}, "
            f"unprotected {fmt_ms(latency['unprotected'])}")

        # 2. throughput of untouched calls
        for side in (plain, gated, bare):
            build_fixture(side)
        throughput = measure_throughput([plain, gated, bare], rounds, requests_total, args.threads)

        for side in (plain, gated, bare):
            snapshot_memory(side, "end")
        imports = {side.label: forbidden_imports(side) for side in (plain, gated)}
        extra = extra_mapped(gated, plain)
        extra_modules = extra_imports(gated, plain)
        import_lines = {side.label: len(imported_modules(side)) for side in (plain, gated)}
    elapsed = time.perf_counter() - began  # servers stopped by now

    # -- figures --------------------------------------------------------------------------------
    lp, lg, lu = latency["plain"], latency["gated"], latency["unprotected"]
    paired = [g - p for g, p in zip(lg, lp)]
    diff = median(lg) - median(lp)
    rps = throughput["rps"]
    ratios = [g / p for g, p in zip(rps["gated"], rps["plain"])]
    control = [p / b for p, b in zip(rps["plain"], rps["bare"])]
    ratio, control_ratio = median(ratios), median(control)
    iqr = lambda values: f"{percentile(values, 25):.2f}–{percentile(values, 75):.2f}"  # noqa: E731
    ratio_iqr = iqr(ratios)
    mb = lambda kib: kib * 1024 / 1e6  # noqa: E731

    def memory(when: str, key: str = "VmRSS") -> dict[str, float]:
        return {s.label: mb(s.memory[when][key]) for s in (plain, gated, bare) if when in s.memory}

    rss = memory("warm")
    added_plain, added_bare = rss["gated"] - rss["plain"], rss["gated"] - rss["bare"]
    forbidden_found = {name: imports["gated"][name] for name in FORBIDDEN if imports["gated"][name]}

    print("\n== 1. promotion latency: MlflowClient.set_registered_model_alias, ms ==")
    print(markdown_table(
        ["column", "n", "median", "p90", "min", "max"],
        [[name, str(len(v)), f"{median(v):.1f}", f"{percentile(v, 90):.1f}", f"{min(v):.1f}" if v else "n/a",
          f"{max(v):.1f}" if v else "n/a"] for name, v in (
            (f"plain MLflow, '{PROTECTED_ALIAS}'", lp), (f"gated, '{PROTECTED_ALIAS}' (evidence {examples} ex.)", lg),
            (f"gated, unprotected alias '{FREE_ALIAS}'", lu))],
    ))
    print(f"median(gated) - median(plain) = {diff:+.1f} ms; median of paired differences = {median(paired):+.1f} ms; "
          f"gated/plain median ratio = {median(lg) / median(lp):.2f}x; unprotected - plain = {median(lu) - median(lp):+.1f} ms")
    print(f"first (cold) gated promotion, first release: {first_promotion['gated'] * 1000:.0f} ms "
          f"(plain first alias set {first_promotion['plain'] * 1000:.0f} ms)")
    for error in latency["errors"]:
        print(f"ERROR {error}")

    print("\n== 2. throughput of untouched calls, requests/s (REST, same mix) ==")
    print(markdown_table(
        ["round", "bare", "plain", "gated", "gated/plain", "plain/bare (A/A)"],
        [[str(i + 1), f"{b:.0f}", f"{p:.0f}", f"{g:.0f}", f"{r:.3f}", f"{c:.3f}"]
         for i, (b, p, g, r, c) in enumerate(zip(rps["bare"], rps["plain"], rps["gated"], ratios, control))]
        + [["median", *(f"{median(rps[k]):.0f}" for k in ("bare", "plain", "gated")), f"{ratio:.3f}",
            f"{control_ratio:.3f}"]],
    ))
    print(f"interquartile range of the ratios: gated/plain {ratio_iqr}, plain/bare (A/A control) {iqr(control)}")
    ops = throughput["per_op"]
    print(markdown_table(
        ["request (latency under load, ms)", "bare median / p90", "plain median / p90", "gated median / p90",
         "gated/plain median"],
        [[name, *(f"{median(ops[k][name]):.1f} / {percentile(ops[k][name], 90):.1f}" for k in ("bare", "plain", "gated")),
          f"{median(ops['gated'][name]) / median(ops['plain'][name]):.2f}"] for name in ops["plain"]],
    ))

    print("\n== 3. memory of the uvicorn worker (MB = 10^6 bytes) ==")
    rows = []
    for when, text in (("idle", "just started"), ("warm", "after warm-up"), ("end", "at the end")):
        for key in ("VmRSS", "RssAnon"):
            values = memory(when, key)
            rows.append([f"{key} {text}"] + [f"{values[k]:.1f}" if k in values else "—" for k in ("bare", "plain", "gated")]
                        + [f"{values['gated'] - values['plain']:+.1f}",
                           f"{values['gated'] - values['bare']:+.1f}" if "bare" in values else "—"])
    print(markdown_table(["", "bare", "plain", "gated", "gated - plain", "gated - bare"], rows))
    print("bare: MLflow with this package's entry points hidden; plain: ungated server in this venv, which imports "
          f"the plugin's modules anyway (MLflow loads entry points eagerly). Plugin modules imported by bare: "
          f"{len(bare_plugin_modules)} (expected 0)")
    print(f"files mapped only by the gated worker (vs plain): {', '.join(extra) or 'none'}")
    print(f"modules imported only by the gated server processes (vs plain), per package: {', '.join(extra_modules) or 'none'}")
    for label in ("plain", "gated"):
        hits = {name: len(v) for name, v in imports[label].items()}
        print(f"{label}: torch/evidently in worker maps or server import log ({import_lines[label]} imports logged): {hits}")
    for name, hits in forbidden_found.items():
        print(f"  gated {name}: {'; '.join(hits[:5])}")

    # -- README table ---------------------------------------------------------------------------
    yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
    print("\n== Performance (paste into README) ==\n")
    print(markdown_table(
        ["Measure", "Plain MLflow", "Gatekeeper", "Difference", "Budget", "Met"],
        [
            [f"Promotion latency: set `{PROTECTED_ALIAS}`, {examples // 1000}k-example evidence (median / p90)",
             fmt_ms(lp), fmt_ms(lg), f"{diff:+.1f} ms", f"< {LATENCY_BUDGET_MS:.0f} ms", yes(diff < LATENCY_BUDGET_MS)],
            [f"Unprotected alias set (median / p90)", fmt_ms(lp), fmt_ms(lu), f"{median(lu) - median(lp):+.1f} ms", "—", "—"],
            [f"Throughput of untouched calls (median of {rounds} rotating rounds; ratio IQR {ratio_iqr})",
             f"{median(rps['plain']):.0f} req/s", f"{median(rps['gated']):.0f} req/s", f"{ratio:.3f}×",
             f"≥ {THROUGHPUT_BUDGET}", yes(ratio >= THROUGHPUT_BUDGET)],
            [f"Noise floor (A/A): ungated with vs without the package installed; ratio IQR {iqr(control)}",
             f"{median(rps['bare']):.0f} req/s (without)", f"{median(rps['plain']):.0f} req/s (with, ungated)",
             f"{control_ratio:.3f}×", "≈ 1", "—"],
            ["Worker RSS after warm-up, vs MLflow without the package", f"{rss['bare']:.0f} MB", f"{rss['gated']:.0f} MB",
             f"{added_bare:+.1f} MB", f"< {MEMORY_BUDGET_MB:.0f} MB", yes(added_bare < MEMORY_BUDGET_MB)],
            ["Worker RSS after warm-up, vs plain server with the package installed", f"{rss['plain']:.0f} MB",
             f"{rss['gated']:.0f} MB", f"{added_plain:+.1f} MB", f"< {MEMORY_BUDGET_MB:.0f} MB",
             yes(added_plain < MEMORY_BUDGET_MB)],
            ["torch / evidently loaded by the server", "—", ", ".join(forbidden_found) or "neither", "", "neither",
             yes(not forbidden_found) if import_lines["gated"] else "unknown (no import log)"],
        ],
    ))
    print(f"\n{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end), 1 uvicorn worker per server, SQLite stores, {reps} promotions per column, "
          f"{rounds} x {requests_total} requests per server from {args.threads} client threads; "
          f"mlflow {mlflow.__version__}, Python {sys.version.split()[0]}.")
    print(f"Reproduce: .venv/bin/python benchmarks/bench_gate.py{' --quick' if args.quick else ''}")
    print(f"total time {elapsed:.0f} s")

if __name__ == "__main__":
    main()
