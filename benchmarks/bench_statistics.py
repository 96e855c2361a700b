"""Timing of registry_hooks.statistics.compare on a large paired evaluation set.

Budgets (issue): on 1M rows, mean-metric tests under 100 ms each and a
1000-resample permutation test or bootstrap under 2 s.  The naive column does
the same resampling row by row — for f1 / precision / recall / balanced accuracy
exchanging the two models' predictions on each row with probability 1/2, for
roc_auc drawing row indices (``rng.integers(0, n, size=n)``) — and
recomputes the metric with scikit-learn or numpy, timed on a few resamples and
extrapolated to the same count.

    .venv/bin/python benchmarks/bench_statistics.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
from sklearn import metrics as skm

from _common import ResultFile
from registry_hooks import statistics as st

RESAMPLES = 1000
MEAN_BUDGET_S = 0.1
RESAMPLING_BUDGET_S = 2.0


def make_data(n: int, seed: int = 0) -> dict[str, st.PairedOutcomes]:
    """Binary classifiers with probabilities, 5-class classifiers, regressors."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)

    def binary(skill: float) -> st.ModelOutcomes:
        p_true = 1 / (1 + np.exp(-rng.normal(skill, 1.0, n)))
        score = np.where(label == 1, p_true, 1 - p_true)
        return st.ModelOutcomes((score > 0.5).astype(int), p_true, score)

    classes = rng.integers(0, 5, n)

    def multiclass(accuracy: float) -> st.ModelOutcomes:
        return st.ModelOutcomes(np.where(rng.random(n) < accuracy, classes, rng.integers(0, 5, n)))

    target = rng.normal(0, 3, n)
    common = rng.normal(size=n)

    def regressor(sd: float) -> st.ModelOutcomes:
        return st.ModelOutcomes(target + sd * (0.8 * common + 0.6 * rng.normal(size=n)))

    return {
        "binary": st.PairedOutcomes(label, binary(1.0), binary(1.05)),
        "multiclass": st.PairedOutcomes(classes, multiclass(0.7), multiclass(0.71)),
        "regression": st.PairedOutcomes(target, regressor(1.0), regressor(0.99)),
    }


def naive_seconds_per_resample(outcomes: st.PairedOutcomes, metric: Callable, resamples: int,
                               permute: bool = False) -> float:
    """Both models on the same drawn rows (index bootstrap), or with their predictions
    exchanged on a random half of the rows (paired permutation)."""
    rng = np.random.default_rng(1)
    n = len(outcomes)
    start = time.perf_counter()
    for _ in range(resamples):
        if permute:
            swap = rng.random(n) < 0.5
            base, cand = outcomes.baseline.prediction, outcomes.candidate.prediction
            swapped = (st.ModelOutcomes(np.where(swap, cand, base)), st.ModelOutcomes(np.where(swap, base, cand)))
            for model in swapped:
                metric(outcomes.label, model, slice(None))
            continue
        index = rng.integers(0, n, size=n)
        for model in (outcomes.baseline, outcomes.candidate):
            metric(outcomes.label[index], model, index)
    return (time.perf_counter() - start) / resamples


def timed(run: Callable[[], st.Comparison], repeats: int) -> tuple[float, st.Comparison]:
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


NAIVE: dict[str, Callable] = {
    "f1": lambda y, m, i: skm.f1_score(y, m.prediction[i]),
    "precision": lambda y, m, i: skm.precision_score(y, m.prediction[i], zero_division=0),
    "recall": lambda y, m, i: skm.recall_score(y, m.prediction[i]),
    "balanced_accuracy": lambda y, m, i: skm.balanced_accuracy_score(y, m.prediction[i]),
    "roc_auc": lambda y, m, i: skm.roc_auc_score(y, m.score[i]),
}
NAIVE_MACRO_F1 = lambda y, m, i: skm.f1_score(y, m.prediction[i], average="macro")  # noqa: E731


Row = dict  # label, method, resamples, seconds, budget_seconds, naive_seconds (None: no naive column)


def mean_metric_rows(data: dict[str, st.PairedOutcomes]) -> list[Row]:
    """The closed-form tests (McNemar, paired t): best of 3."""
    rows = []
    for label, metric, kind, kwargs in (
        ("accuracy", "accuracy", "binary", {}),
        ("accuracy, margin 0.01", "accuracy", "binary", {"margin": 0.01}),
        ("log_loss", "log_loss", "binary", {}),
        ("rmse", "rmse", "regression", {}),
    ):
        seconds, result = timed(lambda: st.compare(metric, data[kind], **kwargs), repeats=3)
        rows.append(_row(label, result.method, "-", seconds, MEAN_BUDGET_S, None))
    return rows


def resampled_rows(data: dict[str, st.PairedOutcomes], naive_resamples: int) -> list[Row]:
    """The permutation and bootstrap tests at ``RESAMPLES``, next to the naive row-by-row resampling."""
    resampled = [(m, m, "binary", NAIVE[m]) for m in ("f1", "precision", "recall", "balanced_accuracy", "roc_auc")]
    resampled.append(("f1 macro, 5 classes", "f1", "multiclass", NAIVE_MACRO_F1))
    rows = []
    for label, metric, kind, naive in resampled:
        seconds, result = timed(lambda: st.compare(metric, data[kind], n_resamples=RESAMPLES), repeats=1)
        permute = result.method == "paired-permutation"
        naive_s = naive_seconds_per_resample(data[kind], naive, naive_resamples, permute) * RESAMPLES
        rows.append(_row(label, result.method, str(RESAMPLES), seconds, RESAMPLING_BUDGET_S, naive_s))
    return rows


EXACT_RESAMPLES = 10


def forced_bootstrap_rows(data: dict[str, st.PairedOutcomes], naive_resamples: int) -> list[Row]:
    """What roc_auc's per-example bootstrap would cost at this n, i.e. why it switches to DeLong's
    test above the draw limit (timed on ``EXACT_RESAMPLES``, extrapolated)."""
    limit = st.EXACT_BOOTSTRAP_MAX_DRAWS
    st.EXACT_BOOTSTRAP_MAX_DRAWS = math.inf
    rows = []
    try:
        for metric, kind in (("roc_auc", "binary"),):
            seconds, result = timed(lambda: st.compare(metric, data[kind], n_resamples=EXACT_RESAMPLES), repeats=1)
            seconds *= RESAMPLES / EXACT_RESAMPLES
            naive_s = naive_seconds_per_resample(data[kind], NAIVE[metric], naive_resamples) * RESAMPLES
            rows.append(_row(f"{metric}, forced per-row bootstrap", result.method, f"{RESAMPLES}*", seconds,
                             RESAMPLING_BUDGET_S, naive_s))
    finally:
        st.EXACT_BOOTSTRAP_MAX_DRAWS = limit
    return rows


def _row(label: str, method: str, resamples: str, seconds: float, budget: float, naive: float | None) -> Row:
    return {"label": label, "method": method, "resamples": resamples, "seconds": seconds, "budget_seconds": budget,
            "naive_seconds": naive}


def print_rows(rows: list[Row], n: int, naive_resamples: int) -> None:
    print(f"n = {n:,} paired rows; naive = the same resampling row by row, timed on {naive_resamples} resamples")
    columns = ("metric", "method", "resamples", "time", "budget", "ok", "naive", "speed-up")
    header = "{:<34} {:<17} {:>9} {:>9} {:>7} {:>3} {:>9} {:>9}".format(*columns)
    print(header)
    print("-" * len(header))
    for row in rows:
        seconds, naive_s = row["seconds"], row["naive_seconds"]
        naive_text = f"{naive_s:8.2f}s" if naive_s is not None else f"{'-':>9}"
        ratio = f"{naive_s / seconds:8.1f}x" if naive_s is not None else f"{'-':>9}"
        ok = "yes" if seconds <= row["budget_seconds"] else "NO"
        print(f"{row['label']:<34} {row['method']:<17} {row['resamples']:>9} {seconds:8.3f}s "
              f"{row['budget_seconds']:6.1f}s {ok:>3} {naive_text} {ratio}")
    print(
        f"* extrapolated from {EXACT_RESAMPLES} resamples; with n * resamples > {st.EXACT_BOOTSTRAP_MAX_DRAWS:,}, "
        "compare() uses the large-sample paired-z (DeLong / delta method) instead."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="paired rows (default 1,000,000)")
    parser.add_argument("--naive-resamples", type=int, default=2, help="resamples timed for the naive column")
    args = parser.parse_args()
    result = ResultFile("statistics", ("scipy", "scikit-learn"))
    data = make_data(args.n)
    st.compare("f1", make_data(1000)["binary"], n_resamples=10)  # warm imports and caches
    rows = mean_metric_rows(data) + resampled_rows(data, args.naive_resamples)
    rows += forced_bootstrap_rows(data, args.naive_resamples)
    print_rows(rows, args.n, args.naive_resamples)
    result.write({"n": args.n, "resamples": RESAMPLES, "naive_resamples_timed": args.naive_resamples,
                  "exact_resamples_timed": EXACT_RESAMPLES, "rows": rows})

if __name__ == "__main__":
    main()
