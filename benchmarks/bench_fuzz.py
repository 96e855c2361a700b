"""Malformed input at scale: the fuzz test's generator with 5,000 requests, gated vs plain MLflow.

For each backend (SQLite, and PostgreSQL when it answers on 127.0.0.1:5432) a gated and a plain
server are started side by side on 127.0.0.1, both holding the same model in production (the
gated one through the gate with real evidence), and every request goes to both
(``benchmarks/fuzz_requests.py``). Printed and written to ``benchmarks/results/fuzz.json``: the
status histograms of both servers, the 5xx the plugin caused (a 5xx plain MLflow does not also
give; on the gate's own routes any 5xx or non-JSON error), the 5xx both give (MLflow's own), and
whether production stayed where it was with no approving decision added.

    .venv/bin/python benchmarks/bench_fuzz.py [--requests 5000] [--seed 8] [--sqlite-only]

Exit status 1 when the plugin caused a 5xx or production moved.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ itself is on the path: it is the script's folder
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # the servers and clients get explicit URLs

from contextlib import ExitStack  # noqa: E402

from _common import ResultFile, machine_lines  # noqa: E402
from benchmarks.evidence import GATE_POLICY  # noqa: E402
from benchmarks.fuzz_pair import fuzz_pair  # noqa: E402
from benchmarks.fuzz_requests import DEFAULT_SEED, generate, histogram_lines, run  # noqa: E402
from benchmarks.servers import postgres_database, postgres_problem  # noqa: E402

PACKAGES = ("werkzeug", "uvicorn", "psycopg2-binary")
TIME_BUDGET_S = 900


def run_backend(backend: str, workdir: Path, requests_n: int, seed: int) -> dict:
    """One side-by-side fuzz run on ``backend``; the report plus what happened to production."""
    policy = workdir / "policy.yaml"
    policy.write_text(GATE_POLICY)
    with ExitStack() as stack:
        if backend == "sqlite":
            uris = [f"sqlite:///{workdir}/{side}.db" for side in ("gated", "plain")]
        else:
            uris = [stack.enter_context(postgres_database()) for _ in range(2)]
        pair = stack.enter_context(fuzz_pair(workdir, *uris, policy))
        approved_before = pair.approved_decisions()
        report = run(pair.gated.url, pair.plain.url, generate(seed, requests_n, pair.target), time_budget_s=TIME_BUDGET_S)
        production = pair.scenario.production()
        added = len(pair.approved_decisions()) - len(approved_before)
    print(f"{backend}: {report.requests} requests in {report.seconds:.1f} s", *histogram_lines(report), sep="\n  ")
    print(f"  plugin-caused 5xx / non-JSON errors: {len(report.plugin_caused)}; 5xx on both servers (MLflow's own): "
          f"{sum(report.mlflow_own_5xx.values())}; production {production}, approving decisions added: {added}")
    for line in report.plugin_caused[:10]:
        print("  !", line[:400])
    return report.to_dict() | {"production_after": list(production), "production_unchanged": production == (pair.target.production, [pair.target.production]),
                               "approving_decisions_added": added}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    record = ResultFile("fuzz", PACKAGES)
    for line in machine_lines(PACKAGES):
        print(line)
    backends = ["sqlite"]
    problem = postgres_problem()
    if not args.sqlite_only and problem is None:
        backends.append("postgres")
    elif not args.sqlite_only:
        print(f"postgres skipped: {problem}")
    results = {}
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=f"bench-fuzz-{backend}-") as tmp:
            results[backend] = run_backend(backend, Path(tmp), args.requests, args.seed)
    record.write({"requests": args.requests, "seed": args.seed, "backends": results})
    failed = [b for b, r in results.items()
              if r["plugin_caused_5xx_or_bad_errors"] or not r["production_unchanged"] or r["approving_decisions_added"]]
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
