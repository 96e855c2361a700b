"""Drift verdict vs evidently's full DataDriftPreset: time and peak memory at 10k, 100k and 1M rows x 20 columns.

    .venv/bin/python benchmarks/bench_drift.py                      # everything (the 1M full preset: ~2 min)
    .venv/bin/python benchmarks/bench_drift.py --skip-full-above 100000

Each case runs in a fresh subprocess that loads the two Parquet tables as the CLI does
(``projects.drift.tracking.load_window``: ``projects.datasets.load_table``, then pyarrow's cache freed) and
imports what it needs, then computes. Seconds are the computation only; peak RSS (the child's own ``VmHWM``) is
the whole process: interpreter, imports, both tables and the computation. "loaded" is the peak before
computing, i.e. what reading the tables and importing cost by themselves. Engines:

* ``verdict``  -- ``projects.drift.verdict.compute_verdict`` on every row (the evidence);
* ``report``   -- the same plus the evidently HTML report on the default sample (what the CLI does before
  logging), and, for information, how many of evidently's sample verdicts agree with the full-data ones;
* ``full``     -- ``Report([DataDriftPreset()]).run(current, reference)`` on every row, verdicts included.

The data: 12 float columns (3 shifted), a wide and a narrow integer column (the narrow one shifted), three
5-level text columns (one shifted), a 1000-level text column, a boolean and a float column with 10% NaN;
the reference and current windows are drawn with seeds ``seed`` and ``seed + 1``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ResultFile, machine_lines, own_peak_rss_mb  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
PACKAGES = ("evidently", "pandas", "scipy", "pyarrow")


def make_table(n: int, seed: int, shifted: bool):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    cols = {}
    for i in range(12):
        shift = 0.3 if shifted and i < 3 else 0.0
        cols[f"num_{i:02d}"] = rng.normal(shift, 1.0 + i / 10, n)
    cols["int_wide"] = rng.integers(0, 1000, n)
    cols["int_few"] = rng.choice(5, n, p=[0.4, 0.15, 0.15, 0.15, 0.15] if shifted else [0.2] * 5)
    levels = np.array(["north", "south", "east", "west", "centre"], dtype=object)
    cols["cat_shift"] = levels[rng.choice(5, n, p=[0.4, 0.3, 0.1, 0.1, 0.1] if shifted else [0.2] * 5)]
    cols["cat_a"] = levels[rng.integers(0, 5, n)]
    cols["cat_b"] = levels[rng.integers(0, 5, n)]
    many = np.array([f"sku-{j:04d}" for j in range(1000)], dtype=object)
    cols["cat_1000"] = many[rng.integers(0, 1000, n)]
    cols["flag"] = rng.random(n) < 0.3
    cols["num_nan"] = np.where(rng.random(n) < 0.1, np.nan, rng.normal(0.0, 1.0, n))
    return pd.DataFrame(cols)


def child(engine: str, reference_path: str, current_path: str) -> None:
    """One measured case; prints one JSON line."""
    os.environ.setdefault("DO_NOT_TRACK", "true")
    sys.path.insert(0, str(REPO))
    from projects.drift.tracking import load_window  # the CLI's loader: load_table, then free pyarrow's cache

    reference, current = load_window(reference_path, "reference"), load_window(current_path, "current")
    # imports are not timed (evidently's alone takes seconds); their memory is part of the peak
    from projects.drift.verdict import compute_verdict

    if engine == "report":
        from projects.drift.report import DEFAULT_SAMPLE_SIZE, build_report, sample_table
    if engine in ("report", "full"):
        import evidently.presets  # noqa: F401

    loaded_mb = own_peak_rss_mb()
    out: dict = {"engine": engine}
    started = time.perf_counter()
    if engine in ("verdict", "report"):
        verdict = compute_verdict(reference, current)
        out["verdict_seconds"] = time.perf_counter() - started
        out["drifted"] = {c.column: c.drifted for c in verdict.columns}
        if engine == "report":
            html = build_report(reference, current, verdict).html
            out["html_mb"] = len(html.encode()) / 2**20
            out["seconds"] = time.perf_counter() - started
            out["peak_mb"] = own_peak_rss_mb()
            # not timed: does evidently's own default preset on the sample reach the same verdicts?
            sample = _evidently_drifted(sample_table(reference, DEFAULT_SAMPLE_SIZE), sample_table(current, DEFAULT_SAMPLE_SIZE))
            out["sample_agrees"] = sum(sample.get(k) == v for k, v in out["drifted"].items())
    else:
        out["drifted"] = _evidently_drifted(reference, current)
    out.setdefault("seconds", time.perf_counter() - started)
    out.setdefault("peak_mb", own_peak_rss_mb())
    out["loaded_mb"] = loaded_mb
    print(json.dumps(out))


def _evidently_drifted(reference, current) -> dict[str, bool]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    result = Report([DataDriftPreset()], include_tests=True).run(current, reference).dict()
    return {
        t["metric_config"]["params"]["column"]: t["status"] == "FAIL" for t in result["tests"] if t["id"] == "drift"
    }


def measure(engine: str, reference: Path, current: Path, script: str = __file__) -> dict:
    """One case of ``script``'s ``child`` in a fresh subprocess: its last line, parsed."""
    proc = subprocess.run(
        [sys.executable, script, "--child", engine, str(reference), str(current)],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "DO_NOT_TRACK": "true"},
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{engine} on {reference} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def size_parser(doc: str, sizes: tuple[int, ...]) -> argparse.ArgumentParser:
    """The drift benchmarks' shared options: table sizes, the data's seed, the hidden child mode."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, sizes)), help="rows per table, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=3, metavar=("ENGINE", "REFERENCE", "CURRENT"), help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = size_parser(__doc__, SIZES)
    parser.add_argument("--skip-full-above", type=int, default=None, metavar="N",
                        help="do not run evidently's full preset on more than N rows (default: run it everywhere)")  # fmt: skip
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    result = ResultFile("drift", PACKAGES)
    print(machine_lines(PACKAGES)[0])
    rows = [(n, measure_size(n, args.seed, args.skip_full_above)) for n in (int(s) for s in args.sizes.split(","))]
    print_table(rows)
    result.write({"columns": 20, "seed": args.seed, "sizes": [size_figures(n, results) for n, results in rows]})


def measure_size(n: int, seed: int, skip_full_above: int | None) -> dict[str, dict]:
    """Every engine on one pair of freshly written ``n``-row tables."""
    workdir = Path(tempfile.mkdtemp(prefix="bench_drift_"))
    try:
        t0 = time.perf_counter()
        reference, current = workdir / f"reference_{n}.parquet", workdir / f"current_{n}.parquet"
        make_table(n, seed, shifted=False).to_parquet(reference, index=False)
        make_table(n, seed + 1, shifted=True).to_parquet(current, index=False)
        gc.collect()
        print(f"[{n:>9,} rows] data written in {time.perf_counter() - t0:.1f} s", flush=True)
        results = {engine: measure(engine, reference, current) for engine in ("verdict", "report")}
        if skip_full_above is None or n <= skip_full_above:
            t0 = time.perf_counter()
            results["full"] = measure("full", reference, current)
            print(f"[{n:>9,} rows] evidently full preset done in {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"[{n:>9,} rows] done", flush=True)
    return results


def size_figures(n: int, results: dict[str, dict]) -> dict:
    """One size's record: every engine's figures, and how many of its verdicts the full preset shares."""
    full = results.get("full")
    engines = {}
    for engine, r in results.items():
        engines[engine] = {k: v for k, v in r.items() if k not in ("engine", "drifted")} | {"columns": len(r["drifted"])}
        if full is not None and engine != "full":
            engines[engine]["same_verdicts_as_full"] = sum(full["drifted"].get(k) == v for k, v in r["drifted"].items())
    return {"rows": n, "engines": engines}


def print_table(rows: list[tuple[int, dict[str, dict]]]) -> None:
    print()
    print("rows x 20 columns | engine                     | seconds | peak RSS MB | loaded MB | verdicts = full preset")
    print("------------------+----------------------------+---------+-------------+-----------+-----------------------")
    # seconds: compute only (tables loaded, modules imported); peak RSS: the whole process; loaded: RSS
    # with both tables in memory and the modules imported, before computing
    labels = {"verdict": "fast verdict (full data)", "report": "verdict + HTML on sample", "full": "evidently DataDriftPreset"}
    for n, results in rows:
        full = results.get("full")
        for engine, r in results.items():
            same = "-"
            if full is not None and engine != "full":
                same = f"{sum(full['drifted'].get(k) == v for k, v in r['drifted'].items())}/{len(r['drifted'])}"
            print(f"{n:>17,} | {labels[engine]:<26} | {r['seconds']:7.2f} | {r['peak_mb']:11.0f} | {r['loaded_mb']:9.0f} | {same}")
        if full is not None:
            fast = results["verdict"]
            print(f"{'':>17} | {'ratio full / fast verdict':<26} | {full['seconds'] / fast['seconds']:6.0f}x | "
                  f"{full['peak_mb'] / fast['peak_mb']:10.1f}x | {'':9} |")  # fmt: skip
        report = results["report"]
        print(f"{'':>17} | (report: HTML {report['html_mb']:.1f} MB; evidently's own verdicts on the sample agree "
              f"on {report['sample_agrees']}/{len(report['drifted'])} columns)")  # fmt: skip

if __name__ == "__main__":
    main()
