"""The README's benchmark tables, generated from the result files in ``benchmarks/results/``.

Every benchmark writes its figures, with the machine, load, date, commit and command line, to
``benchmarks/results/<name>.json``; this script rebuilds each table between its marker comments
in README.md (``<!-- benchmarks:<table>:begin -->`` ... ``<!-- benchmarks:<table>:end -->``) from
those files, so a README figure is always the one a measurement wrote. A benchmark without a
result file shows "not measured in this revision" instead of a figure. The prose around the
tables is written by hand and refers to them.

    .venv/bin/python benchmarks/readme_tables.py           # rewrite README.md
    .venv/bin/python benchmarks/readme_tables.py --check   # exit 1 (and show the diff) when it differs

``tests/unit/test_readme_tables.py`` runs the check, so CI fails when a figure drifts from its file.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS = REPO / "benchmarks" / "results"
NOT_MEASURED = "not measured in this revision"
MARKERS = re.compile(r"(<!-- benchmarks:(?P<name>[a-z-]+):begin -->\n).*?(<!-- benchmarks:(?P=name):end -->)", re.S)


def load(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


# -- number formats ------------------------------------------------------------------------------


def secs(seconds: float) -> str:
    if seconds < 0.1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s" if seconds < 100 else f"{seconds:,.0f} s"


def mem(mb: float) -> str:
    return f"{mb:,.0f} MB" if mb < 1024 else f"{mb / 1024:.2f} GB"


def pct(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def thousands(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}"


def verdict(met: bool, target: str) -> str:
    return target if met else f"{target} (**not met**)"


def table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join("| " + " | ".join(row) + " |" for row in [header, ["---"] * len(header), *rows])


def provenance(records: dict[str, dict | None]) -> str:
    """One line per result file: when, on which code and machine, under which load it was measured."""
    lines = []
    for name, record in records.items():
        if record is None:
            lines.append(f"`{name}.json`: {NOT_MEASURED}")
            continue
        machine, git = record["machine"], record["git"]
        start, end = record["load_average_start"], record["load_average_end"]
        code_changes = [line for line in git["uncommitted"] if "benchmarks/results/" not in line]  # figures are not code
        changes = f" + {len(code_changes)} uncommitted" if code_changes else ""
        lines.append(f"`{name}.json`: {record['date'][:16].replace('T', ' ')} UTC, commit {git['commit'][:7]}{changes}, "
                     f"{machine['cpu_count']} × {machine['cpu_model']}, {machine['ram_gib']:.0f} GiB, "
                     f"load average {start[0]:.1f} → {end[0]:.1f}, {secs(record['wall_seconds'])}")
    return "Measured (file, date, code, machine, 1-minute load at start → end, duration): " + "; ".join(lines) + "."


class Rows:
    """Table rows of one result file: the command on its first row, "same" after it."""

    def __init__(self, record: dict | None, default_command: str):
        self.record, self.rows = record, []
        self.command = f"`{record['command'] if record else default_command}`"

    def add(self, what: str, figure: str, target: str = "") -> None:
        self.rows.append([what, figure if self.record else NOT_MEASURED, target, self.command if not self.rows else "same"])


# -- the performance table -----------------------------------------------------------------------


def budget(seconds: float) -> str:
    return f"< {seconds * 1000:.0f} ms" if seconds < 1 else f"< {seconds:g} s"


def statistics_rows(record: dict | None) -> list[list[str]]:
    """One row for the closed-form tests, one per method of the resampled metrics (with the naive
    row-by-row resampling beside it); the forced per-row bootstraps stay in the JSON."""
    rows = Rows(record, "python benchmarks/bench_statistics.py")
    if record is None:
        rows.add("statistics, 1M paired examples", NOT_MEASURED)
        return rows.rows
    figures = record["figures"]
    measured = [r for r in figures["rows"] if not r["resamples"].endswith("*")]
    groups: dict[str, list[dict]] = {}
    for row in measured:
        groups.setdefault("closed-form tests" if row["naive_seconds"] is None else row["method"], []).append(row)
    for name, group in groups.items():
        over = [r["label"] for r in group if r["seconds"] > r["budget_seconds"]]
        target = budget(group[0]["budget_seconds"]) + (f" (**not met**: {', '.join(over)})" if over else "")
        what = f"statistics, {thousands(figures['n'])} paired examples, {name}"
        if name == "closed-form tests":
            rows.add(what, " / ".join(f"{r['label']} ({r['method']}) {secs(r['seconds'])}" for r in group), target)
            continue
        ratios = sorted(r["naive_seconds"] / r["seconds"] for r in group)
        spread = f"{ratios[0]:,.0f}×" if len(ratios) == 1 else f"{ratios[0]:,.0f}–{ratios[-1]:,.0f}×"
        resampling = any(word in name for word in ("permutation", "bootstrap"))
        what += f", {figures['resamples']:,} resamples" if resampling else " (not resampled)"
        rows.add(what,
                 " / ".join(f"{r['label']} {secs(r['seconds'])}" for r in group)
                 + f" (naive: {figures['resamples']:,} row-by-row resamples with scikit-learn / numpy, {' / '.join(secs(r['naive_seconds']) for r in group)}; {spread} faster)",
                 target)
    return rows.rows


def drift_rows(record: dict | None) -> list[list[str]]:
    rows = Rows(record, "python benchmarks/bench_drift.py")
    if record is None:
        rows.add("drift verdict, 1M rows × 20 columns", NOT_MEASURED, "≤ 15 s, ≤ 1 GB")
        return rows.rows
    sizes = record["figures"]["sizes"]
    *smaller, largest = sizes
    fast, full = largest["engines"]["verdict"], largest["engines"].get("full")
    figure = f"{secs(fast['seconds'])}, {mem(fast['peak_mb'])} peak ({mem(fast['loaded_mb'])} with the tables loaded)"
    if full:
        figure += (f"; evidently `DataDriftPreset`: {secs(full['seconds'])}, {mem(full['peak_mb'])} "
                   f"({full['seconds'] / fast['seconds']:.0f}× / {full['peak_mb'] / fast['peak_mb']:.1f}×; "
                   f"same verdicts on {fast['same_verdicts_as_full']}/{fast['columns']} columns)")
    rows.add(f"drift verdict, {thousands(largest['rows'])} rows × {record['figures']['columns']} columns", figure,
             "≤ 15 s, ≤ 1 GB")
    if smaller:
        engines = lambda engine: " / ".join(secs(s["engines"][engine]["seconds"]) for s in smaller if engine in s["engines"])  # noqa: E731
        figure = f"{engines('verdict')} (evidently preset {engines('full') or 'not run'}); verdict + HTML report {engines('report')}"
        rows.add(f"drift verdict, {' / '.join(thousands(s['rows']) for s in smaller)} rows × {record['figures']['columns']}",
                 figure)
    return rows.rows


def drift_stream_rows(record: dict | None) -> list[list[str]]:
    """The streaming engine beside the in-memory one: each size's time and peak, and at the sizes
    where both ran, how many verdicts agree and how far the scores are apart."""
    rows = Rows(record, "python benchmarks/bench_drift_stream.py")
    if record is None:
        rows.add("drift verdict streamed, 10M rows × 20 columns", NOT_MEASURED, "≤ 1 GB")
        return rows.rows
    for size in record["figures"]["sizes"]:
        stream, memory = size["stream"], size.get("memory")
        figure = f"{secs(stream['seconds'])}, {mem(stream['peak_mb'])} peak"
        if memory:
            agree = size["agreement"]
            differ = f" (differ: {', '.join(agree['disagreements'])})" if agree["disagreements"] else ""
            figure += (f"; in memory {secs(memory['seconds'])}, {mem(memory['peak_mb'])} "
                       f"(streamed / in memory: {stream['seconds'] / memory['seconds']:.2f}× the time, "
                       f"{stream['peak_mb'] / memory['peak_mb']:.2f}× the peak); "
                       f"same verdicts on {agree['same_verdicts']}/{agree['columns']} columns{differ}, exact scores "
                       f"within {agree['largest_exact_gap']:.0e}, estimated ones within {agree['largest_estimate_gap']:.0e} "
                       f"(stated bound ≤ {agree['largest_bound']:.0e})")
        else:
            figure += f"; {len(size['drifted'])} drifted: {', '.join(size['drifted'])}"
        rows.add(f"drift verdict **streamed** + HTML report, {thousands(size['rows'])} rows × "
                 f"{record['figures']['columns']} columns (reading included)", figure,
                 verdict(stream["peak_mb"] <= 1024, "≤ 1 GB"))
    return rows.rows


def _phase_leaves(phases: dict[str, float]) -> list[tuple[str, float]]:
    """The innermost timed phases other than the models' predict, slowest first."""
    leaves = [(k, v) for k, v in phases.items()
              if not any(other.startswith(k + " > ") for other in phases) and not k.endswith("predict")]
    return sorted(((k.split(" > ")[-1], v) for k, v in leaves), key=lambda kv: -kv[1])


def evaluate_rows(record: dict | None) -> list[list[str]]:
    rows = Rows(record, "python benchmarks/bench_evaluate.py")
    if record is None:
        rows.add("`evaluate` overhead on the two models' own inference, 100k scenes, CNN", NOT_MEASURED, "< 10 %")
        rows.add("`evaluate` peak memory", NOT_MEASURED, "reported")
        return rows.rows
    figures = record["figures"]
    if not any("CNN" in case["kind"] for case in figures["overhead"]):
        rows.add("`evaluate` overhead on the two models' own inference, scenes, CNN", NOT_MEASURED, "< 10 %")
    for case in figures["overhead"]:
        inside = case["evaluate"] - case["predict_inside"]
        if "CNN" in case["kind"]:
            top = ", ".join(f"{name} {secs(s)}" for name, s in _phase_leaves(case["phases"])[:5])
            rows.add(f"`evaluate` overhead on the two models' own inference, {thousands(case['rows'])} scenes, CNN",
                     f"**{pct(case['overhead_inside'])}**: {secs(inside)} of its {secs(case['evaluate'])} is not the "
                     f"models' `predict` ({top}); against a separate predict-only run, {pct(case['overhead'])} "
                     f"({secs(case['evaluate'])} vs {secs(case['predict'])} of predict; {case['reps']} rep(s))", "< 10 %")
        else:
            top = ", ".join(f"{name} {secs(s)}" for name, s in _phase_leaves(case["phases"])[:3])
            rows.add(f"`evaluate`, {thousands(case['rows'])} rows, scikit-learn logistic regression",
                     f"{secs(case['evaluate'])} in all for {secs(case['predict'])} of inference (the evidence's own "
                     f"cost: {top}; median of {case['reps']})")
    for m in figures["memory"]:
        batch = f", batches of {m['batch_size']:,}" if "CNN" in m["case"] else ""
        rows.add(f"`evaluate` peak memory, {thousands(m['rows'])} rows, {m['case']}{batch} "
                 f"({m['file_mb']:.0f} MB Parquet, {m['memory_mb']:.0f} MB in pandas)",
                 f"{mem(m['peak_mb'])} ({mem(m['before_mb'])} after imports), {secs(m['seconds'])}", "reported")
    if not any("CNN" in m["case"] for m in figures["memory"]):
        rows.add("`evaluate` peak memory, road-scenes CNN", NOT_MEASURED, "reported")
    if figures["first_pass"]:
        reads = figures["first_pass"]
        rows.add(f"`evaluate`'s first pass alone (read, hash, keys), scenes, {' / '.join(thousands(r['rows']) for r in reads)} rows",
                 " / ".join(mem(r["peak_mb"]) for r in reads) + f" peak (batches of {reads[0]['batch_size']:,})", "reported")
    return rows.rows


def retrain_rows(record: dict | None) -> list[list[str]]:
    rows = Rows(record, "python benchmarks/bench_retrain.py")
    what = "default `retrain` cycle (8k images, 15 epochs max)"
    if record is None:
        rows.add(what, NOT_MEASURED, "< 5 min")
        return rows.rows
    figures = record["figures"]
    if figures["params"]:
        what = f"`retrain` cycle ({' '.join(figures['params'])})"
    seconds = figures["seconds"]
    steps = ", ".join(f"{k} {secs(v)}" for k, v in seconds.items() if not k.startswith(("start-up", "teardown")))
    start_up = seconds["start-up and teardown (total - steps)"]
    label = f"median of {figures['cycles']}" if figures["cycles"] > 1 else "one cycle"
    rows.add(what, f"{secs(figures['total_seconds'])} wall, {label} (start-up and teardown {secs(start_up)}, {steps}); "
                   f"{mem(figures['retrain_peak_mb'])} peak; the cycle's processes got {figures['cpu_percent']} of one core "
                   f"(GNU time: {figures['user_seconds']:.0f} s user)",
             verdict(figures["total_seconds"] < figures["budget_seconds"], f"< {figures['budget_seconds'] / 60:.0f} min"))
    return rows.rows


def performance(results: Path) -> str:
    records = {name: load(results, name) for name in ("statistics", "drift", "drift_stream", "evaluate", "retrain")}
    rows = (statistics_rows(records["statistics"]) + drift_rows(records["drift"])
            + drift_stream_rows(records["drift_stream"])
            + evaluate_rows(records["evaluate"]) + retrain_rows(records["retrain"]))
    return table(["what", "figure", "target", "command"], rows) + "\n\n" + provenance(records)


# -- the gate against plain MLflow ---------------------------------------------------------------


def gate(results: Path) -> str:
    record = load(results, "gate")
    header = ["measure", "plain MLflow", "gatekeeper", "difference", "target"]
    if record is None:
        return table(header, [["promotion latency, throughput, worker memory", NOT_MEASURED, "", "", ""]]) + \
            "\n\n" + provenance({"gate": None})
    f = record["figures"]
    lat, tp, warm = f["latency_ms"], f["throughput_rps"], f["memory_mb"]["warm"]
    ms = lambda s: f"{s['median']:.1f} / {s['p90']:.1f} ms"  # noqa: E731
    iqr = lambda q: f"{q[0]:.3f}–{q[1]:.3f}"  # noqa: E731
    forbidden = ", ".join(f["forbidden_imports"]) or "neither"
    rows = [
        [f"promotion latency: set `champion`, evidence of {thousands(f['settings']['examples'])} examples, weak mode, "
         "judged for the first time (median / p90)",
         ms(lat["plain"]), ms(lat["gated"]),
         f"**{lat['gated_minus_plain_median']:+.1f} ms** ({lat['gated']['median'] / lat['plain']['median']:.2f}× plain)",
         verdict(lat["gated_minus_plain_median"] < f["budgets"]["latency_ms"], f"< {f['budgets']['latency_ms']:.0f} ms")],
    ]
    if "verified" in lat:  # result files before the registered-set column lack it
        rows.append([
            "promotion latency: the same, on a registered set with its verification recorded (median / p90)",
            ms(lat["plain"]), ms(lat["verified"]),
            f"**{lat['verified_minus_plain_median']:+.1f} ms** ({lat['verified']['median'] / lat['plain']['median']:.2f}× plain)",
            verdict(lat["verified_minus_plain_median"] < f["budgets"]["latency_ms"], f"< {f['budgets']['latency_ms']:.0f} ms")])
    rows += [
        ["unprotected alias set (median / p90)", ms(lat["plain"]), ms(lat["unprotected"]),
         f"{lat['unprotected_minus_plain_median']:+.1f} ms", ""],
        [f"throughput of calls the gate does not touch (search, get, log; {f['settings']['rounds']} rotating rounds)",
         f"{tp['median']['plain']:.0f} req/s", f"{tp['median']['gated']:.0f} req/s",
         f"**{tp['gated_over_plain']:.3f}×** (IQR {iqr(tp['gated_over_plain_iqr'])}; A/A noise floor "
         f"{tp['plain_over_bare']:.3f}×, IQR {iqr(tp['plain_over_bare_iqr'])})",
         verdict(tp["gated_over_plain"] >= f["budgets"]["throughput_ratio"], f"≥ {f['budgets']['throughput_ratio']}")],
        ["worker RSS after warm-up, vs MLflow without the package", mem(warm["bare"]["VmRSS"]), mem(warm["gated"]["VmRSS"]),
         f"**{f['added_vs_bare_mb']:+.1f} MB**", verdict(f["added_vs_bare_mb"] < f["budgets"]["memory_mb"], f"< {f['budgets']['memory_mb']:.0f} MB")],
        ["torch / evidently imported by the server worker", "—", forbidden, "", "neither"],
    ]
    return table(header, rows) + "\n\n" + provenance({"gate": record})


# -- the pages ------------------------------------------------------------------------------------


def pages(results: Path) -> str:
    record = load(results, "pages")
    header = ["page (a model with 1,000 decisions)", "median / p95", "× MLflow's `registered-models/get`", "target"]
    if record is None:
        return table(header, [["every page", NOT_MEASURED, "", ""]]) + "\n\n" + provenance({"pages": None})
    f = record["figures"]
    rows = [[label, f"{p['median_ms']:.0f} / {p['p95_ms']:.0f} ms", f"{p['ratio_to_reference']:.2f}×",
             "reference" if p["ratio_to_reference"] == 1.0 and "MLflow" in label
             else verdict(p["within_budget"], f"p95 < {f['budget_ms']:.0f} ms")]
            for label, p in f["pages"].items()]
    return (table(header, rows) + f"\n\n{f['decisions']:,} decisions in the log ({f['real_decisions']} made by the gate, "
            f"the rest appended through `audit.append`; chain intact: {'yes' if f['chain_ok'] else 'no'}), "
            f"{f['requests']} timed requests a page over one keep-alive connection, {f['server']}. "
            + provenance({"pages": record}))


# -- malformed input -----------------------------------------------------------------------------


def _resets(counts: dict | None) -> str:
    """Resets tried again (``benchmarks.fuzz_requests.send``); '—' in results from before the retry."""
    return "—" if counts is None else f"{counts['gated']} / {counts['plain']}"


def fuzz(results: Path) -> str:
    record = load(results, "fuzz")
    header = ["backend", "requests", "gated server (status × count)", "plain MLflow", "5xx caused by the plugin",
              "production moved / approvals added", "connection resets retried (gated / plain)"]
    if record is None:
        return table(header, [["—", NOT_MEASURED, "", "", "", "", ""]]) + "\n\n" + provenance({"fuzz": None})
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    histogram = lambda counts: ", ".join(f"{status}×{n}" for status, n in sorted(counts.items()))  # noqa: E731
    rows = [[names.get(backend, backend), f"{r['requests']:,} in {r['seconds']:.0f} s", histogram(r["gated"]),
             histogram(r["plain"]), f"**{r['plugin_caused_5xx_or_bad_errors']}**",
             f"{'no' if r['production_unchanged'] else '**yes**'} / {r['approving_decisions_added']}",
             _resets(r.get("connection_resets_retried"))]
            for backend, r in record["figures"]["backends"].items()]
    return table(header, rows) + "\n\n" + provenance({"fuzz": record})


# -- decision quality ----------------------------------------------------------------------------


def calibration(results: Path) -> str:
    """Worst world per metric family: the highest false-promotion and regression-guard rates over
    the worlds at each n, and the power at the largest n in the family's first world."""
    data = load(results, "calibration")
    header = ["family", "false promotion, worst world: n = {sizes}", "regression guard, worst world: n = {sizes}",
              "power at n = {largest} (worlds: {world})"]
    if data is None:
        return table([h.format(sizes="30 / 100 / 1000", largest=1000, world="first world") for h in header],
                     [["—", NOT_MEASURED, "", ""]])
    by_family: dict[str, list[dict]] = {}
    for record in data["families"]:
        by_family.setdefault(record["family"], []).append(record)
    sizes = sorted({r["n"] for r in data["families"]})
    rows = []
    for family, records in by_family.items():
        worst = lambda what: " / ".join(f"{max(r[what]['rate'] for r in records if r['n'] == n):.3f}" for n in sizes)  # noqa: E731
        first_world = records[0]["world"]
        power = next(r["power"] for r in records if r["world"] == first_world and r["n"] == sizes[-1])
        rows.append([family, worst("level"), worst("guard"), f"{power['rate']:.3f} ({power['true_effect']:+.3f})"])
    worlds_note = " / ".join(dict.fromkeys(r["world"] for family in by_family.values() for r in family[:1]))
    header = [h.format(sizes=" / ".join(map(str, sizes)), largest=sizes[-1], world=worlds_note) for h in header]
    meta = data["meta"]
    return table(header, rows) + (f"\n\n{meta['reps']} replicates a cell, "
                                  f"nominal level {meta['nominal_level']:g}; measured {meta['date'][:16].replace('T', ' ')} UTC "
                                  f"on commit {meta['git_commit'][:7]} (`benchmarks/results/calibration.json`).")


def calibration_slices(results: Path) -> str:
    data = load(results, "calibration")
    if data is None:
        return table(["slice case", "refusal wanted", "refused by slices"], [["—", "", NOT_MEASURED]])
    modes = data["meta"]["slice_modes"]
    cases: dict[str, dict] = {}
    for record in data["slices"]:
        cases.setdefault(record["case"], {"wanted": record["refusal_wanted"]})[record["mode"]] = record["refused_by_slices"]
    rows = [[case, "yes" if found["wanted"] else "no",
             *(f"{found[mode]['rate']:.3f} ± {found[mode]['se']:.3f}" for mode in modes)] for case, found in cases.items()]
    return table(["slice case", "refusal wanted", *(f"{mode}: refused by slices" for mode in modes)], rows)


def attempts(results: Path) -> str:
    """Per pair of models and re-evaluation strategy, the promotion rate when the newest run alone
    decides (before "every attempt counts") and under the rule, with the attempts made."""
    record = load(results, "attempts")
    header = ["models", "strategy", "promotion wanted", "promoted: newest run decides (before)",
              "promoted: every attempt counts", "mean attempts made (before / now)"]
    if record is None:
        return table(header, [["—", "", "", NOT_MEASURED, "", ""]]) + "\n\n" + provenance({"attempts": None})
    figures, rules = record["figures"], ("newest run only", "every attempt counts")
    cell = lambda s: f"{s['rate']:.3f} ± {s['se']:.3f}"  # noqa: E731
    rows = [[case["models"], case["strategy"], "yes" if case["promotion_wanted"] else "no",
             *(cell(case["rules"][rule]) for rule in rules),
             " / ".join(f"{case['rules'][rule]['mean_attempts']:.2f}" for rule in rules)]
            for case in figures["cases"]]
    return table(header, rows) + (f"\n\n{figures['reps']:,} replicates a case, ± Monte-Carlo standard error; nominal "
                                  f"level {figures['nominal_level']:g}. ") + provenance({"attempts": record})


ARMS = ("loop", "random", "none", "ceiling")


def _arms(week: dict[str, dict], key: str) -> str:
    return " / ".join("—" if week[arm].get(key) is None else f"{week[arm][key]:.3f}" for arm in ARMS)


def _decision(week: dict) -> str:
    """``v5 refuse_worse (0.786 vs 0.797)``: the verdict and, for a refusal, the deciding comparison."""
    if week.get("verdict") in (None, "no trigger"):
        return "no trigger"
    compared = re.search(r"candidate ([\d.]+) vs baseline ([\d.]+)", week.get("reason", ""))
    detail = f" ({float(compared[1]):.3f} vs {float(compared[2]):.3f})" if compared and week["verdict"] != "promote" else ""
    return f"v{week['candidate']} {week['verdict']}{detail}"


def season(results: Path) -> str:
    """Per simulated week: the serving champion's accuracy in each arm (loop / random / no loop /
    ceiling), the loop's labels and each autopilot's decision; then the issue's goal per arm and
    the share of the rain gap to the ceiling each loop closed."""
    record = load(results, "season")
    if record is None:
        return NOT_MEASURED
    figures = record["figures"]
    arms = figures["weeks"]
    rows = []
    for index, loop in enumerate(arms["loop"]):
        week = {arm: arms[arm][index] for arm in arms}
        rows.append([str(loop["week"]), loop["mix"].replace("_", " "), f"{loop['clear']:.3f}", _arms(week, "rain"),
                     _arms(week, "green_cone"), _arms(week, "all"), f"{loop['labels']} ({pct(loop['label_share'])})",
                     _decision(loop), _decision(week["random"])])
    named = "loop / random / none / ceiling"
    weekly = table(["week", "traffic", "clear (loop)", f"rain: {named}", f"green cones: {named}", f"all: {named}",
                    "labels (loop)", "loop's decision", "random's decision"], rows)
    goals = []
    for arm, found in figures["goal"].items():
        back = "never" if found["rain_back_in_week"] is None else f"week {found['rain_back_in_week']}"
        closed = figures["gap_closed"].get(arm)
        share = "all of its training set" if arm == "ceiling" else pct(found["max_label_share"])
        goals.append([arm, back, "yes" if found["met_within_3_weeks"] else "**no**", f"{found['mean_rain_after_shift']:.3f}",
                      f"{100 * found['mean_gap_after_shift']:.1f} points", "—" if closed is None else pct(closed), share])
    goal = table(["arm", "rain within 2 points of clear from", "within 3 weeks of the shift", "mean rain accuracy after "
                  "the shift", "mean clear − rain gap after the shift", "rain gap to the ceiling closed", "largest weekly "
                  "label share"], goals)
    return "\n\n".join([weekly, goal, f"Command: `{record['command']}`. " + provenance({"season": record})])


def spark_evaluate(results: Path) -> str:
    """Per table size: each engine's wall time and peak memory, and whether both logged the same evidence."""
    record = load(results, "spark_evaluate")
    if record is None:
        return NOT_MEASURED
    rows = []
    for found in record["figures"]["rows"]:
        local, spark = found["local"], found["spark"]
        rows.append([thousands(found["rows"]), secs(local["seconds"]), secs(spark["seconds"]),
                     f"{spark['seconds'] / local['seconds']:.2f}×",
                     f"{mem(local['driver_peak_until_logged_mb'])} / {mem(spark['driver_peak_until_logged_mb'])}",
                     f"{mem(local['driver_peak_mb'])} / {mem(spark['driver_peak_mb'])}",
                     mem(spark["jvm_peak_mb"]), mem(spark["workers_peak_mb"]), "yes" if found["same_evidence"] else "**no**"])
    header = ["rows", "local engine", "spark engine (local[*])", "spark / local",
              "driver peak until the evidence is logged (local / spark)", "… then with the gate judging it in the same process",
              "Spark JVM peak", "Spark Python workers peak (sum)", "same hash, outcomes digest, verdict"]
    return "\n\n".join([table(header, rows), f"Command: `{record['command']}`. " + provenance({"spark_evaluate": record})])


def spark_mine(results: Path) -> str:
    """Per log size and engine: the mining job's time and peak memory, and whether the engines
    wrote the same queue."""
    record = load(results, "spark_mine")
    if record is None:
        return NOT_MEASURED
    answers = {True: "yes", False: "**no**", None: "—"}
    rows, spark_alone = [], []
    for size in record["figures"]["sizes"]:
        if "local" not in size["engines"]:
            spark_alone.append(thousands(size["rows"]))
        for engine, found in size["engines"].items():
            failed, spark = "error" in found, engine != "local"
            rows.append([thousands(size["rows"]), engine, f"failed (exit {found['exit']})" if failed else secs(found["seconds"]),
                         mem(found["driver_peak_mb"]), mem(found["jvm_peak_mb"]) if spark else "—",
                         mem(found["workers_peak_mb"]) if spark else "—", "—" if failed else f"{found['queue_rows']:,}",
                         answers[size["same_queue"]]])
    header = ["log rows (7 days)", "engine", "mining job (whole process)", "driver peak", "Spark JVM peak",
              "Spark Python workers peak (sum)", "queue rows", "same queue folder and manifest"]
    generated = ", ".join(f"{thousands(s['rows'])} rows in {secs(s['generation']['seconds'])}"
                          for s in record["figures"]["sizes"])
    notes = f"Generating the log and feedback (not in the job's time): {generated}."
    if spark_alone:
        notes += f" The local engine holds the whole window in pandas: not run on {', '.join(spark_alone)} rows."
    return "\n\n".join([table(header, rows), notes, f"Command: `{record['command']}`. " + provenance({"spark_mine": record})])


def load_table(figures: dict) -> str:
    """p50 / p99 per call kind on plain MLflow, the gated server, and the gated server with a worker
    killed; the calls, errors, promotion answers and the consistency checks under it."""
    phases = figures["phases"]
    plain = phases[0]
    rows = []
    for kind in figures["mix"]:
        base = plain["kinds"][kind]
        row = [kind.replace("_", " "), f"{base['p50']:.0f} / {base['p99']:.0f}"]
        for found in phases[1:]:
            mine = found["kinds"][kind]
            row.append(f"{mine['p50']:.0f} / {mine['p99']:.0f} (p99 {mine['p99'] / base['p99']:.2f}×)")
        rows.append(row)
    rows.append(["calls in all (per second), errors, retried once after a broken connection", *[
        f"{p['calls']:,} ({p['calls_per_s']:.0f}/s), **{p['errors']}** errors, {p['retried']} retried" for p in phases]])
    rows.append(["promotions: promoted / refused", f"{plain['kinds']['promotion']['ok']} / —", *[
        f"{p['kinds']['promotion']['ok']} / {p['kinds']['promotion']['refused']}" for p in phases[1:]]])
    rows.append(["one holder per target, audit chain intact, no decision missing", "—", *[
        ("yes" if p["consistent"] else "**no**") + f" ({p['after']['approvals_recorded']} approvals, "
        f"{p['after']['refusals_recorded']} refusals recorded)" for p in phases[1:]]])
    return table(["call: p50 / p99 ms", "plain MLflow", "gated", "gated, one worker SIGKILLed half-way"], rows)


def load_benchmark(results: Path) -> str:
    record = load(results, "load")
    if record is None:
        return NOT_MEASURED
    figures = record["figures"]
    head = (f"{figures['clients']} clients for {figures['seconds']:.0f} s per column, gunicorn with "
            f"{figures['workers']} workers, PostgreSQL.")
    return "\n\n".join([head, load_table(figures), f"Command: `{record['command']}`. " + provenance({"load": record})])


def big_evidence(results: Path) -> str:
    """Per evidence size: the first judgement's time and the worker's peak memory over its RSS once
    open; beside them the same figures of the code before the memory work (``big_evidence_before``),
    measured on the same machine, when that file exists."""
    record = load(results, "big_evidence")
    if record is None:
        return NOT_MEASURED
    before_record = load(results, "big_evidence_before")
    before = {f["rows"]: f for f in (before_record["figures"]["sizes"] if before_record else [])}

    def earlier(rows: int) -> str:
        found = before.get(rows)
        return f"{secs(found['seconds'])}, {found['bytes_per_row']:.0f} B a row" if found else NOT_MEASURED

    rows = [[thousands(f["rows"]), mem(f["outcomes_bytes"] / 2**20), secs(f["seconds"]),
             f"{mem(f['peak_mb'])} (+{mem(f['peak_mb'] - f['rss_opened_mb'])})", f"{f['bytes_per_row']:.0f} B",
             earlier(f["rows"])]
            for f in record["figures"]["sizes"]]
    commit = f" (commit {before_record['git']['commit'][:7]})" if before_record else ""
    return "\n\n".join([table(["rows", "outcomes.arrow", "first judgement", "worker peak (over the open gate)",
                                "per row", f"before{commit}: first judgement, per row"], rows),
                          f"Command: `{record['command']}`. "
                          + provenance({"big_evidence": record, "big_evidence_before": before_record})])


TABLES: dict[str, Callable[[Path], str]] = {
    "performance": performance, "gate": gate, "fuzz": fuzz, "calibration": calibration,
    "calibration-slices": calibration_slices, "attempts": attempts, "pages": pages, "season": season,
    "spark-evaluate": spark_evaluate, "spark-mine": spark_mine, "load": load_benchmark, "big-evidence": big_evidence,
}


def render(readme: str, results: Path = RESULTS) -> str:
    """``readme`` with every marked table rebuilt from ``results``; unknown or missing markers raise."""
    found = {m.group("name") for m in MARKERS.finditer(readme)}
    if found != set(TABLES):
        raise ValueError(f"README markers {sorted(found)} differ from the tables {sorted(TABLES)}")
    return MARKERS.sub(lambda m: f"{m.group(1)}{TABLES[m.group('name')](results)}\n{m.group(3)}", readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when README.md differs")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    current = args.readme.read_text()
    wanted = render(current, args.results)
    if wanted == current:
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), wanted.splitlines(True),
                                                   str(args.readme), "generated from benchmarks/results"))
        print(f"\n{args.readme} differs from benchmarks/results: run python benchmarks/readme_tables.py", file=sys.stderr)
        return 1
    args.readme.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
