"""Small helpers shared by the benchmark scripts: machine facts, result files, summary statistics, process memory."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BASE_PACKAGES = ("mlflow", "torch", "numpy")


def machine_lines(packages: tuple[str, ...]) -> list[str]:
    """Core count, load and package versions, printed above every result table."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    versions = []
    for package in packages:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return [
        f"machine: {platform.machine()} {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} cores ({affinity} usable), load average {load}",
        f"python {platform.python_version()} ({sys.executable})",
        ", ".join(versions),
    ]


def _package_versions(packages: tuple[str, ...]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in dict.fromkeys((*BASE_PACKAGES, *packages)):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    meminfo = Path("/proc/meminfo")
    for line in meminfo.read_text().splitlines() if meminfo.exists() else []:
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def machine_facts(packages: tuple[str, ...] = ()) -> dict:
    """What a timing depends on besides the code: cores, CPU, memory, interpreter, library versions."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(), "usable_cpus": usable, "cpu_model": _cpu_model(), "ram_gib": _ram_gib(),
        "platform": f"{platform.machine()} {platform.system()} {platform.release()}",
        "python": platform.python_version(), "packages": _package_versions(packages),
    }


def git_facts() -> dict:
    """The commit measured, and the tracked files that differed from it (the figures include them)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "uncommitted": git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results").splitlines()}


class ResultFile:
    """One benchmark run's record, ``benchmarks/results/<name>.json``: what was measured, how and where.

    Created when the run starts (date, command line, load average at the start), written at the end
    with the figures, so the README's tables (``benchmarks/readme_tables.py``) come from a
    measurement and say under which load it was taken: the machine is shared, and a timing means
    little without that.
    """

    def __init__(self, name: str, packages: tuple[str, ...] = ()):
        self.path = RESULTS / f"{name}.json"
        self.packages = packages
        self.started = time.perf_counter()
        self.record = {
            "benchmark": name,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(["python", _relative(sys.argv[0]), *sys.argv[1:]]),
            "interpreter": sys.executable,
            "load_average_start": load_average(),
            "git": git_facts(),  # at the start: the code this process loaded, even if a commit lands meanwhile
        }

    def write(self, figures: dict) -> Path:
        record = self.record | {
            "load_average_end": load_average(),
            "wall_seconds": round(time.perf_counter() - self.started, 1),
            "machine": machine_facts(self.packages),
            "figures": figures,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"written {self.path.relative_to(REPO)}", flush=True)
        return self.path


def _relative(script: str) -> str:
    path = Path(script).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else script


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), ``q`` in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# -- processes --------------------------------------------------------------------------------


def process_tree() -> dict[int, list[int]]:
    """Every process's children by parent pid, from one scan of /proc (works without CONFIG_PROC_CHILDREN)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rindex(")") + 2:].split()
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    return sorted(process_tree().get(pid, []))


def status_kib(pid: int) -> dict[str, int]:
    """The ``kB`` fields of /proc/PID/status (VmRSS, VmHWM, RssAnon, ...), in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            values[key] = int(parts[0])
    return values


def mapped_files(pid: int) -> set[str]:
    """Paths of the files mapped into ``pid`` (shared objects, mmapped data)."""
    paths = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            paths.add(parts[5])
    return paths


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def own_peak_rss_mb() -> float:
    """This process's own peak RSS (``VmHWM``), in MiB.

    Not ``ru_maxrss``: in a child process Linux folds the forking parent's high-water mark into
    it, so a benchmark child started by a big parent would report at least the parent's size.
    """
    return status_kib(os.getpid())["VmHWM"] / 1024


class Poller:
    """A context manager that calls ``sample()`` every ``interval`` seconds in a daemon thread
    until the ``with`` block ends: the memory probes' shared loop (subclasses say what a sample is)."""

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Descendants(Poller):
    """Peak RSS of the JVM and peak summed RSS of every other process (Spark's Python workers)
    below ``root`` (default: this process), sampled every ``interval`` seconds. A process whose
    command starts with ``java`` is the JVM (in local mode also the executors)."""

    def __init__(self, root: int | None = None, interval: float = 0.2):
        super().__init__(interval)
        self.root = os.getpid() if root is None else root
        self.jvm_mb = self.workers_mb = 0.0

    def sample(self) -> None:
        jvm = workers = 0.0
        tree = process_tree()  # one scan of /proc a sample, whatever the number of processes below root
        stack = list(tree.get(self.root, []))
        while stack:
            pid = stack.pop()
            try:
                rss = status_kib(pid).get("VmRSS", 0) / 1024
                line = cmdline(pid)
            except OSError:
                continue
            if "java" in line.split(" ", 1)[0]:
                jvm += rss
            else:
                workers += rss
            stack += tree.get(pid, [])
        self.jvm_mb, self.workers_mb = max(self.jvm_mb, jvm), max(self.workers_mb, workers)


def log(message: str) -> None:
    """A progress line with the time of day."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
