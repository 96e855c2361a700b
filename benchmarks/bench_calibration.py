"""Calibration of the gate's decisions: how often it promotes what it must not, and finds what it should.

Simulated paired evaluations (``benchmarks/simulate.py``) go through the gate's public evidence
path — ``outcomes_table`` bytes and a manifest, ``parse_manifest`` / ``parse_outcomes``,
``decide`` under a policy from ``Policy.from_dict`` — so each figure is the rate of a verdict a
user would get. Per metric family, world and n:

* level: the false-promotion rate at the null boundary (equal models; with a margin, a candidate
  better by exactly the margin), against the nominal 1 - confidence;
* guard: the rate at which a secondary check of the same metric (tolerance = margin) says
  "regressed" when the candidate is worse by exactly the tolerance (equal models for margin 0);
* power: the promotion rate when the candidate removes a stated share of the baseline's errors.

And per slice case and slice rule: the share refused by a failing slice check, and the verdicts.
Every rate comes with its Monte-Carlo standard error; a level or guard rate more than 2 standard
errors (of a rate exactly at nominal) above nominal is marked ▲. Seeds are fixed: a rerun, with
any number of processes, gives the same figures.

    .venv/bin/python benchmarks/bench_calibration.py [--reps 500] [--quick] [--processes N]
    .venv/bin/python benchmarks/bench_calibration.py --confirm 2000   # the ▲ cells, on fresh replicates
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread per worker process: the processes are the parallelism

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from _common import machine_lines, markdown_table  # noqa: E402

from benchmarks import simulate as sim  # noqa: E402

SIZES = (30, 100, 1000)
CHUNK = 25  # replicates per task: small enough to balance the processes, large enough to amortise
EFFECT_ROWS = 400_000  # rows of the one large draw that states each power run's true effect


# ------------------------------------------------------------------------------- running


def blocks(reps: range) -> list[range]:
    return [range(start, min(start + CHUNK, reps.stop)) for start in range(reps.start, reps.stop, CHUNK)]


def tasks(reps: int, modes: tuple[str, ...]) -> list[tuple]:
    """Every (what, arguments, replicates) unit of work, the most expensive (n = 1000) first."""
    work = [("families", (world, n, kind, None), block)
            for n in sorted(SIZES, reverse=True) for world in sim.WORLDS for kind in sim.KINDS
            for block in blocks(range(reps))]
    work += [("slices", (case, mode), block) for case in sim.SLICE_CASES for mode in modes for block in blocks(range(reps))]
    return work


def run_task(task: tuple) -> tuple[tuple, object, float]:
    """One unit of work in a worker process, with the CPU seconds it took."""
    what, args, block = task
    start = time.process_time()
    if what == "families":
        world, n, kind, families = args
        result = sim.run_families(world, n, kind, block, families)
    else:
        result = sim.run_slices(*args, block)
    return (what, *args[:3]), result, time.process_time() - start


def merge(into: dict, key: tuple, result) -> None:
    """Add one task's counts (a Counter, or a Counter per family) into the totals."""
    if isinstance(result, Counter):
        into.setdefault(key, Counter()).update(result)
        return
    totals = into.setdefault(key, {})
    for family, counts in result.items():
        totals.setdefault(family, Counter()).update(counts)


def simulate_all(work: list[tuple], processes: int) -> tuple[dict, dict[str, float]]:
    """All counts, and the CPU seconds spent per kind of work."""
    totals: dict = {}
    cpu: Counter = Counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for done, (key, result, seconds) in enumerate(pool.imap_unordered(run_task, work), 1):
            merge(totals, key, result)
            cpu[key[0] if key[0] == "slices" else f"families n={key[2]}"] += seconds
            if done % 50 == 0 or done == len(work):
                print(f"  {done}/{len(work)} tasks", file=sys.stderr, flush=True)
    return totals, dict(cpu)


# ------------------------------------------------------------------------------- effects


def true_effect(world: str, family: sim.Family, n: int) -> float:
    """The improvement a power run simulates, on one large draw (positive: the candidate is better)."""
    from sklearn import metrics as skm

    draw = sim.WORLDS[world].draw(sim.seeded("effect", world, n), EFFECT_ROWS, error_cut=sim.power_cut(world, n))
    y = draw.label
    scores = {
        "accuracy": lambda m: skm.accuracy_score(y, m["prediction"]),
        "error_rate": lambda m: -1 + skm.accuracy_score(y, m["prediction"]),
        "log_loss": lambda m: float(np.mean(np.log(m["proba_label"]))),
        "f1": lambda m: skm.f1_score(y, m["prediction"], zero_division=0),
        "precision": lambda m: skm.precision_score(y, m["prediction"], zero_division=0),
        "recall": lambda m: skm.recall_score(y, m["prediction"], zero_division=0),
        "balanced_accuracy": lambda m: skm.balanced_accuracy_score(y, m["prediction"]),
        "roc_auc": lambda m: skm.roc_auc_score(y, m["score"]),
        "mae": lambda m: -skm.mean_absolute_error(y, m["prediction"]),
        "mse": lambda m: -skm.mean_squared_error(y, m["prediction"]),
        "rmse": lambda m: -np.sqrt(skm.mean_squared_error(y, m["prediction"])),
    }  # each oriented so that higher is better
    score = scores[family.metric]
    return float(score(draw.candidate) - score(draw.baseline))


# ------------------------------------------------------------------------------- results


def family_records(totals: dict, level: float) -> list[dict]:
    records = []
    for world in sim.WORLDS:
        for family in sim.families_of(world):
            for n in SIZES:
                null = totals[("families", world, n, "null")][family.name]
                power = totals[("families", world, n, "power")][family.name]
                record = {
                    "world": world, "family": family.name, "metric": family.metric, "margin": family.margin, "n": n,
                    "level": sim.rate(null, "promote"), "guard": sim.rate(null, "guard"),
                    "primary_refuse_worse_at_null": sim.rate(null, "primary_worse"),
                    "power": sim.rate(power, "promote") | {
                        "error_cut": sim.power_cut(world, n), "true_effect": true_effect(world, family, n),
                    },
                }
                record["above_nominal"] = {
                    what: record[what]["rate"] > level + 2 * sim.null_se(level, record[what]["reps"])
                    for what in ("level", "guard")
                }
                records.append(record)
    return records


def slice_records(totals: dict, modes: tuple[str, ...]) -> list[dict]:
    records = []
    for name, case in sim.SLICE_CASES.items():
        for mode in modes:
            counts = totals[("slices", name, mode)]
            records.append({
                "case": name, "mode": mode, "n": case.n, "segments": case.segments,
                "refusal_wanted": case.refusal_wanted, "refused_by_slices": sim.rate(counts, "by_slices"),
                "verdicts": {verdict: sim.rate(counts, verdict) for verdict in sim.VERDICTS},
            })
    return records


def _cell(figure: dict, flag: bool = False) -> str:
    return f"{figure['rate']:.3f} ± {figure['se']:.3f}{' ▲' if flag else ''}"


def _by_size(records: list[dict], cell) -> list[list[str]]:
    """One table row per (family, world), one column per n."""
    rows: dict[tuple, list[str]] = {}
    for r in records:
        rows.setdefault((r["family"], r["world"]), []).append(cell(r))
    return [[family, world, *cells] for (family, world), cells in rows.items()]


def markdown(records: list[dict], slices: list[dict], meta: dict) -> str:
    sizes = [f"n = {n}" for n in SIZES]
    level_rows = _by_size(records, lambda r: _cell(r["level"], r["above_nominal"]["level"]))
    guard_rows = _by_size(records, lambda r: _cell(r["guard"], r["above_nominal"]["guard"]))
    power_rows = _by_size(records, lambda r: f"{r['power']['rate']:.3f} ± {r['power']['se']:.3f} ({r['power']['true_effect']:+.4f})")
    slice_rows = [
        [s["case"], s["mode"], "yes" if s["refusal_wanted"] else "no", _cell(s["refused_by_slices"]),
         " / ".join(f"{s['verdicts'][v]['rate']:.3f}" for v in sim.VERDICTS)]
        for s in slices
    ]
    alpha = meta["nominal_level"]
    return "\n\n".join([
        f"Calibration of the gate ({meta['reps']} replicates per cell, nominal level {alpha:g}, "
        f"{meta['bootstrap_resamples']} bootstrap resamples, commit {meta['git_commit'][:12]}"
        f"{' + uncommitted registry_hooks changes' if meta['registry_hooks_changes'] else ''}; "
        f"`{meta['command']}`). Rates ± Monte-Carlo standard error; ▲: more than 2 standard errors above nominal.",
        "**False-promotion rate at the null boundary** (equal models; margin 0.01: candidate exactly 0.01 better)\n\n"
        + markdown_table(["family", "world", *sizes], level_rows),
        "**Regression guard** (secondary check, tolerance = margin, FAIL_WORSE rate when the candidate is worse by "
        "exactly the tolerance)\n\n" + markdown_table(["family", "world", *sizes], guard_rows),
        "**Power** (promotion rate; classifiers: candidate removes 60 / 40 / 25 % of the baseline's errors at "
        "n = 30 / 100 / 1000, regressors: error scale −30 / −20 / −10 %; in brackets the true improvement in the "
        "metric's units, higher = better)\n\n" + markdown_table(["family", "world", *sizes], power_rows),
        "**Slices** (primary accuracy, slice rule defaults: tolerance 0.02, min_size 30; baseline accuracy 0.8)\n\n"
        + markdown_table(["case", "slice rule", "refusal wanted", "refused by slices", "promote / worse / insufficient"],
                         slice_rows),
    ]) + "\n"


def source_facts() -> dict:
    """Which gate code was measured: the commit, uncommitted changes and a hash of the package."""
    import registry_hooks

    package = Path(registry_hooks.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(package.parent), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "git_commit": git("rev-parse", "HEAD") or "unknown",
        "registry_hooks_changes": git("status", "--porcelain", "--", "registry_hooks").splitlines(),
        "registry_hooks_path": str(package),
        "registry_hooks_sha256": digest.hexdigest(),
    }


def run_meta(processes: int, reps: int, wall: float, cpu: dict[str, float]) -> dict:
    """What a reader needs to trust or reproduce a run: when, how, on what, from which code."""
    defaults = sim.policy()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, *sys.argv]), "cwd": os.getcwd(),
        "machine": machine_lines(("numpy", "scipy", "pyarrow", "scikit-learn")),
        "processes": processes, "reps": reps, "seed": sim.SEED,
        "nominal_level": round(1 - defaults.confidence, 10),
        "bootstrap_resamples": defaults.evidence.bootstrap_resamples,
        "wall_seconds": round(wall, 1), "cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
        **source_facts(),
    }


def write(out: Path, payload: dict, table: str) -> None:
    """``out``.json (every figure), ``out``.md (the tables), and the tables on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(payload, indent=1))
    Path(f"{out}.md").write_text(table)
    meta = payload["meta"]
    print("\n".join(meta["machine"]))
    print(f"wall {meta['wall_seconds']:.0f} s with {meta['processes']} processes; CPU s by part: {meta['cpu_seconds']}\n")
    print(table)


def confirm(out: Path, extra: int, processes: int) -> None:
    """Rerun every ▲ cell of the finished run ``out`` on ``extra`` fresh replicates.

    With ~180 level and guard cells each flagged at 2 standard errors, about 4 flags are chance.
    Fresh replicates (numbered after the run's own, so independent of them) tell which are not,
    without the optimism of re-testing the very sample that raised the flag.
    """
    data = json.loads(Path(f"{out}.json").read_text())
    first, level = data["meta"]["reps"], data["meta"]["nominal_level"]
    flagged = [r for r in data["families"] if any(r["above_nominal"].values())]
    work = [("families", (r["world"], r["n"], "null", (r["family"],)), block)
            for r in flagged for block in blocks(range(first, first + extra))]
    start = time.perf_counter()
    totals, cpu = simulate_all(work, processes)
    meta = run_meta(processes, extra, time.perf_counter() - start, cpu) | {"first_rep": first, "of": f"{out}.json"}
    checked = []
    for r in flagged:
        counts = totals[("families", r["world"], r["n"], "null")][r["family"]]
        for what, event in (("level", "promote"), ("guard", "guard")):
            if r["above_nominal"][what]:
                fresh = sim.rate(counts, event)
                above = fresh["rate"] > level + 2 * sim.null_se(level, fresh["reps"])
                checked.append({key: r[key] for key in ("family", "world", "n")}
                               | {"figure": what, "first_run": r[what], "fresh": fresh, "above_nominal": above})
    rows = [[c["family"], c["world"], str(c["n"]), c["figure"], _cell(c["first_run"]), _cell(c["fresh"], c["above_nominal"])]
            for c in checked]
    table = (f"Cells marked ▲ in {out.name}.json, rerun on {extra} fresh replicates (numbers {first}-{first + extra - 1}); "
             f"▲: still more than 2 standard errors above {level:g}.\n\n"
             + markdown_table(["family", "world", "n", "figure", "first run", "fresh replicates"], rows) + "\n")
    write(Path(f"{out}-confirm"), {"meta": meta, "cells": checked}, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, help="replicates per cell (default 500; 100 with --quick)")
    parser.add_argument("--quick", action="store_true", help="100 replicates, written to calibration-quick.*")
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="worker processes (default: all cores)")
    parser.add_argument("--out", type=Path, help="output path without suffix (default benchmarks/results/calibration)")
    parser.add_argument("--confirm", type=int, metavar="REPS",
                        help="instead of a run: rerun the ▲ cells of OUT.json on REPS fresh replicates (OUT-confirm.*)")
    args = parser.parse_args()
    reps = args.reps or (100 if args.quick else 500)
    out = args.out or REPO / "benchmarks" / "results" / ("calibration-quick" if args.quick else "calibration")
    if args.confirm:
        confirm(out, args.confirm, args.processes)
        return
    modes = sim.slice_modes()
    start = time.perf_counter()
    totals, cpu = simulate_all(tasks(reps, modes), args.processes)
    meta = run_meta(args.processes, reps, time.perf_counter() - start, cpu) | {"slice_modes": list(modes)}
    records = family_records(totals, meta["nominal_level"])
    slices = slice_records(totals, modes)
    write(out, {"meta": meta, "families": records, "slices": slices}, markdown(records, slices, meta))


if __name__ == "__main__":
    main()
