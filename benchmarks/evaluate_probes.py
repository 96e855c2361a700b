"""Timers and memory samplers put around ``projects.evaluate`` from the outside, for ``bench_evaluate.py``.

The package is not changed to be measured: its functions are wrapped while a measurement runs
(``timed_phases``) and restored afterwards, and a thread samples the process's RSS and notes the
phase it was in, so the benchmark can say where evaluate's time and memory go.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator

from benchmarks._common import Poller


class Phases:
    """Accumulates seconds per call path ("first pass > content hash") while patches are active."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.stack: list[str] = []
        self._undo: list[tuple[object, str, object]] = []

    def _add(self, key: str, seconds: float) -> None:
        path = " > ".join([*self.stack, key])
        self.seconds[path] = self.seconds.get(path, 0.0) + seconds

    def wrap(self, owner: object, attr: str, key: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            self.stack.append(key)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.stack.pop()
                self._add(key, elapsed)

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def wrap_generator(self, owner: object, attr: str, key_for) -> None:
        """Time every ``next()`` of the generator ``owner.attr(...)`` returns (reading batches)."""
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            key = key_for(*args, **kwargs)
            iterator = iter(original(*args, **kwargs))
            while True:
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    self._add(key, time.perf_counter() - start)
                    return
                self._add(key, time.perf_counter() - start)
                yield item

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler(Poller):
    """Samples this process's RSS every few ms in a thread: the peak, and the phase it happened in."""

    def __init__(self, phases: Phases | None = None, interval: float = 0.005):
        super().__init__(interval)
        self.phases = phases
        self.start_mb = rss_mb()
        self.peak_mb, self.peak_phase = self.start_mb, "before"
        self.per_phase: dict[str, float] = {}

    def sample(self) -> None:
        value = rss_mb()
        stack = list(self.phases.stack) if self.phases is not None else []
        phase = stack[0] if stack else "other"
        self.per_phase[phase] = max(self.per_phase.get(phase, 0.0), value)
        if value > self.peak_mb:
            self.peak_mb, self.peak_phase = value, " > ".join(stack) or "other"


# the phases, in the order they happen; (patch target, attribute, label)
PHASE_ORDER = [
    "the one pass: read, hash, keep keys, score",
    "baseline lookup (gate)",
    "load both models",
    "read batches",
    "score",
    "outcomes (per-example fields)",
    "statistics (overall + slices)",
    "log dataset input",
    "log evidence (outcomes.arrow)",
    "artifacts (charts, tables)",
    "gate preview (explain)",
]


@contextlib.contextmanager
def timed_phases() -> Iterator[Phases]:
    import mlflow.pyfunc

    import projects.datasets
    import projects.evaluate.core as core
    import projects.evaluate.report as report
    import registry_hooks.evidence

    phases = Phases()
    phases.wrap(core, "_read_and_score", PHASE_ORDER[0])
    phases.wrap(projects.datasets.StreamingHash, "update", "content hash")
    phases.wrap(core, "_baseline", PHASE_ORDER[1])
    phases.wrap(core.Scorer, "__init__", PHASE_ORDER[2])
    phases.wrap(core.Scorer, "score", PHASE_ORDER[4])
    phases.wrap(mlflow.pyfunc.PyFuncModel, "predict", "predict")
    phases.wrap_generator(core, "iter_table", lambda *a, **k: PHASE_ORDER[3])
    phases.wrap(core, "outcomes", PHASE_ORDER[5])
    phases.wrap(core, "compare_all", PHASE_ORDER[6])
    phases.wrap(core, "log_dataset_input", PHASE_ORDER[7])
    phases.wrap(registry_hooks.evidence, "log_evidence", PHASE_ORDER[8])
    phases.wrap(report, "log_artifacts", PHASE_ORDER[9])
    phases.wrap(core, "_preview", PHASE_ORDER[10])
    try:
        yield phases
    finally:
        phases.restore()



PREDICT = f"{PHASE_ORDER[0]} > {PHASE_ORDER[4]} > predict"  # the models' own work inside evaluate
