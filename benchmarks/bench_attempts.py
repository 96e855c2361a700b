"""Every attempt counts: can re-evaluating on fresh data get a no-better candidate promoted?

A user whose candidate is refused may evaluate it again on a fresh data set, and again, until a
run passes. If the newest run alone decided, ten tries would promote an equally good model about
1 - 0.95^10 = 40 % of the time. The gate (``registry_hooks.trust``) counts every data version the
candidate was evaluated on against the current baseline as an attempt and promotes only when the
primary comparison passes on all of them (an intersection–union rule), so shopping gains nothing,
while a better model evaluated once keeps its power.

Each case is a pair of models and a strategy: the sizes of the fresh evaluation sets the user
tries, in order, stopping at the first promotion. Every attempt is a fresh simulated evaluation
(``benchmarks/simulate.py``'s balanced world: accuracy 0.8, errors sharing each row's
difficulty) with its own data hash and run id, serialised and parsed like a real one, and judged
by ``decide`` under a policy whose only rule is primary accuracy (exact mid-p McNemar) — twice:

* newest run only (the behaviour before the rule): ``decide`` on the newest attempt alone;
* every attempt counts: ``decide`` on the newest attempt with the earlier ones as
  ``TrustFacts.attempts``, as the server's evidence source passes them.

Seeds are fixed per (candidate gain, set size, replicate, attempt): a rerun, with any number of
processes, gives the same figures.

    .venv/bin/python benchmarks/bench_attempts.py [--reps 1500] [--processes N]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread per worker process: the processes are the parallelism

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import simulate as sim  # noqa: E402
from benchmarks._common import ResultFile, markdown_table  # noqa: E402
from registry_hooks.decision import Decision, decide  # noqa: E402
from registry_hooks.evidence import (  # noqa: E402
    DataRef, Manifest, VersionRef, outcomes_table, parse_manifest, parse_outcomes,
)
from registry_hooks.trust import Attempt, EvidenceFinding, TrustFacts  # noqa: E402

WORLD = "balanced"
TRIES = 10
CHUNK = 50  # replicates per task
POLICY = sim.promotion_policy("accuracy", 0.0)  # primary accuracy, margin 0, nothing else


@dataclass(frozen=True)
class Case:
    """Two models and what the user does: ``sizes`` are the fresh sets tried, in order."""

    models: str
    gain: float  # the candidate's accuracy minus the baseline's (0: equally good)
    strategy: str
    sizes: tuple[int, ...]

    @property
    def promotion_wanted(self) -> bool:
        return self.gain > 0


CASES = (
    Case("equal models", 0.0, "one evaluation on 20,000", (20_000,)),
    Case("equal models", 0.0, f"up to {TRIES} fresh sets of 20,000", (20_000,) * TRIES),
    Case("equal models", 0.0, "one evaluation on 2,000", (2_000,)),
    Case("equal models", 0.0, f"up to {TRIES} fresh sets of 2,000", (2_000,) * TRIES),
    Case("+1 point", 0.01, "one evaluation on 20,000", (20_000,)),
    Case("+1 point", 0.01, f"up to {TRIES} fresh sets of 20,000", (20_000,) * TRIES),
    Case("+1 point", 0.01, "2,000, then 20,000 if refused", (2_000, 20_000)),
)


# ----------------------------------------------------------------------------- evaluations


def evaluation(gain: float, n: int, rep: int, attempt: int) -> EvidenceFinding:
    """One fresh evaluation set of ``n`` rows, as the gate finds it: Arrow bytes and a manifest,
    parsed by the gate (a parse error is a bug here, so it raises). ``simulate.finding`` fixes one
    data hash and run id for every replicate; attempts need their own, as distinct data versions
    and distinct runs have."""
    draw = sim.WORLDS[WORLD].draw(sim.seeded("attempts", gain, n, rep, attempt), n, gain=gain)
    only = lambda model: {"prediction": model["prediction"]}  # noqa: E731 - accuracy reads predictions only
    raw = outcomes_table(row_id=range(n), label=draw.label, candidate=only(draw.candidate), baseline=only(draw.baseline))
    data_hash = hashlib.sha256(f"attempts/{gain}/{n}/{rep}/{attempt}".encode()).hexdigest()
    run_id = f"attempt-{attempt + 1}"
    manifest = Manifest(
        task="classification", candidate=sim.CANDIDATE, baseline=VersionRef(sim.CANDIDATE.name, sim.BASELINE.version),
        data=DataRef(f"fresh-{attempt + 1}", data_hash, n), created_at=sim.NOW - timedelta(hours=1),
        outcomes_sha256=hashlib.sha256(raw).hexdigest(), slice_columns=(), evaluator="benchmarks.bench_attempts",
    )
    evidence = parse_outcomes(raw, parse_manifest(json.dumps(manifest.to_dict())), run_id)
    return EvidenceFinding(run_id, evidence, None, frozenset({data_hash}), sim.NOW - timedelta(hours=1))


def data_text(finding: EvidenceFinding) -> str:
    """How the server's evidence source names an attempt's data: its name and hash prefix."""
    data = finding.evidence.manifest.data
    return f"data '{data.name}' ({data.content_hash[:12]}…)"


# ----------------------------------------------------------------------------------- rules


def newest_only(findings: list[EvidenceFinding]) -> Decision:
    """The behaviour before the rule: the newest run decides, earlier ones are not looked at."""
    return sim.judge(POLICY, findings[-1])


def every_attempt(findings: list[EvidenceFinding]) -> Decision:
    """The newest run decides, with every earlier attempt passed as the store passes it."""
    earlier = tuple(Attempt(data_text(f), f) for f in findings[:-1])
    return decide(POLICY, sim.CANDIDATE, sim.BASELINE, findings[-1], None, sim.NOW, trust=TrustFacts(attempts=earlier))


RULES: dict[str, Callable[[list[EvidenceFinding]], Decision]] = {
    "newest run only": newest_only, "every attempt counts": every_attempt,
}


def replicate(case: Case, rep: int) -> Counter:
    """One user following ``case.sizes`` until promoted, under each rule, on the same evaluations.

    The evaluations are drawn in order and shared: a user under either rule makes the same k-th
    evaluation; each rule only changes when that user stops. Counts per rule: promoted (0 / 1),
    attempts made, and their square (for the standard error of the mean)."""
    findings: list[EvidenceFinding] = []
    stopped: dict[str, int] = {}
    for attempt, n in enumerate(case.sizes):
        findings.append(evaluation(case.gain, n, rep, attempt))
        for rule, judge in RULES.items():
            if rule not in stopped and judge(findings).approved:
                stopped[rule] = attempt + 1
        if len(stopped) == len(RULES):
            break
    counts = Counter(reps=1)
    for rule in RULES:
        made = stopped.get(rule, len(case.sizes))
        counts.update({rule: rule in stopped, f"{rule}: attempts": made, f"{rule}: attempts²": made * made})
    return counts


def run_case(case: Case, reps: range) -> Counter:
    """Summed counts of ``replicate`` over ``reps``."""
    total = Counter()
    for rep in reps:
        total.update(replicate(case, rep))
    return total


# --------------------------------------------------------------------------------- running


def _task(task: tuple[int, range]) -> tuple[int, Counter]:
    index, reps = task
    return index, run_case(CASES[index], reps)


def simulate_all(reps: int, processes: int) -> list[Counter]:
    """Counts per case, the work split into blocks of replicates over ``processes``."""
    work = [(index, range(start, min(start + CHUNK, reps)))
            for index in range(len(CASES)) for start in range(0, reps, CHUNK)]
    totals = [Counter() for _ in CASES]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for done, (index, counts) in enumerate(pool.imap_unordered(_task, work), 1):
            totals[index].update(counts)
            if done % 20 == 0 or done == len(work):
                print(f"  {done}/{len(work)} tasks", file=sys.stderr, flush=True)
    return totals


def summary(counts: Counter, rule: str) -> dict:
    """P(promoted) with its Monte-Carlo SE, and the mean number of attempts made with its SE."""
    reps = counts["reps"]
    mean = counts[f"{rule}: attempts"] / reps
    variance = max(counts[f"{rule}: attempts²"] / reps - mean * mean, 0.0)
    return sim.rate(counts, rule) | {"mean_attempts": mean, "mean_attempts_se": float(np.sqrt(variance / reps))}


def records(totals: list[Counter]) -> list[dict]:
    return [{"models": case.models, "gain": case.gain, "strategy": case.strategy, "sizes": list(case.sizes),
             "promotion_wanted": case.promotion_wanted, "rules": {rule: summary(counts, rule) for rule in RULES}}
            for case, counts in zip(CASES, totals)]


def markdown(cases: list[dict]) -> str:
    cell = lambda s: f"{s['rate']:.3f} ± {s['se']:.3f}"  # noqa: E731
    rows = [[c["models"], c["strategy"], *(cell(c["rules"][rule]) for rule in RULES),
             " / ".join(f"{c['rules'][rule]['mean_attempts']:.2f}" for rule in RULES)] for c in cases]
    return markdown_table(["models", "strategy", *(f"promoted: {rule}" for rule in RULES),
                           "mean attempts (newest only / every attempt)"], rows)


def gate_code_sha256() -> str:
    """A hash of the gate package as measured: the rule may be uncommitted, or untracked, when a
    figure is taken, and the result file's git facts list only tracked files."""
    package = Path(sys.modules["registry_hooks"].__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1500, help="replicates per case (default 1500)")
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="worker processes (default: all cores)")
    args = parser.parse_args()
    result = ResultFile("attempts", ("numpy", "scipy", "pyarrow"))
    cases = records(simulate_all(args.reps, args.processes))
    print(markdown(cases))
    result.write({
        "reps": args.reps, "processes": args.processes, "world": WORLD, "seed": sim.SEED, "max_tries": TRIES,
        "nominal_level": round(1 - POLICY.confidence, 10), "primary": "accuracy (mid-p McNemar), margin 0",
        "registry_hooks_sha256": gate_code_sha256(), "cases": cases,
    })


if __name__ == "__main__":
    main()
