"""The README's first command, timed: one default ``retrain`` cycle, wall time and peak memory, by step.

    .venv/bin/python benchmarks/bench_retrain.py              # the default cycle (8k images, 15 epochs max)
    .venv/bin/python benchmarks/bench_retrain.py --reps 3     # three fresh cycles, medians
    .venv/bin/python benchmarks/bench_retrain.py --quick      # a smoke run (-P train_size=1000 -P epochs=2 ...)
    .venv/bin/python benchmarks/bench_retrain.py -P epochs=5  # any -P passed on to `mlflow run`

Budget (issue): the whole default retrain cycle under 5 minutes of wall time on a 2-core machine,
broken down by step (start-up, data, train, evaluate, drift, gate).

Each repetition clones this repository (``git clone -q``: the committed HEAD; ``--with-uncommitted``
applies the working tree's uncommitted changes to tracked files on top) into a fresh temporary
directory and runs exactly the README's first command there::

    /usr/bin/time -v mlflow run . -e retrain --env-manager local [-P ...]

with this venv's ``bin`` first on ``PATH`` (so ``mlflow`` and the project's ``python`` are the
venv's) and ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``/``GATEKEEPER_POLICY`` and MLflow's run
variables unset: the embedded SQLite default, ``./mlflow.db`` and ``./data`` land in the clone.

* total: wall time of the whole command;
* steps: the ``seconds/<step>`` metrics the retrain run logs (read back from the clone's
  ``mlflow.db``); "start-up and teardown" = total - sum of the steps, split with the process tree
  (polled every 0.1 s) into: ``mlflow run`` until the ``projects.retrain`` process exists; that
  process outside its steps (imports, MLflow set-up, summary); and after it exited;
* memory: the peak RSS (``VmHWM``, polled) of every process of the tree -- the largest is the
  retrain process -- the polled peak of their sum, and GNU time's "Maximum resident set size"
  (the largest single process as ``wait4`` reports it).

No assertions: it prints figures, the verdict line and whether the budget was met, and writes
``benchmarks/results/retrain.json`` (the README's row is generated from it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from _common import (  # noqa: E402
    Poller, ResultFile, children, cmdline, machine_lines, markdown_table, median, status_kib,
)
from registry_hooks.contract import POLICY_ENV  # noqa: E402

VENV_BIN = Path(sys.executable).parent
QUICK = ["train_size=1000", "epochs=2", "eval_size=1000", "window_size=1000"]
STEPS = ["data", "tune", "train", "drift", "evaluate", "gate"]
UNSET = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", POLICY_ENV, "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID",
         "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
BUDGET_S = 300.0
PACKAGES = ("evidently", "optuna", "pandas", "pyarrow")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class TreeWatcher(Poller):
    """Polls the process tree under ``root``: per-process peak RSS, the peak of the sum, and when the
    retrain process (``-m projects.retrain``) was first and last seen."""

    def __init__(self, root: int, started: float, interval: float = 0.1):
        super().__init__(interval)
        self.root, self.started = root, started
        self.processes: dict[int, dict] = {}
        self.peak_sum_mb = 0.0
        self.retrain_first: float | None = None
        self.retrain_last: float | None = None

    def _tree(self) -> list[int]:
        found, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children(pid))
        return found

    def sample(self) -> None:
        now = time.perf_counter() - self.started
        total = 0.0
        for pid in self._tree():
            try:
                status, command = status_kib(pid), cmdline(pid)
            except OSError:  # exited meanwhile
                continue
            rss = status.get("VmRSS", 0) / 1024
            total += rss
            entry = self.processes.setdefault(pid, {"command": command, "hwm_mb": 0.0})
            if command:
                entry["command"] = command
            entry["hwm_mb"] = max(entry["hwm_mb"], status.get("VmHWM", 0) / 1024)
            if "projects.retrain" in command:
                self.retrain_first = now if self.retrain_first is None else self.retrain_first
                self.retrain_last = now
        self.peak_sum_mb = max(self.peak_sum_mb, total)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    env.pop("PYTHONPATH", None)  # the clone's code, not this checkout's
    return env


def prepare_clone(workdir: Path, with_uncommitted: bool) -> Path:
    clone = workdir / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    if with_uncommitted:
        diff = subprocess.run(["git", "-C", str(REPO), "diff", "HEAD", "--binary"], check=True, capture_output=True).stdout
        if diff:
            subprocess.run(["git", "-C", str(clone), "apply", "--whitespace=nowarn"], input=diff, check=True)
    return clone


def which_code(clone: Path, env: dict[str, str]) -> str:
    """Where ``python -m projects.retrain`` imports the project from when run in the clone."""
    probe = subprocess.run(["python", "-c", "import projects, plugins, registry_hooks; "
                            "print(projects.__file__, plugins.__file__, registry_hooks.__file__)"],
                           cwd=clone, env=env, capture_output=True, text=True)
    return probe.stdout.strip() or probe.stderr.strip()[-300:]


def gnu_time(path: Path) -> dict[str, str]:
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.strip().rpartition(": ")
            if key:
                values[key] = value
    return values


def step_seconds(clone: Path) -> tuple[dict[str, float], str | None]:
    """The ``seconds/<step>`` metrics of the retrain run in the clone's database."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{clone}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    for run in client.search_runs(experiments, max_results=1000):
        seconds = {k.split("/", 1)[1]: v for k, v in run.data.metrics.items() if k.startswith("seconds/")}
        if seconds:
            return seconds, run.info.run_name
    return {}, None


def one_cycle(workdir: Path, params: list[str], with_uncommitted: bool, show_output: bool) -> dict:
    clone = prepare_clone(workdir, with_uncommitted)
    env = clean_env()
    code = which_code(clone, env)
    command = ["/usr/bin/time", "-v", "-o", str(workdir / "time.txt"), "mlflow", "run", ".", "-e", "retrain",
               "--env-manager", "local", *[arg for p in params for arg in ("-P", p)]]
    output_path = workdir / "output.log"
    started = time.perf_counter()
    with open(output_path, "wb") as output:
        process = subprocess.Popen(command, cwd=clone, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        with TreeWatcher(process.pid, started) as watcher:
            returncode = process.wait()
    total = time.perf_counter() - started
    text = output_path.read_text(errors="replace")
    if show_output:
        print(text)
    if returncode != 0:
        raise SystemExit(f"`{' '.join(command[4:])}` exited {returncode}:\n{text[-4000:]}")
    seconds, run_name = step_seconds(clone)
    if not seconds:  # fall back on the summary's "timings (s): data 2.1, train 40.3, ..."
        match = re.search(r"^timings \(s\): (.*)$", text, re.M)
        seconds = {k: float(v) for k, v in (item.rsplit(" ", 1) for item in match.group(1).split(", "))} if match else {}
    verdict = re.search(r"^verdict:.*$", text, re.M)
    candidate = re.search(r"^candidate:.*$", text, re.M)
    retrain_pid = max((p for p, e in watcher.processes.items() if "projects.retrain" in e["command"]),
                      key=lambda p: watcher.processes[p]["hwm_mb"], default=None)
    timing = gnu_time(workdir / "time.txt")
    return {
        "total": total, "steps": seconds, "run_name": run_name, "code": code,
        "verdict": verdict.group(0) if verdict else "(no verdict line)",
        "candidate": candidate.group(0) if candidate else "",
        "reasons": re.findall(r"^  - .*$", text[verdict.end():] if verdict else "", re.M),
        "retrain_first": watcher.retrain_first, "retrain_last": watcher.retrain_last,
        "retrain_peak_mb": watcher.processes[retrain_pid]["hwm_mb"] if retrain_pid else float("nan"),
        "tree_sum_peak_mb": watcher.peak_sum_mb,
        "processes": sorted(((e["hwm_mb"], e["command"][:90]) for e in watcher.processes.values()), reverse=True),
        "gnu_time_max_rss_mb": int(timing.get("Maximum resident set size (kbytes)", 0)) / 1024,
        "gnu_time_wall": timing.get("Elapsed (wall clock) time (h:mm:ss or m:ss)", "?"),
        "cpu_percent": timing.get("Percent of CPU this job got", "?"),
        "user_s": float(timing.get("User time (seconds)", "nan")), "system_s": float(timing.get("System time (seconds)", "nan")),
    }


def breakdown(cycle: dict) -> dict[str, float]:
    """Start-up and teardown split by the polled process tree, plus the logged steps."""
    steps = {k: cycle["steps"][k] for k in STEPS if k in cycle["steps"]}
    steps.update({k: v for k, v in cycle["steps"].items() if k not in steps})
    outside = cycle["total"] - sum(steps.values())
    parts = {}
    if cycle["retrain_first"] is not None:
        alive = cycle["retrain_last"] - cycle["retrain_first"]
        parts["start-up: `mlflow run` until the retrain process starts"] = cycle["retrain_first"]
        parts["start-up: retrain process outside its steps (imports, MLflow set-up, summary)"] = alive - sum(steps.values())
        parts["teardown: `mlflow run` after the retrain process exits"] = cycle["total"] - cycle["retrain_last"]
    return {"start-up and teardown (total - steps)": outside, **parts, **steps}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: " + " ".join(f"-P {p}" for p in QUICK))
    parser.add_argument("-P", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter of the retrain entry point, passed on to `mlflow run` (repeatable)")
    parser.add_argument("--reps", type=int, default=1, help="fresh cycles to run, one after the other (default 1)")
    parser.add_argument("--with-uncommitted", action="store_true",
                        help="apply the working tree's uncommitted changes (tracked files) to the clone")
    parser.add_argument("--show-output", action="store_true", help="print the whole output of each cycle")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories (paths printed)")
    return parser.parse_args()


def code_line(with_uncommitted: bool) -> str:
    """Which code the clones run: the commit, and whether the working tree's changes are in it."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.splitlines()
    if not dirty:
        return f"commit {head}"
    if with_uncommitted:
        return f"commit {head} + {len(dirty)} uncommitted change(s) applied"
    return f"commit {head} ({len(dirty)} uncommitted change(s) in the working tree NOT included)"


def run_cycles(args: argparse.Namespace, params: list[str], command: str) -> list[dict]:
    cycles = []
    for rep in range(args.reps):
        workdir = Path(tempfile.mkdtemp(prefix="bench_retrain_"))
        try:
            log(f"cycle {rep + 1}/{args.reps}: `{command}` in {workdir}/repo ...")
            cycle = one_cycle(workdir, params, args.with_uncommitted, args.show_output)
            cycles.append(cycle)
            log(f"cycle {rep + 1}/{args.reps}: {cycle['total']:.1f} s wall, retrain process peak "
                f"{cycle['retrain_peak_mb']:.0f} MB; steps " + ", ".join(f"{k} {v:.1f}" for k, v in cycle["steps"].items()))
            log(cycle["verdict"])
        finally:
            if args.keep:
                print(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    return cycles


def summarise(cycles: list[dict]) -> dict:
    """Medians over the cycles: wall time, each part of the breakdown, memory."""
    parts = [breakdown(c) for c in cycles]
    keys = list(dict.fromkeys(k for p in parts for k in p))
    return {
        "cycles": len(cycles), "total_seconds": median([c["total"] for c in cycles]),
        "total_seconds_each": [c["total"] for c in cycles],
        "seconds": {k: median([p.get(k, 0.0) for p in parts]) for k in keys},
        "seconds_each": {k: [p.get(k, 0.0) for p in parts] for k in keys},
        "retrain_peak_mb": median([c["retrain_peak_mb"] for c in cycles]),
        "tree_sum_peak_mb": median([c["tree_sum_peak_mb"] for c in cycles]),
        "gnu_time_max_rss_mb": median([c["gnu_time_max_rss_mb"] for c in cycles]),
        "budget_seconds": BUDGET_S, "verdict": cycles[0]["verdict"], "reasons": cycles[0]["reasons"],
        "cpu_percent": cycles[0]["cpu_percent"], "user_seconds": cycles[0]["user_s"], "system_seconds": cycles[0]["system_s"],
    }


def print_report(summary: dict, first: dict, command: str) -> None:
    print(f"\nimports in the clone resolve to: {first['code']}")
    print(f"run: {first['run_name']!r}; {first['candidate']}")
    print(first["verdict"])
    for reason in first["reasons"]:
        print(reason)
    total = summary["total_seconds"]
    label = f"median of {summary['cycles']}" if summary["cycles"] > 1 else "one cycle"
    print(f"\n## Retrain cycle, by step ({label}; `{command}`)\n")
    rows = [["**total wall**", f"**{total:.1f} s**", "100 %", " / ".join(f"{t:.1f}" for t in summary["total_seconds_each"])]]
    for key, value in summary["seconds"].items():
        rows.append([key, f"{value:.2f} s", f"{100 * value / total:.1f} %",
                     " / ".join(f"{v:.2f}" for v in summary["seconds_each"][key])])
    rows.append(["budget < 5 min", "met" if total < BUDGET_S else "NOT met", "", ""])
    print(markdown_table(["step", "seconds", "share", "each cycle"], rows))
    print("\n## Memory and CPU\n")
    print(markdown_table(["what", "figure"], [
        ["peak RSS, retrain process (VmHWM, polled)", f"{summary['retrain_peak_mb']:.0f} MB"],
        ["peak RSS, sum over the process tree (polled every 0.1 s)", f"{summary['tree_sum_peak_mb']:.0f} MB"],
        ["GNU time: maximum resident set size", f"{summary['gnu_time_max_rss_mb']:.0f} MB"],
        ["GNU time: wall / CPU / user / system", f"{first['gnu_time_wall']} / {first['cpu_percent']} / "
                                                 f"{first['user_s']:.1f} s / {first['system_s']:.1f} s"],
    ]))
    print("\nprocesses of the first cycle (peak RSS, command):")
    for hwm, cmd in first["processes"]:
        print(f"  {hwm:8.0f} MB  {cmd}")


def main() -> None:
    args = parse_args()
    params = (QUICK if args.quick else []) + args.params
    if not Path("/usr/bin/time").exists():
        raise SystemExit("needs GNU time at /usr/bin/time (apt-get install time)")
    record = ResultFile("retrain", PACKAGES)
    for line in machine_lines(PACKAGES):
        print(line)
    code = code_line(args.with_uncommitted)
    print(f"code: {code}")
    command = "mlflow run . -e retrain --env-manager local" + "".join(f" -P {p}" for p in params)
    cycles = run_cycles(args, params, command)
    summary = summarise(cycles)
    print_report(summary, cycles[0], command)
    record.write(summary | {"cycle_command": command, "params": params, "code": code})

if __name__ == "__main__":
    main()
