"""What a gate worker spends judging big evidence: latency and peak memory by evaluation size.

    .venv/bin/python benchmarks/bench_big_evidence.py                      # 1M, 3M, 10M rows (README figures)
    .venv/bin/python benchmarks/bench_big_evidence.py --rows 100000        # a smoke run

For each size, in one embedded SQLite tracking store with a gated registry: v1 promoted through the
gate on small first-release evidence, then v2 with evidence of N rows against v1 (outcomes as
``bench_gate`` generates them: candidate ~86 % right, baseline ~80 %, a ``weather`` slice; logged
with ``log_evidence``). Then, in a fresh process that does nothing else, the gate is opened on the
database (``GatekeeperClient`` on a database URI runs the gated store in-process, exactly the code a
server worker runs) and asked to ``explain`` v2: read the outcomes file, check it against its
manifest, parse it, run every check of the policy (accuracy with McNemar, log-loss, the slices).
Timed: that first judgement; memory: the process's RSS after opening the gate and its peak
(``VmHWM``) after the judgement. The difference over the rows is the worker's cost per row, from
which the README states the ceiling for a worker's memory.

No assertions: figures go to ``benchmarks/results/big_evidence.json`` and the README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import ResultFile, own_peak_rss_mb, status_kib  # noqa: E402

NAME = "big-evidence"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare(rows: int) -> None:
    """v1 in production, v2 with evidence of ``rows`` examples against it (tracking URI from the env)."""
    import mlflow
    from mlflow import MlflowClient

    from benchmarks.evidence import Comparison, Scored, evaluation, log_evidence_run, make_data, register_version
    from gatekeeper_cli.client import GatekeeperClient

    uri = mlflow.get_tracking_uri()
    client = MlflowClient(uri, registry_uri=uri)
    v1 = register_version(client, NAME)
    small = make_data(500, seed=3)
    label = small["label"].to_numpy()
    log_evidence_run(uri, Comparison(NAME, v1, None, Scored(label, label * 0 + 0.9)), small)
    GatekeeperClient(uri).promote(NAME, v1)
    v2 = register_version(client, NAME)
    data, strong, weak = evaluation(rows)
    log_evidence_run(uri, Comparison(NAME, v2, v1, strong, weak), data)


def judge(_: str) -> None:
    """The first judgement of v2 in this fresh process; prints its figures as JSON."""
    from gatekeeper_cli.client import GatekeeperClient

    gate = GatekeeperClient(os.environ["MLFLOW_TRACKING_URI"])
    gate.policy(NAME)  # opens the gated store: imports, database, policy
    opened = status_kib(os.getpid())["VmRSS"] / 1024
    start = time.perf_counter()
    found = gate.explain(NAME, "2")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss_opened_mb": opened, "peak_mb": own_peak_rss_mb(),
                      "verdict": found["verdict"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,3000000,10000000")
    parser.add_argument("--judge", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.judge:
        judge(args.judge)
        return
    result_file = ResultFile("big_evidence", packages=("mlflow", "pyarrow", "numpy"))
    from benchmarks.evidence import GATE_POLICY

    found = []
    for rows in [int(r) for r in args.rows.split(",")]:
        workdir = Path(tempfile.mkdtemp(prefix="bench_big_evidence_"))
        (workdir / "policy.yaml").write_text(GATE_POLICY)
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{workdir}/mlflow.db", DO_NOT_TRACK="true",
                   GATEKEEPER_POLICY=str(workdir / "policy.yaml"), MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
        log(f"{rows:,} rows: logging the evidence")
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                        f"from benchmarks.bench_big_evidence import prepare; prepare({rows})"],
                       env=env, cwd=workdir, check=True, capture_output=True)
        outcomes = max(workdir.rglob("outcomes.arrow"), key=lambda path: path.stat().st_size)
        done = subprocess.run([sys.executable, __file__, "--judge", "x"], env=env, cwd=workdir, check=True,
                              capture_output=True, text=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        figures |= {"rows": rows, "outcomes_bytes": outcomes.stat().st_size,
                    "bytes_per_row": (figures["peak_mb"] - figures["rss_opened_mb"]) * 2**20 / rows}
        log(json.dumps(figures))
        found.append(figures)
    result_file.write({"sizes": found})


if __name__ == "__main__":
    main()
