"""Drift at any size: the streaming engine against the in-memory one, 1M and 10M rows x 20 columns.

    .venv/bin/python benchmarks/bench_drift_stream.py                     # 1M both engines, 10M streamed (~5 min)
    .venv/bin/python benchmarks/bench_drift_stream.py --memory-up-to 10000000   # also 10M in memory (~8 GB)

The tables are ``bench_drift.make_table``'s (12 float columns, 3 shifted; a wide and a narrow integer
column; 5-level and 1000-level text; a boolean; a float column with 10 % NaN), written to Parquet in
1M-row slices drawn with their own seeds, so 10M rows never sit in memory while being written. Each
case runs in a fresh subprocess and does what the CLI does before logging:

* ``memory`` -- ``load_window`` both tables, ``compute_verdict`` on every row, the HTML report on a sample;
* ``stream`` -- ``stream_verdict`` (reads each table once in 65,536-row batches: content hash, sketches,
  sample), then the HTML report on that sample.

Seconds are the whole case, reading included; peak RSS is the child's own ``VmHWM`` (interpreter,
imports, evidently's report included). Where both engines ran, every column's method, verdict and
score are compared: scores from exact counts must agree to rounding, estimated Wasserstein scores
within the bound their note states (the figure kept is the largest error and the largest bound).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ResultFile, machine_lines, own_peak_rss_mb  # noqa: E402
from bench_drift import make_table, measure, size_parser  # noqa: E402

SIZES = (1_000_000, 10_000_000)
SLICE_ROWS = 1_000_000
PACKAGES = ("evidently", "pandas", "scipy", "pyarrow")
BOUND = re.compile(r"score within ([0-9.e+-]+) of the exact value")


def write_table(path: Path, n: int, seed: int, shifted: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, pa.Schema.from_pandas(make_table(10, seed, shifted), preserve_index=False)) as writer:
        for k, start in enumerate(range(0, n, SLICE_ROWS)):
            part = make_table(min(SLICE_ROWS, n - start), seed * 1000 + k, shifted)
            writer.write_table(pa.Table.from_pandas(part, preserve_index=False), row_group_size=SLICE_ROWS)


def child(engine: str, reference: str, current: str) -> None:
    """One measured case; prints one JSON line."""
    os.environ.setdefault("DO_NOT_TRACK", "true")
    sys.path.insert(0, str(REPO))
    from projects.drift.report import build_report
    from projects.drift.stream import stream_verdict
    from projects.drift.tracking import load_window
    from projects.drift.verdict import compute_verdict

    import evidently.presets  # noqa: F401  (imports are not timed; their memory is part of the peak)

    started = time.perf_counter()
    if engine == "memory":
        ref, cur = load_window(reference, "reference"), load_window(current, "current")
        verdict = compute_verdict(ref, cur)
        build_report(ref, cur, verdict)
    else:
        streamed = stream_verdict(reference, current)
        verdict = streamed.verdict
        build_report(streamed.reference.sample, streamed.current.sample, verdict,
                     rows=(streamed.reference.n_rows, streamed.current.n_rows))
    seconds = time.perf_counter() - started
    columns = {c.column: {"method": c.method, "score": c.score, "drifted": c.drifted, "note": c.note}
               for c in verdict.columns}
    print(json.dumps({"seconds": seconds, "peak_mb": own_peak_rss_mb(), "columns": columns}))


def agreement(memory: dict, streamed: dict) -> dict:
    """How the streamed verdicts compare with the in-memory ones, column by column."""
    same = exact_gap = estimate_gap = largest_bound = 0.0
    disagreements = []
    for name, want in memory["columns"].items():
        have = streamed["columns"][name]
        if (have["method"], have["drifted"]) == (want["method"], want["drifted"]):
            same += 1
        else:
            disagreements.append(name)
        if want["score"] is None:
            continue
        gap = abs(have["score"] - want["score"])
        bound = BOUND.search(have["note"] or "")
        if bound:
            estimate_gap, largest_bound = max(estimate_gap, gap), max(largest_bound, float(bound.group(1)))
        else:
            exact_gap = max(exact_gap, gap)
    return {"same_verdicts": int(same), "columns": len(memory["columns"]), "disagreements": disagreements,
            "largest_exact_gap": exact_gap, "largest_estimate_gap": estimate_gap, "largest_bound": largest_bound}


def main() -> None:
    parser = size_parser(__doc__, SIZES)
    parser.add_argument("--memory-up-to", type=int, default=1_000_000, metavar="N",
                        help="run the in-memory engine up to N rows (default 1,000,000)")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    result = ResultFile("drift_stream", PACKAGES)
    print(machine_lines(PACKAGES)[0])
    sizes = []
    for n in (int(s) for s in args.sizes.split(",")):
        workdir = Path(tempfile.mkdtemp(prefix="bench_drift_stream_"))
        try:
            t0 = time.perf_counter()
            reference, current = workdir / "reference.parquet", workdir / "current.parquet"
            write_table(reference, n, args.seed, shifted=False)
            write_table(current, n, args.seed + 1, shifted=True)
            print(f"[{n:>10,} rows] written in {time.perf_counter() - t0:.0f} s", flush=True)
            engines = {"stream": measure("stream", reference, current, __file__)}
            if n <= args.memory_up_to:
                engines["memory"] = measure("memory", reference, current, __file__)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        record = {"rows": n, **{e: {k: v for k, v in r.items() if k != "columns"} for e, r in engines.items()},
                  "drifted": sorted(k for k, c in engines["stream"]["columns"].items() if c["drifted"])}
        if "memory" in engines:
            record["agreement"] = agreement(engines["memory"], engines["stream"])
        print(json.dumps(record), flush=True)
        sizes.append(record)
    result.write({"columns": 20, "seed": args.seed, "sizes": sizes})


if __name__ == "__main__":
    main()
