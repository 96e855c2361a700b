"""The gate's comparisons of one evaluation, overall and per slice, from per-example outcomes.

Shared by both engines: the local engine runs them on the whole table, the Spark engine on each
group of rows (``projects.evaluate.spark_engine``), so both report the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from registry_hooks.statistics import METRICS, ModelOutcomes, PairedOutcomes, compare

SLICE_METRIC = {"classification": "accuracy", "regression": "mae"}


def classes_of(label: pd.Series, n_probability_columns: int | None) -> np.ndarray:
    """The class of each probability column: 0..k-1 for non-negative integer labels, else the
    sorted label values (scikit-learn's ``classes_`` order)."""
    values = np.unique(label.to_numpy())
    if values.dtype.kind in "iu" and values.min() >= 0:
        return np.arange(max(int(values.max()) + 1, n_probability_columns or 0))
    return values


def metric_names(task: str, fields: dict[str, np.ndarray], n_classes: int | None) -> list[str]:
    names = ["accuracy", "f1"] if task == "classification" else ["mae", "mse", "rmse"]
    if "proba_label" in fields:
        names.append("log_loss")
    if "score" in fields and n_classes == 2:
        names.append("roc_auc")
    return [n for n in names if n in METRICS]


def model_outcomes(fields: dict[str, np.ndarray]) -> ModelOutcomes:
    return ModelOutcomes(prediction=fields["prediction"], proba_label=fields.get("proba_label"), score=fields.get("score"))


def compare_overall(paired: PairedOutcomes, metric_names: list[str]) -> dict:
    """Each metric's comparison on every row (the candidate against itself on a first release).

    For this report the label set of class metrics is every value seen (labels and both models'
    predictions), so a model that predicts a class absent from the labels is still reported;
    the gate itself judges with the policy's label set.
    """
    classes = None
    if any(METRICS[m].classes for m in metric_names):
        classes = np.unique(np.concatenate([paired.label, paired.baseline.prediction, paired.candidate.prediction]))
    return {m: compare(m, paired, classes=classes) for m in metric_names}


def compare_slice(paired: PairedOutcomes, slice_metric: str):
    """The slice metric's comparison on one slice's rows; None where it is undefined there.
    (Slice metrics are mean metrics, SLICE_METRIC: no label set is involved.)"""
    try:
        return compare(slice_metric, paired)
    except ValueError:  # metric undefined on this slice (e.g. one class only)
        return None


def compare_all(paired: PairedOutcomes, metric_names: list[str], slices: dict[str, np.ndarray], slice_metric: str):
    """Overall and per-slice comparisons with the gate's statistics, on arrays in memory."""
    per_slice = {}
    for column, values in slices.items():
        for value in np.unique(values):
            found = compare_slice(paired.subset(values == value), slice_metric)
            if found is not None:
                per_slice[(column, str(value))] = found
    return compare_overall(paired, metric_names), per_slice
