"""``evaluate`` on the Spark engine (local mode) against the local engine: time, driver memory, crossover.

    .venv/bin/python benchmarks/bench_spark_evaluate.py                    # 1M and 10M rows (README figures)
    .venv/bin/python benchmarks/bench_spark_evaluate.py --rows 200000      # a smoke run

The tests' tabular task (``benchmarks/evidence.py``: six features, a ``weather`` slice, string row
ids), scikit-learn logistic regressions: v1 (two features) promoted through the gate on 2,000 rows,
v2 (all six) evaluated against it on each table, once per engine, each run in a fresh subprocess
against one embedded SQLite tracking store with a gated registry. Tables are Parquet, written in
1M-row groups (Spark reads one partition per row group or 128 MB split).

Per run: wall time of the ``evaluate`` call (Spark: session start included), the driver's own peak
RSS (the Python process that calls ``evaluate``) until the evidence is logged (sampled every 50 ms),
and with the gate's preview (``VmHWM``; the tracking URI is the database here, so the gate judges the
10M-row evidence inside this process, as a server worker would), and for Spark the peak of the JVM
(which in local mode is also the executors) plus the peak sum of the Python workers' RSS, sampled
every 0.2 s. Checked, not only timed: both engines must log the same content hash, the same
outcomes digest and get the same verdict; a disagreement is printed and recorded.

No assertions: figures go to ``benchmarks/results/spark_evaluate.json`` and the README table.
"""

from __future__ import annotations

import argparse
import io
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

from benchmarks._common import Descendants, Poller, ResultFile, log, markdown_table, own_peak_rss_mb, status_kib  # noqa: E402

NAME = "spark-bench"
GROUP = 1_000_000


class _OwnRss(Poller):
    """This process's RSS every 50 ms, with the peak so far noted at named moments: the driver's
    own work apart from the gate's preview, which here judges the evidence in this process."""

    def __init__(self):
        super().__init__(0.05)
        self.peak, self.marks = 0.0, {}

    def sample(self) -> None:
        self.peak = max(self.peak, status_kib(os.getpid())["VmRSS"] / 1024)

    def mark(self, moment: str) -> None:
        self.sample()
        self.marks[moment] = self.peak


def child(spec: str) -> None:
    """One evaluation in this fresh process; prints its figures as JSON."""
    job = json.loads(spec)
    import mlflow

    from projects.evaluate import evaluate
    from registry_hooks.contract import EVIDENCE_MANIFEST_PATH

    import projects.evaluate.core as core

    before = own_peak_rss_mb()
    own = _OwnRss()
    judge_here = core._preview  # the tracking URI is the database: the gate judges in this process

    def preview(*args, **kwargs):
        own.mark("until the evidence is logged")
        return judge_here(*args, **kwargs)

    core._preview = preview
    with Descendants() as descendants, own:
        start = time.perf_counter()
        result = evaluate(job["model"], job["data"], "label", ["weather"], engine=job["engine"], out=io.StringIO())
        seconds = time.perf_counter() - start
    manifest = mlflow.artifacts.load_dict(f"{mlflow.get_run(result.run_id).info.artifact_uri}/{EVIDENCE_MANIFEST_PATH}")
    print(json.dumps({"seconds": seconds, "driver_before_mb": before, "driver_peak_mb": own_peak_rss_mb(),
                      "driver_peak_until_logged_mb": own.marks["until the evidence is logged"],
                      "jvm_peak_mb": descendants.jvm_mb, "workers_peak_mb": descendants.workers_mb,
                      "n_rows": result.n_rows, "content_hash": result.data_hash,
                      "outcomes_sha256": manifest["outcomes"]["sha256"], "verdict": result.preview.get("verdict")}))


def write_table(path: Path, rows: int) -> None:
    """``rows`` of the tabular task in 1M-row groups, written group by group (unique row ids)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.evidence import make_data

    writer = None
    for offset in range(0, rows, GROUP):
        frame = make_data(min(GROUP, rows - offset), seed=100 + offset // GROUP)
        frame["row_id"] = [f"r{offset + i}" for i in range(len(frame))]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def setup(workdir: Path) -> str:
    """v1 promoted through the gate, v2 registered: returns v2's model URI."""
    import mlflow
    from mlflow.models import infer_signature

    from benchmarks.evidence import make_data, models
    from gatekeeper_cli.client import GatekeeperClient
    from projects.evaluate import evaluate

    small = workdir / "small.parquet"
    make_data(2000, seed=3).to_parquet(small)
    versions = []
    for kind in ("weak", "strong"):
        model, columns = models()[kind]
        sample = make_data(50, seed=5)[columns]
        with mlflow.start_run(run_name=f"train {kind}"):
            info = mlflow.sklearn.log_model(model, name="model", pyfunc_predict_fn="predict_proba",
                                            pip_requirements=["scikit-learn", "pandas", "numpy"],
                                            signature=infer_signature(sample, model.predict_proba(sample)))
        versions.append(str(mlflow.register_model(info.model_uri, NAME).version))
    evaluate(f"models:/{NAME}/{versions[0]}", str(small), "label", ["weather"], out=io.StringIO())
    GatekeeperClient(mlflow.get_tracking_uri()).promote(NAME, versions[0])
    return f"models:/{NAME}/{versions[1]}"


def run_child(model: str, data: Path, engine: str) -> dict:
    spec = json.dumps({"model": model, "data": str(data), "engine": engine})
    done = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} on {data.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated table sizes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    sizes = [int(s) for s in args.rows.split(",")]
    result_file = ResultFile("spark_evaluate", packages=("mlflow", "pyspark", "pyarrow", "scikit-learn"))
    workdir = Path(tempfile.mkdtemp(prefix="bench_spark_"))
    from benchmarks.evidence import GATE_POLICY

    (workdir / "policy.yaml").write_text(GATE_POLICY)
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{workdir}/mlflow.db", GATEKEEPER_POLICY=str(workdir / "policy.yaml"),
                      DO_NOT_TRACK="true", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    os.chdir(workdir)
    model = setup(workdir)
    rows = []
    for size in sizes:
        data = workdir / f"eval-{size}.parquet"
        log(f"writing {size:,} rows")
        write_table(data, size)
        found = {}
        for engine in ("local", "spark"):
            log(f"{engine} engine on {size:,} rows")
            found[engine] = run_child(model, data, engine)
            log(json.dumps(found[engine]))
        same = all(found["local"][k] == found["spark"][k] for k in ("content_hash", "outcomes_sha256", "verdict"))
        rows.append({"rows": size, "same_evidence": same, "bytes": data.stat().st_size, **found})
        data.unlink()
    table = markdown_table(
        ["rows", "local s", "spark s", "spark / local", "driver peak local", "driver peak spark", "JVM peak",
         "Python workers peak", "same hash, outcomes, verdict"],
        [[f"{r['rows']:,}", f"{r['local']['seconds']:.0f}", f"{r['spark']['seconds']:.0f}",
          f"{r['spark']['seconds'] / r['local']['seconds']:.2f}", f"{r['local']['driver_peak_mb']:,.0f} MB",
          f"{r['spark']['driver_peak_mb']:,.0f} MB", f"{r['spark']['jvm_peak_mb']:,.0f} MB",
          f"{r['spark']['workers_peak_mb']:,.0f} MB", "yes" if r["same_evidence"] else "NO"] for r in rows])
    print(table)
    result_file.write({"rows": rows, "table": table})


if __name__ == "__main__":
    main()
