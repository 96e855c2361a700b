"""What a person looks at after an evaluation: the per-slice chart, confusion matrices, the
examples the candidate gets wrong with confidence, the examples the two models disagree on, and
a printed summary with the gate's verdict preview."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from projects.evaluate.scoring import Evaluated

ARTIFACT_DIR = "evaluation"
TOP_K = 50


def progress(batches: Iterable[pd.DataFrame], out) -> Iterator[pd.DataFrame]:
    """A tqdm bar over the scoring batches (to stderr-like ``out``; silent when not a terminal)."""
    from tqdm import tqdm

    with tqdm(unit="rows", desc="scoring", file=out, disable=None, mininterval=1.0) as bar:
        for batch in batches:
            yield batch
            bar.update(len(batch))


def _slice_chart(per_slice: dict, path: Path, paired: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(per_slice.items())
    labels = [f"{col}={val}\n(n={c.n})" for (col, val), c in items]
    x = np.arange(len(items))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, 1.1 * len(items) + 2), 7), sharex=True)
    width = 0.38 if paired else 0.6
    top.bar(x - (width / 2 if paired else 0), [c.candidate for _, c in items], width, label="candidate")
    if paired:
        top.bar(x + width / 2, [c.baseline for _, c in items], width, label="champion")
    metric = items[0][1].metric if items else ""
    top.set_ylabel(metric)
    top.legend()
    top.set_title(f"{metric} per slice")
    if paired:
        centre = np.array([c.improvement for _, c in items])
        # a bound equal to the estimate may differ from it by a rounding step: never a negative bar
        low = np.maximum(centre - np.array([c.ci_low for _, c in items]), 0.0)
        high = np.maximum(np.array([c.ci_high for _, c in items]) - centre, 0.0)
        bottom.errorbar(x, centre, yerr=[low, high], fmt="o", capsize=4)
        bottom.axhline(0.0, color="grey", linewidth=1)
        bottom.set_ylabel(f"improvement (one-sided {items[0][1].confidence:.0%} bounds)" if items else "improvement")
    bottom.set_xticks(x, labels, rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion(label: np.ndarray, prediction: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Counts of (true, predicted) in ``classes`` order; a prediction outside them counts as the first."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (np.vectorize(index.get)(label), np.vectorize(lambda p: index.get(p, 0))(prediction)), 1)
    return matrix


def _confusion_chart(matrix: np.ndarray, classes, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 * len(classes) + 2.5, 1.0 * len(classes) + 2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="black")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes], rotation=30)
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def tables(keys: pd.DataFrame, label, cand: dict, base: dict | None) -> dict[str, pd.DataFrame]:
    """The examples a person looks at: highest loss, confident mistakes, disagreements (TOP_K each)."""
    frame = keys.copy()
    frame["label"] = label
    for prefix, fields in (("candidate", cand), ("champion", base)):
        for name, values in (fields or {}).items():
            frame[f"{prefix}_{name}"] = values
    wrong = frame[frame["candidate_prediction"] != frame["label"]]
    found = {"highest_loss": frame.nlargest(TOP_K, "candidate_loss")}
    if "candidate_proba_label" in frame:
        found["confident_mistakes"] = wrong.nsmallest(TOP_K, "candidate_proba_label")
    if base is not None:
        found["disagreements"] = frame[frame["candidate_prediction"] != frame["champion_prediction"]].head(TOP_K)
    return found


def log_artifacts(evaluated: Evaluated) -> None:
    import mlflow

    e = evaluated
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if e.per_slice:
            _slice_chart(e.per_slice, folder / "slices.png", e.paired)
        for model, matrix in e.confusion.items():
            _confusion_chart(matrix, e.classes, folder / f"confusion_{model}.png", model)
        for name, table in e.tables.items():
            table.to_csv(folder / f"{name}.csv", index=False)
        rows = [c.to_dict() | {"scope": "overall"} for c in e.overall.values()]
        rows += [c.to_dict() | {"scope": f"{col}={val}"} for (col, val), c in e.per_slice.items()]
        pd.DataFrame(rows).to_csv(folder / "comparisons.csv", index=False)
        mlflow.log_artifacts(str(folder), ARTIFACT_DIR)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def print_summary(out, evaluated: Evaluated, preview: dict[str, Any]) -> None:
    e = evaluated
    against = f"champion v{e.baseline_version}" if e.paired else "no production version (first release)"
    print(f"\n{e.name} v{e.version} vs {against} on {e.n_rows} rows", file=out)
    for metric, c in e.overall.items():
        if e.paired:
            print(f"  {metric:<12} candidate {_fmt(c.candidate)}  champion {_fmt(c.baseline)}  "
                  f"improvement {_fmt(c.improvement)} [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]", file=out)
        else:
            print(f"  {metric:<12} {_fmt(c.candidate)}", file=out)
    for (column, value), c in sorted(e.per_slice.items()):
        text = f"improvement {_fmt(c.improvement)} [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]" if e.paired else ""
        print(f"  {column}={value:<10} n={c.n:<7} {c.metric} {_fmt(c.candidate)}  {text}", file=out)
    judged_here = f" (judged here under the local policy: {preview['judged_here']})" if "judged_here" in preview else ""
    print(f"gate preview: {preview.get('verdict')}{judged_here}", file=out)
    for reason in preview.get("reasons", []):
        print(f"  - {reason}", file=out)
