"""The autopilot against a real gated server: weeks of simulated traffic with no human command.

Small sizes (a few hundred scenes a week, two epochs) and a lenient policy — the loop is under
test here, not the model's quality (``benchmarks/bench_season.py`` measures that). On SQLite and
PostgreSQL one autopilot runs two weeks through ``mlflow run . -e autopilot``; on SQLite two
autopilots compete for one model, and the one holding the lease is killed with SIGKILL in the
middle of a cycle: the other waits, takes over, resumes the cycle and never promotes twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from benchmarks.servers import MlflowServer
from gatekeeper_cli.client import GatekeeperClient
from projects.autopilot.cycles import TAG_CYCLE, TAG_OUTPUT, TAG_STATE, TAG_STEP, TAG_TRIGGER, TAG_WEEK
from registry_hooks.inference_records import LOG_ENV
from tests.support.webhooks import SECRET, Receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "road-scenes"
POLICY = """
version: 1
defaults:
  targets: {stages: [Production], aliases: [champion]}
  promote_to: {alias: champion, stage: Production}
  primary: {metric: accuracy, margin: 0.0}
  first_release:
    - {metric: accuracy, min: 0.2}
  evaluation: {sets: [golden, hard-cases], min_rows: 20}
  drift: {required: true, critical_columns: [weather], mode: warn}
"""
SMALL = {"week_size": 300, "shift_week": 1, "budget": 0.1, "train_size": 1200, "eval_size": 300, "epochs": 2,
         "min_support": 20, "schedule_weeks": 1, "ttl_s": 6}
STEPS = {"traffic", "trigger", "mine", "label", "curate", "retrain"}


def _server(workdir: Path, backend: str, env: dict[str, str] | None = None) -> MlflowServer:
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    return MlflowServer(workdir / "server", backend, policy=policy, env={LOG_ENV: str(workdir / "log"), **(env or {})})


def _env(server: MlflowServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTEST_"))}
    env.update(MLFLOW_TRACKING_URI=server.url, DO_NOT_TRACK="true", PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
               **{LOG_ENV: server.env[LOG_ENV]})
    return env


def _arguments(workdir: Path, weeks: int, serving: str) -> list[str]:
    values = SMALL | {"simulate_weeks": weeks, "data_dir": workdir / "data", "serving": serving}
    return [a for k, v in values.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def _steps(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("autopilot")
    return client.search_runs([experiment.experiment_id], f"tags.`{TAG_STEP}` != ''", max_results=1000)


def _cycles(client: MlflowClient, experiment_id: str) -> dict[int, object]:
    runs = client.search_runs([experiment_id], f"tags.`{TAG_CYCLE}` != ''", max_results=1000)
    return {int(r.data.tags[TAG_CYCLE]): r for r in runs}


def _check_the_weeks(server: MlflowServer, experiment_id: str, weeks: int) -> None:
    """Every week a finished cycle with each step finished once; one decision per candidate; the
    labels and hard cases it gathered are on the server."""
    client = MlflowClient(server.url)
    cycles = _cycles(client, experiment_id)
    assert {c.data.tags[TAG_STATE] for c in cycles.values()} == {"done"}
    assert sorted(c.data.tags.get(TAG_WEEK, "") for c in cycles.values()) == \
        [""] + [str(w) for w in range(weeks)]  # the bootstrap, then one cycle a week
    for cycle in cycles.values():
        steps = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{cycle.info.run_id}'", max_results=100)
        finished = Counter(s.data.tags[TAG_STEP] for s in steps if s.info.status == "FINISHED")
        if cycle.data.tags.get(TAG_WEEK):
            assert set(finished) == STEPS and max(finished.values()) == 1, finished
    gate = GatekeeperClient(server.url)
    decisions = gate.history(MODEL, limit=100)
    versions = Counter(d["candidate_version"] for d in decisions)
    assert len(decisions) == weeks + 1 and max(versions.values()) == 1, decisions  # never judged (or promoted) twice
    assert decisions[-1]["verdict"] == "promote"  # the bootstrap
    assert len(gate.feedback(MODEL)) == weeks * 30  # 10 % of 300 scenes a week, answered by the labeller
    assert [s["version"] for s in gate.sets("hard-cases")][0] >= 1


def _serving_urls(log: str) -> list[str]:
    return re.findall(r"at (http://127\.0\.0\.1:\d+) \(pid \d+", log)


def _answers(url: str) -> bool:
    try:
        requests.get(f"{url}/ping", timeout=2)
    except requests.ConnectionError:
        return False
    return True


def _served_records(log_root: Path, week_key: Path) -> "pd.DataFrame":
    import pandas as pd
    import pyarrow.dataset as ds

    records = ds.dataset(str(log_root), format="parquet", partitioning="hive").to_table(
        columns=["request_id", "model_run_id"]).to_pandas()
    return records[records["request_id"].isin(pd.read_parquet(week_key)["request_id"])]


def _check_the_serving(client: MlflowClient, workdir: Path, output: str) -> None:
    """Each week was served over HTTP by the champion of that week (its run id on every record),
    a server per champion, none left running once the autopilot exited."""
    traffic = [json.loads(s.data.tags[TAG_OUTPUT]) for s in _steps(client) if s.data.tags[TAG_STEP] == "traffic"]
    assert len(traffic) == 2 and all(t["served_by"].startswith("http://127.0.0.1:") for t in traffic)
    for week in traffic:
        records = _served_records(workdir / "log", Path(week["answer_key"]))
        champion_run = client.get_model_version(MODEL, week["champion"]).run_id
        assert len(records) == week["rows"] and set(records["model_run_id"]) == {champion_run}
    urls = _serving_urls(output)
    assert len(urls) == len({t["champion"] for t in traffic}) and not any(_answers(u) for u in urls)


@pytest.mark.parametrize("backend, serving", [("sqlite", "serve"),
                                              pytest.param("postgres", "in-process", marks=pytest.mark.postgres)])
def test_two_weeks_run_through_mlflow_run_with_no_human_command(backend, serving, tmp_path, request):
    """``serve``: each week's traffic goes through a real ``mlflow models serve`` of the champion,
    restarted when the gate promotes, and every record names the version that served it."""
    if backend == "sqlite":
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        context = None
    else:
        context = request.getfixturevalue("postgres_uri_factory")()
        uri = context.__enter__()
    try:
        with _server(tmp_path, uri) as server:
            params = [a for k, v in (SMALL | {"simulate_weeks": 2, "data_dir": tmp_path / "data", "serving": serving}).items()
                      for a in ("-P", f"{k}={v}")]
            result = subprocess.run([sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "autopilot", "--env-manager",
                                     "local", "--experiment-name", "autopilot", *params], cwd=tmp_path, env=_env(server),
                                    capture_output=True, text=True, timeout=840)
            output = result.stdout + result.stderr
            assert result.returncode == 0, output[-6000:]
            assert "autopilot: week 1:" in output
            experiment_id = MlflowClient(server.url).get_experiment_by_name("autopilot").experiment_id
            _check_the_weeks(server, experiment_id, 2)
            if serving == "serve":
                _check_the_serving(MlflowClient(server.url), tmp_path, output)
    finally:
        if context is not None:
            context.__exit__(None, None, None)


def _start(server: MlflowServer, workdir: Path, name: str, weeks: int) -> tuple[subprocess.Popen, Path]:
    log = workdir / f"{name}.log"
    process = subprocess.Popen([sys.executable, "-m", "projects.autopilot", *_arguments(workdir, weeks, "serve")], cwd=workdir,
                               env=_env(server), stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def _wait(predicate, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_a_second_autopilot_waits_and_resumes_the_cycle_of_one_killed_mid_step(tmp_path):
    receiver = Receiver().start()
    hooks = {"GATEKEEPER_WEBHOOK_URLS": receiver.url, "GATEKEEPER_WEBHOOK_SECRET": SECRET}
    with _server(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", hooks) as server:
        client = MlflowClient(server.url)
        first, first_log = _start(server, tmp_path, "first", 2)
        _wait(lambda: "drives road-scenes" in first_log.read_text(), "the first autopilot to take the lease")
        second, second_log = _start(server, tmp_path, "second", 2)
        _wait(lambda: "waiting for its lease" in second_log.read_text(), "the second autopilot to wait")

        def curating() -> bool:  # week 0's cycle is in its curate step: mined and labelled, not yet retrained
            return any(s.data.tags[TAG_STEP] == "curate" and s.info.status == "RUNNING" for s in _steps(client))

        _wait(curating, "week 0's curate step")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        serving = _serving_urls(first_log.read_text())
        assert serving, first_log.read_text()[-3000:]
        _wait(lambda: not _answers(serving[-1]), "the killed autopilot's scoring server to go with it", timeout=60)
        assert second.wait(timeout=600) == 0, second_log.read_text()[-6000:]
        told = second_log.read_text()
        assert "lease generation 2" in told, told[-3000:]
        assert "resuming cycle 2 (done: traffic, trigger, mine, label)" in told, told[-3000:]
        killed = [s for s in _steps(client) if s.info.status == "KILLED"]
        assert [s.data.tags[TAG_STEP] for s in killed] == ["curate"] and TAG_OUTPUT not in killed[0].data.tags
        _check_the_weeks(server, client.get_experiment_by_name("autopilot").experiment_id, 2)
        first_steps = [json.loads(s.data.tags[TAG_OUTPUT]) for s in _steps(client)
                       if s.data.tags[TAG_STEP] == "label" and s.info.status == "FINISHED"]
        assert len(first_steps) == 2  # week 0 was labelled once, before the kill, and not again
        decisions = GatekeeperClient(server.url).history(MODEL, limit=100)
        _wait(lambda: len(receiver.about(MODEL)) >= len(decisions), "every decision's webhook", timeout=60)
        posted = receiver.about(MODEL)
        assert all(p.signed() for p in posted)  # as MLflow's own webhooks are signed
        assert sorted(p.json["data"]["decision_id"] for p in posted) == sorted(d["id"] for d in decisions)
    receiver.stop()


TRAFFIC = """
import sys
from pathlib import Path
from projects.autopilot import simulate
season = simulate.Season(2, 600, shift_week=0, seed=5)
simulate.traffic(season, 1, simulate.in_process(sys.argv[1]), Path(sys.argv[2]))
"""


def _autopilot(server: MlflowServer, workdir: Path, *arguments: str) -> str:
    result = subprocess.run([sys.executable, "-m", "projects.autopilot", *arguments], cwd=workdir, env=_env(server),
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def _live_cycle(client: MlflowClient, number: int) -> tuple[object, dict[str, dict]]:
    experiment_id = client.get_experiment_by_name("autopilot").experiment_id
    cycle = _cycles(client, experiment_id)[number]
    steps = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{cycle.info.run_id}'", max_results=100)
    return cycle, {s.data.tags[TAG_STEP]: json.loads(s.data.tags[TAG_OUTPUT]) for s in steps}


def test_live_mode_mines_the_newest_window_and_curates_what_people_labelled(tmp_path):
    """Live (``--simulate-weeks 0``): a cycle reads the log's last window; drift fires; with no
    fresh labels it only mines a queue; people label it (here: from the answer key, through the
    gate); the next cycle curates those labels into the training set, retrains, and the gate
    decides — then mines again."""
    from projects.autopilot import simulate

    live = [*_arguments(tmp_path, 0, "in-process"), "--cycles", "1", "--window-days", "0.5"]
    with _server(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}") as server:
        refused = subprocess.run([sys.executable, "-m", "projects.autopilot", *live], cwd=tmp_path, env=_env(server),
                                 capture_output=True, text=True, timeout=300)
        assert refused.returncode == 1 and "live mode watches a model in production" in refused.stderr, refused.stderr[-2000:]
        _autopilot(server, tmp_path, *_arguments(tmp_path, 1, "in-process"))  # a champion and its training set
        gate, client = GatekeeperClient(server.url), MlflowClient(server.url)
        decided = len(gate.history(MODEL, limit=100))
        keys, env = tmp_path / "keys", _env(server) | {"GATEKEEPER_LOG_INPUTS": "full", "PYTHONPATH": str(ROOT)}
        champion = client.get_model_version_by_alias(MODEL, "champion").version
        subprocess.run([sys.executable, "-c", TRAFFIC, f"models:/{MODEL}/{champion}", str(keys)], cwd=tmp_path, env=env,
                       check=True, timeout=300)  # rainy traffic from production

        first = _autopilot(server, tmp_path, *live)
        number = max(_cycles(client, client.get_experiment_by_name("autopilot").experiment_id))
        cycle, steps = _live_cycle(client, number)
        assert cycle.data.tags[TAG_TRIGGER] == "live" and f"cycle {number} (live): no new labels" in first, first[-3000:]
        assert steps["window"]["rows"] >= 600 and any(w.startswith("drift") for w in steps["trigger"]["why"])
        assert steps["curate"]["changed"] is False and "retrain" not in steps and steps["mine"]["rows"] > 0

        import pandas as pd

        queue = pd.read_parquet(Path(steps["mine"]["queue"]) / "queue.parquet", columns=["request_id"])
        written = sum(simulate.answer(gate, MODEL, queue, k)["written"] for k in (keys, tmp_path / "data" / "answer-keys"))
        assert written >= 50  # people labelled the queue between two cycles (the rainy rows and week 0's)

        second = _autopilot(server, tmp_path, *live)
        cycle, steps = _live_cycle(client, number + 1)
        assert any(w.endswith("new labels") for w in steps["trigger"]["why"]), steps["trigger"]
        assert steps["curate"]["changed"] is True and steps["curate"]["rows"] > 0
        assert steps["retrain"]["version"] and steps["mine"]["queue"] != _live_cycle(client, number)[1]["mine"]["queue"]
        assert f"cycle {number + 1} (live): {steps['retrain']['verdict']}" in second
        assert len(gate.history(MODEL, limit=100)) == decided + 1  # the new candidate, judged by the gate once
