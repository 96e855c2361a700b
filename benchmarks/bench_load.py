"""The gate under concurrent load: gunicorn with 4 workers on PostgreSQL, 64 clients, against plain MLflow.

    .venv/bin/python benchmarks/bench_load.py                 # the README figures (~6 min on 2 cores)
    .venv/bin/python benchmarks/bench_load.py --seconds 10    # a smoke run

Three phases, each on a fresh PostgreSQL database and a fresh ``mlflow server`` (gunicorn, 4 workers):

1. plain MLflow;
2. the gated server (``--app-name gatekeeper``, registry ``gatekeeper:<db>``) under the same load;
3. the gated server again, one gunicorn worker SIGKILLed half-way through (gunicorn starts another).

The load: 64 concurrent clients (4 processes × 16 threads, one HTTP session each, raw REST on
``/api/2.0/mlflow``) for a fixed time, each picking its next call at random from a fixed mix —
calls the gate does not touch (search runs 30 %, get a registered model 15 %, get a model version
10 %, log a metric 25 %), evaluations being logged (10 %: create a run, log a batch of metrics and
params, upload a 60 kB outcomes-sized artifact, end the run) and promotions racing (10 %: set the
``champion`` alias of one of 8 models to one of its 5 candidate versions, the call MLflow's UI and
client make). Before the load every model has v1 in production (gated: first-release evidence,
promoted by the gate) and candidates v2–v6 with evidence against v1 (four better, one worse).
Once one candidate is promoted the others' evidence is against a version no longer in production,
so the gate refuses them: races end in refusals, which are answers, not errors.

Per call kind: p50 / p99 latency (ms) and the counts of answers; an *error* is a connection
failure, a 5xx, or a 4xx that is not the gate's refusal (403 ``PERMISSION_DENIED`` on a promotion).
A connection that breaks is tried once more after 0.2 s, as MLflow's own client retries (it does,
for every method, on connection errors); such calls are counted as retried, and an error only if
the second try fails too.
After each gated phase, checked: exactly one holder of each target per model (the ``champion``
alias on one version, one version in ``Production``: the alias route moves only the alias), the
audit chain verifies (``gatekeeper audit verify``), every refusal answered is in the audit log, and
each model's champion is the version of its newest decision that moved it (no audit gap).

No assertions: figures go to ``benchmarks/results/load.json`` and the README table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from benchmarks._common import ResultFile, children, cmdline, percentile  # noqa: E402
from benchmarks.servers import MlflowServer, postgres_database, postgres_problem  # noqa: E402

MODELS = [f"load-{i}" for i in range(8)]
CANDIDATES = 5
PROCESSES, THREADS = 4, 16
MIX = [("search_runs", 30), ("get_registered_model", 15), ("get_model_version", 10), ("log_metric", 25),
       ("log_evaluation", 10), ("promotion", 10)]
UNGATED = ("search_runs", "get_registered_model", "get_model_version", "log_metric", "log_evaluation")
ARTIFACT = os.urandom(60_000)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- set-up ---------------------------------------------------------------------------------------


def prepare(url: str, gated: bool) -> dict:
    """Models with v1 in production and evidence-backed candidates; runs to search and to write to."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from benchmarks.evidence import Scenario

    client = MlflowClient(url, registry_uri=url)
    for name in MODELS:
        scenario = Scenario(url, name, n=600)
        if gated:
            first = scenario.first_release()
        else:
            first = scenario.version()
            client.set_registered_model_alias(name, "champion", first)
            client.transition_model_version_stage(name, first, "Production")
        for index in range(CANDIDATES):
            version = scenario.version()
            scenario.evidence(version, first, candidate_model="weak" if index == CANDIDATES - 1 else "strong",
                              baseline_model="weak" if index < CANDIDATES - 1 else "strong")
    read = client.create_experiment("load-read")
    for i in range(25):
        run = client.create_run(read)
        client.log_batch(run.info.run_id, metrics=[Metric(f"m{k}", float(i * k), 0, k) for k in range(5)],
                         params=[Param(f"p{k}", str(i + k)) for k in range(5)])
        client.set_terminated(run.info.run_id)
    write = client.create_experiment("load-write")
    runs = [client.create_run(write).info.run_id for _ in range(PROCESSES * THREADS)]
    return {"read": read, "write": write, "runs": runs}


# -- the clients ----------------------------------------------------------------------------------


class _Calls:
    """One client's calls: each returns (outcome, http status) with outcome ok / refused / error."""

    def __init__(self, url: str, fixture: dict, client_index: int, seed: int):
        self.api, self.url, self.fixture = f"{url}/api/2.0/mlflow", url, fixture
        self.run_id, self.rng, self.step = fixture["runs"][client_index], random.Random(seed), 0
        self.session = requests.Session()

    def _post(self, path: str, body: dict) -> requests.Response:
        return self.session.post(f"{self.api}/{path}", json=body, timeout=120)

    def search_runs(self):
        return self._post("runs/search", {"experiment_ids": [self.fixture["read"]], "max_results": 50})

    def get_registered_model(self):
        return self.session.get(f"{self.api}/registered-models/get", params={"name": self.rng.choice(MODELS)}, timeout=120)

    def get_model_version(self):
        return self.session.get(f"{self.api}/model-versions/get", timeout=120,
                                params={"name": self.rng.choice(MODELS), "version": str(self.rng.randint(1, 1 + CANDIDATES))})

    def log_metric(self):
        self.step += 1
        return self._post("runs/log-metric", {"run_id": self.run_id, "key": "load", "value": 1.0,
                                              "timestamp": int(time.time() * 1000), "step": self.step})

    def log_evaluation(self):
        """An evaluation run: created, metrics and params logged, its outcomes uploaded, ended."""
        created = self._post("runs/create", {"experiment_id": self.fixture["write"], "start_time": int(time.time() * 1000)})
        if created.status_code != 200:
            return created
        run = created.json()["run"]["info"]
        now = int(time.time() * 1000)
        logged = self._post("runs/log-batch", {"run_id": run["run_id"], "params": [{"key": "model", "value": "load"}],
                                               "metrics": [{"key": f"m{k}", "value": 0.5, "timestamp": now, "step": 0}
                                                           for k in range(8)]})
        if logged.status_code != 200:
            return logged
        path = run["artifact_uri"].split("mlflow-artifacts:/", 1)[-1]
        uploaded = self.session.put(f"{self.url}/api/2.0/mlflow-artifacts/artifacts/{path}/gatekeeper/outcomes.bin",
                                    data=ARTIFACT, timeout=120)
        if uploaded.status_code != 200:
            return uploaded
        return self._post("runs/update", {"run_id": run["run_id"], "status": "FINISHED", "end_time": int(time.time() * 1000)})

    def promotion(self):
        return self._post("registered-models/alias", {"name": self.rng.choice(MODELS), "alias": "champion",
                                                      "version": str(self.rng.randint(2, 1 + CANDIDATES))})


def _outcome(kind: str, response) -> str:
    if response.status_code == 200:
        return "ok"
    if kind == "promotion" and response.status_code == 403 and "PERMISSION_DENIED" in response.text:
        return "refused"
    return f"error {response.status_code}: {response.text[:160]}"


def _call(calls: _Calls, kind: str) -> str:
    """One call; a connection that breaks (a worker killed under it) is tried once more after 0.2 s,
    as MLflow's own client retries, and the outcome then says so."""
    for attempt in range(2):
        try:
            outcome = _outcome(kind, getattr(calls, kind)())
            return outcome if attempt == 0 else f"{outcome} after a retry"
        except requests.ConnectionError as exc:
            failure = f"error {type(exc).__name__}: {str(exc)[:160]}"
            time.sleep(0.2)
        except requests.RequestException as exc:
            return f"error {type(exc).__name__}: {str(exc)[:160]}"
    return failure


def _client_process(url: str, fixture: dict, index: int, seconds: float, start_at: float, queue) -> None:
    """THREADS clients until the deadline; puts (kind, ms, outcome) lists on ``queue``."""
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    found: list[tuple[str, float, str]] = []
    lock = threading.Lock()

    def client(thread: int) -> None:
        calls = _Calls(url, fixture, index * THREADS + thread, seed=1000 * index + thread)
        local = []
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < start_at + seconds:
            kind = calls.rng.choice(kinds)
            started = time.perf_counter()
            outcome = _call(calls, kind)
            local.append((kind, (time.perf_counter() - started) * 1000, outcome))
        with lock:
            found.extend(local)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(found)


def _workers(server: MlflowServer) -> list[int]:
    """The gunicorn workers: the children of gunicorn's arbiter, which ``mlflow server`` starts."""
    arbiters = [pid for pid in children(server.process.pid) if "gunicorn" in cmdline(pid).split(" --", 1)[0]]
    return sorted(worker for arbiter in arbiters for worker in children(arbiter))


def load(server: MlflowServer, fixture: dict, seconds: float, kill: bool) -> dict:
    """Run the clients; with ``kill``, SIGKILL one worker half-way. Returns the calls and the kill."""
    queue = multiprocessing.get_context("fork").Queue()
    start_at = time.time() + 2.0
    processes = [multiprocessing.get_context("fork").Process(
        target=_client_process, args=(server.url, fixture, i, seconds, start_at, queue)) for i in range(PROCESSES)]
    for process in processes:
        process.start()
    killed = None
    if kill:
        time.sleep(start_at + seconds / 2 - time.time())
        before = _workers(server)
        victim = before[len(before) // 2]
        os.kill(victim, signal.SIGKILL)
        killed = {"pid": victim, "workers_before": before, "at_s": round(seconds / 2, 1)}
        say(f"SIGKILLed gunicorn worker {victim} (workers {before})")
    calls = [call for _ in processes for call in queue.get()]
    for process in processes:
        process.join()
    if killed:
        killed["workers_after"] = _workers(server)
    return {"calls": calls, "killed": killed}


# -- what is checked afterwards -------------------------------------------------------------------


def holders(url: str) -> dict:
    """Per model: the champion alias holder and the versions in Production."""
    from mlflow import MlflowClient

    client = MlflowClient(url, registry_uri=url)
    found = {}
    for name in MODELS:
        model = client.get_registered_model(name)
        stages = sorted(mv.version for mv in client.search_model_versions(f"name='{name}'") if mv.current_stage == "Production")
        found[name] = {"champion": model.aliases.get("champion"), "production": stages}
    return found


def audit(url: str, refused: int) -> dict:
    """The audit chain, the refusals answered against those recorded, production against the log.
    (A promotion answered 200 may have moved nothing — the version already held the alias — and
    then, rightly, no decision is recorded: so approvals are checked through production instead.)"""
    from gatekeeper_cli.client import GatekeeperClient

    gate = GatekeeperClient(url)
    verified = gate.audit_verify()
    decisions = {name: gate.history(name, limit=1000) for name in MODELS}  # newest first
    state = holders(url)
    unexplained = []
    for name, found in decisions.items():
        moved = [d for d in found if d["action"] in ("promote", "override", "rollback")]
        newest = moved[0]["candidate_version"] if moved else None
        if state[name]["champion"] != newest:
            unexplained.append(f"{name}: champion v{state[name]['champion']}, newest decision that moved it v{newest}")
    actions = [d["action"] for found in decisions.values() for d in found]
    return {"chain_ok": verified["ok"], "chain_problems": verified.get("problems", [])[:5],
            "refusals_recorded": actions.count("refuse"), "refusals_answered": refused,
            "approvals_recorded": actions.count("promote") - len(MODELS),  # less the first releases
            "unexplained_production": unexplained, "holders": state}


# -- the run ----------------------------------------------------------------------------------------


def summarise(calls: list[tuple[str, float, str]], seconds: float) -> dict:
    kinds = {}
    for kind, _ in MIX:
        mine = [c for c in calls if c[0] == kind]
        ms = [c[1] for c in mine]
        errors = [c[2] for c in mine if c[2].startswith("error")]
        answer = [c[2].removesuffix(" after a retry") for c in mine]
        kinds[kind] = {"n": len(mine), "p50": percentile(ms, 50) if ms else None, "p99": percentile(ms, 99) if ms else None,
                       "ok": answer.count("ok"), "refused": answer.count("refused"), "errors": len(errors),
                       "retried": sum(c[2].endswith(" after a retry") for c in mine),
                       "error_examples": sorted(set(errors))[:3]}
    return {"kinds": kinds, "calls": len(calls), "calls_per_s": len(calls) / seconds,
            "errors": sum(k["errors"] for k in kinds.values()), "retried": sum(k["retried"] for k in kinds.values())}


def phase(label: str, workdir: Path, gated: bool, kill: bool, seconds: float) -> dict:
    from benchmarks.evidence import GATE_POLICY

    policy = workdir / "policy.yaml"
    policy.write_text(GATE_POLICY)
    with ExitStack() as stack:
        uri = stack.enter_context(postgres_database())
        server = MlflowServer(workdir / label, uri, gated=gated, workers=4, gunicorn=True, policy=policy)
        stack.callback(server.stop)
        server.start(240)
        say(f"{label}: {server.url}, workers {_workers(server)}; preparing")
        fixture = prepare(server.url, gated)
        say(f"{label}: {PROCESSES * THREADS} clients for {seconds:.0f} s")
        ran = load(server, fixture, seconds, kill)
        result = {"label": label, "gated": gated, "killed": ran["killed"], **summarise(ran["calls"], seconds)}
        result["after"] = audit(server.url, result["kinds"]["promotion"]["refused"]) if gated else \
            {"holders": holders(server.url)}
        say(f"{label}: {result['calls']} calls, {result['calls_per_s']:.0f}/s, {result['errors']} errors")
        return result


def consistent(found: dict) -> bool:
    """One holder per target per model (the alias on one version, one version in Production), the
    audit chain intact, every refusal answered recorded, each champion the version of its model's
    newest decision that moved it."""
    after = found["after"]
    one_holder = all(h["champion"] is not None and len(h["production"]) == 1 for h in after["holders"].values())
    return one_holder and after["chain_ok"] and not after["unexplained_production"] and \
        after["refusals_recorded"] >= after["refusals_answered"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load per phase (default 60)")
    args = parser.parse_args()
    problem = postgres_problem()
    if problem:
        raise SystemExit(f"bench_load needs PostgreSQL: {problem}")
    result_file = ResultFile("load", packages=("mlflow", "gunicorn", "psycopg2-binary", "SQLAlchemy"))
    workdir = Path(tempfile.mkdtemp(prefix="bench_load_"))
    os.environ.update(DO_NOT_TRACK="true", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    phases = [phase("plain", workdir, gated=False, kill=False, seconds=args.seconds),
              phase("gated", workdir, gated=True, kill=False, seconds=args.seconds),
              phase("gated-kill", workdir, gated=True, kill=True, seconds=args.seconds)]
    for found in phases[1:]:
        found["consistent"] = consistent(found)
    figures = {"seconds": args.seconds, "clients": PROCESSES * THREADS, "workers": 4, "mix": dict(MIX), "phases": phases}
    from benchmarks.readme_tables import load_table

    print(load_table(figures))
    result_file.write(figures)


if __name__ == "__main__":
    main()
