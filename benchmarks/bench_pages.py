"""Render time of the ``/gatekeeper/`` pages for a model with 1,000 decisions (issue 12: < 300 ms).

One real ``mlflow server --app-name gatekeeper --workers 1`` (uvicorn) on a SQLite store, on
127.0.0.1. Model ``bench-pages`` gets three real decisions through the gate (a first release and a
promotion on real evidence, a refusal of a worse version); its audit log is then filled up to
``--decisions`` rows by appending copies of those three decisions (same checks, numbers, reasons and
evidence runs, so every row renders like a real one) through the public
``registry_hooks.audit.log.append``, against the server's database and with the server's secret:
the hash chain stays valid (``gatekeeper audit verify`` passes, which the script checks). Real
promotions would cost about a second each here and give the page nothing else to read.

Timed, ``--requests`` times each in rotating order after a warm-up, over one keep-alive HTTP
connection: the overview (``/gatekeeper/``), the model page (first page: the 100 newest
decisions), the model page's oldest page (a ``before`` cursor, to show that depth costs nothing),
a decision page (the promotion, with its charts), and, as the reference on the same server,
MLflow's own ``GET /api/2.0/mlflow/registered-models/get``. A time is the client's wall time of the
request (server render plus a loopback round trip, well under a millisecond). The machine is
shared: read the ratios to the reference more than the milliseconds.

No assertions: it prints the figures and writes them to ``benchmarks/results/pages.json``.

    .venv/bin/python benchmarks/bench_pages.py [--decisions 1000] [--requests 50]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
from registry_hooks.contract import API_PREFIX, POLICY_ENV  # noqa: E402

os.environ["DO_NOT_TRACK"] = "true"
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
for _var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", POLICY_ENV):
    os.environ.pop(_var, None)

import requests  # noqa: E402

from _common import ResultFile, machine_lines, markdown_table, median, percentile  # noqa: E402
from benchmarks.evidence import GATE_POLICY, Scenario  # noqa: E402
from benchmarks.servers import MlflowServer  # noqa: E402
from plugins.pages import paths  # noqa: E402
from registry_hooks.audit import log as audit  # noqa: E402

MODEL = "bench-pages"
BUDGET_MS = 300.0
REFERENCE = "registered-models/get (MLflow)"


def real_decisions(url: str, name: str) -> list[dict]:
    """v1 first release, v2 promoted on evidence, v3 refused as worse: three decisions made by the gate."""
    from gatekeeper_cli.client import PromotionRefused

    scenario = Scenario(url, name)
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.evidence(v2, v1)
    scenario.gate.promote(name, v2)
    v3 = scenario.version()
    scenario.evidence(v3, v2, candidate_model="weak", baseline_model="strong")
    try:
        scenario.gate.promote(name, v3)
    except PromotionRefused:
        pass
    return scenario.gate.history(name)


def fill_audit_log(db_uri: str, templates: list[dict], n: int) -> list[int]:
    """Append ``n`` decisions, copies of ``templates`` in turn (the JSON API's records), to the log of
    the database at ``db_uri`` through ``audit.append``, in one transaction, with the server's secret
    (so the chain stays valid); returns their ids. Only for a server nobody else writes to meanwhile."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from registry_hooks.secret import server_secret

    kept = {f.name for f in fields(audit.DecisionRecord)} - {"id", "created_at", "prev_hash", "row_hash"}
    records = [audit.DecisionRecord(**{k: v for k, v in t.items() if k in kept}) for t in templates]
    engine = create_engine(db_uri)
    try:
        secret = server_secret(engine)
        with Session(engine) as session:
            ids = [audit.append(session, replace(records[i % len(records)]), secret).id for i in range(n)]
            session.commit()
    finally:
        engine.dispose()
    return ids


def oldest_cursor(session: requests.Session, url: str, name: str) -> int:
    """The ``before`` cursor of the model's oldest page, found by following the pages' own links."""
    cursor = None
    while True:
        html = session.get(f"{url}{paths.MODEL}", params={"name": name} | ({"before": cursor} if cursor else {}),
                           timeout=60).text
        older = re.search(r'href="/gatekeeper/model\?name=[^"&]+&amp;before=(\d+)"', html)
        if older is None:
            return cursor
        cursor = int(older.group(1))


def targets(name: str, decision_id: int, oldest: int | None) -> dict[str, tuple[str, dict]]:
    return {
        "overview": (paths.OVERVIEW, {}),
        "model page (newest 100)": (paths.MODEL, {"name": name}),
        "model page (oldest)": (paths.MODEL, {"name": name} | ({"before": oldest} if oldest else {})),
        "decision page": (paths.DECISION, {"id": decision_id}),
        REFERENCE: ("/api/2.0/mlflow/registered-models/get", {"name": name}),
    }


def measure(url: str, pages: dict[str, tuple[str, dict]], n: int, warmup: int = 3) -> dict[str, dict]:
    """``n`` timed GETs of every page, in rotating order, over one keep-alive connection."""
    times: dict[str, list[float]] = {label: [] for label in pages}
    sizes: dict[str, int] = {}
    labels = list(pages)
    with requests.Session() as session:
        for i in range(warmup + n):
            for label in labels[i % len(labels):] + labels[: i % len(labels)]:
                path, params = pages[label]
                started = time.perf_counter()
                response = session.get(f"{url}{path}", params=params, timeout=60)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{label}: HTTP {response.status_code}: {response.text[:500]}")
                sizes[label] = len(response.content)
                if i >= warmup:
                    times[label].append(elapsed)
    reference = median(times[REFERENCE])
    return {label: {"median_ms": round(median(t), 2), "p95_ms": round(percentile(t, 95), 2),
                    "ratio_to_reference": round(median(t) / reference, 2), "bytes": sizes[label], "n": len(t),
                    "within_budget": label == REFERENCE or percentile(t, 95) < BUDGET_MS}
            for label, t in times.items()}


def run(workdir: Path, decisions: int, n: int) -> tuple[list[dict], dict, float, dict[str, dict]]:
    """Start the server, make the model's decisions, time the pages; the server is stopped after."""
    policy = workdir / "policy.yaml"
    policy.write_text(GATE_POLICY)
    db_uri = f"sqlite:///{workdir}/mlflow.db"
    with MlflowServer(workdir, db_uri, policy=policy) as server:
        made = real_decisions(server.url, MODEL)
        started = time.perf_counter()
        fill_audit_log(db_uri, list(reversed(made)), decisions - len(made))
        fill_seconds = time.perf_counter() - started
        chain = requests.get(f"{server.url}{API_PREFIX}/audit/verify", params={"name": MODEL}, timeout=120).json()
        print(f"audit log: {chain['rows']} decisions ({len(made)} real, the rest appended in {fill_seconds:.1f} s); "
              f"chain intact: {chain['ok']}")
        promoted = next(d["id"] for d in made if d["action"] == "promote" and d["baseline_version"])
        with requests.Session() as session:
            oldest = oldest_cursor(session, server.url, MODEL)
        return made, chain, fill_seconds, measure(server.url, targets(MODEL, promoted, oldest), n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1000, help="decisions in the model's audit log")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page")
    args = parser.parse_args()
    result = ResultFile("pages", ("jinja2", "flask", "sqlalchemy"))
    print("\n".join(machine_lines(("mlflow", "jinja2", "sqlalchemy"))))
    workdir = Path(tempfile.mkdtemp(prefix="bench_pages_"))
    try:
        made, chain, fill_seconds, figures = run(workdir, args.decisions, args.requests)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(markdown_table(["page", "median ms", "p95 ms", "x reference", "KiB", f"p95 < {BUDGET_MS:g} ms"],
                         [[label, f"{f['median_ms']:.1f}", f"{f['p95_ms']:.1f}", f"{f['ratio_to_reference']:.1f}",
                           f"{f['bytes'] / 1024:.0f}", "-" if label == REFERENCE else str(f["within_budget"])]
                          for label, f in figures.items()]))
    result.write({"decisions": chain["rows"], "real_decisions": len(made), "chain_ok": chain["ok"],
                  "fill_seconds": round(fill_seconds, 2), "requests": args.requests, "budget_ms": BUDGET_MS,
                  "server": "mlflow server --app-name gatekeeper --workers 1 (uvicorn), SQLite",
                  "pages": figures})


if __name__ == "__main__":
    main()
