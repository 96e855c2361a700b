"""Scoring any pyfunc model batch by batch: predictions, class probabilities, per-example loss.

Works for any registered model with a pyfunc flavour (torch, scikit-learn, custom): the model's
input columns come from its signature, its output is read as class probabilities (an ``n × k``
array or DataFrame, or a DataFrame's ``p_<class>`` columns: ``projects.served``), as labels, or as
regression values. A model that can log its calls as traffic is told not to (``scoring_params``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from projects.datasets import DataError
from projects.served import probabilities, scoring_params
from registry_hooks.evidence import ExampleOutcomes, OutcomesFile

_EPS = 1e-15
PREDICT_BATCH = 4096  # rows per predict call: bounded activations for image models


class EvaluationError(DataError):
    """Input the evaluation cannot use; the message says what to fix. No evidence is logged."""


@dataclass(frozen=True)
class Evaluated:
    """One evaluation's results, as the evidence, the artifacts and the printed summary need them,
    whichever engine computed them.

    ``overall`` and ``per_slice`` hold the gate's comparisons (``compare``, the candidate against
    itself on a first release, when ``baseline_version`` is None); ``confusion`` one matrix per
    model (rows true, columns predicted, in ``classes`` order); ``tables`` the examples a person
    looks at (``report.TOP_K`` each); ``sample`` the first rows' ids, labels and slices (logged with
    the dataset input); ``outcomes`` the per-example outcomes, in memory or already written.
    """

    name: str
    version: str
    baseline_version: str | None
    content_hash: str
    n_rows: int
    classes: np.ndarray | None
    overall: dict
    per_slice: dict
    confusion: dict[str, np.ndarray]
    tables: dict[str, pd.DataFrame]
    sample: pd.DataFrame
    outcomes: ExampleOutcomes | OutcomesFile

    @property
    def paired(self) -> bool:
        return self.baseline_version is not None


@dataclass
class Scores:
    """One model's outputs on every row, accumulated batch by batch."""

    predictions: list[np.ndarray] = field(default_factory=list)
    probabilities: list[np.ndarray] = field(default_factory=list)

    def prediction(self) -> np.ndarray:
        return np.concatenate(self.predictions) if self.predictions else np.array([])

    def proba(self) -> np.ndarray | None:
        return np.concatenate(self.probabilities) if self.probabilities else None


def _input_columns(model, data_columns: list[tuple[str, str]], exclude: set[str]) -> list[str]:
    """The data columns the model reads, from its signature; a mismatch is a clear error."""
    schema = model.metadata.get_input_schema()
    available = {name: dtype for name, dtype in data_columns if name not in exclude}
    if schema is None:
        return list(available)
    if schema.has_input_names():
        names = schema.input_names()
        missing = [n for n in names if n not in dict(data_columns)]
        if missing:
            raise EvaluationError(f"the data lacks column(s) the model signature requires: {', '.join(missing[:10])}")
        return names
    spec = schema.inputs[0]  # a tensor spec: pick the columns of its dtype, in order
    width = spec.shape[-1] if len(spec.shape) == 2 else None
    matching = [n for n, dtype in available.items() if dtype == str(spec.type)]
    if width is None or len(matching) != width:
        raise EvaluationError(
            f"the model expects a {spec.type} tensor of shape {spec.shape}; the data has {len(matching)} "
            f"{spec.type} column(s) besides label and slices, so the features cannot be matched"
        )
    return matching


class Scorer:
    """A loaded model plus what is needed to turn its raw output into comparable outcomes.

    Raw outputs are kept per batch and mapped to classes only at the end, once every label has
    been seen (the evaluation reads the data once). ``predict`` runs on sub-batches of
    ``predict_batch_size`` rows: a pyfunc wrapper sends whatever it gets through the model in one
    call, and 20k images at once would need gigabytes of activations.
    """

    def __init__(self, model_uri: str, data_columns: list[tuple[str, str]], exclude: set[str],
                 predict_batch_size: int = PREDICT_BATCH):
        import mlflow.pyfunc

        try:
            self.model = mlflow.pyfunc.load_model(model_uri)
        except Exception as exc:  # a missing version, a broken artifact, a missing flavour
            raise EvaluationError(f"cannot load {model_uri}: {exc}") from exc
        self.uri = model_uri
        self.columns = _input_columns(self.model, data_columns, exclude)
        self.predict_batch_size = predict_batch_size
        self.params = scoring_params(self.model)
        self.outputs: list[np.ndarray] = []

    def _predict(self, features: pd.DataFrame) -> np.ndarray:
        try:
            output = self.model.predict(features, params=self.params)
        except Exception as exc:  # schema enforcement, dtype mismatch, a crashing model
            raise EvaluationError(f"{self.uri} failed on the data (does it match the model signature?): {exc}") from exc
        return model_values(output, self.uri)

    def score(self, features: pd.DataFrame) -> None:
        """Score one batch of exactly this model's input columns (``self.columns``)."""
        step = self.predict_batch_size
        self.outputs += [self._predict(features.iloc[i:i + step]) for i in range(0, len(features), step)]

    def scores(self, task: str, classes: np.ndarray | None) -> Scores:
        """Predictions (and class probabilities) for every row scored so far."""
        return to_scores(self.outputs, task, classes, self.uri)

    @property
    def n_probability_columns(self) -> int | None:
        return self.outputs[0].shape[1] if self.outputs and self.outputs[0].ndim == 2 else None


def model_values(output, uri: str) -> np.ndarray:
    """A model's raw output as one array: class probabilities (``n × k``), labels or values."""
    output = probabilities(output)
    values = np.asarray(output.to_numpy() if isinstance(output, (pd.DataFrame, pd.Series)) else output)
    if values.dtype.kind in "fc" and np.isnan(values).any():
        raise EvaluationError(f"{uri} returned NaN for {int(np.isnan(values).sum())} value(s)")
    return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values


def to_scores(outputs: list[np.ndarray], task: str, classes: np.ndarray | None, uri: str) -> Scores:
    """Batches of ``model_values`` as predictions (and class probabilities), once the classes are known."""
    result = Scores()
    for values in outputs:
        if task == "regression":
            result.predictions.append(values.astype(np.float64))
        elif values.ndim == 2:
            if classes is None or values.shape[1] != len(classes):
                raise EvaluationError(
                    f"{uri} returned {values.shape[1]} probability columns but the labels have "
                    f"{0 if classes is None else len(classes)} classes"
                )
            result.probabilities.append(values.astype(np.float64))
            result.predictions.append(classes[values.argmax(axis=1)])
        else:
            result.predictions.append(values)
    return result


def class_index(label: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Position of each label in ``classes``; unknown labels are an error."""
    order = np.argsort(classes)
    positions = np.searchsorted(classes[order], label)
    positions = np.clip(positions, 0, len(classes) - 1)
    found = classes[order][positions] == label
    if not found.all():
        raise EvaluationError(f"labels not among the model's classes: {np.unique(label[~found])[:5]}")
    return order[positions]


def outcomes(scores: Scores, label: np.ndarray, task: str, classes: np.ndarray | None) -> dict[str, np.ndarray]:
    """The evidence fields of one model: prediction, probability of the true label, score, loss."""
    prediction = scores.prediction()
    if task == "regression":
        return {"prediction": prediction, "loss": (prediction - label.astype(np.float64)) ** 2}
    proba = scores.proba()
    result: dict[str, np.ndarray] = {"prediction": prediction}
    if proba is not None:
        p_true = proba[np.arange(len(label)), class_index(label, classes)]
        result["proba_label"] = np.clip(p_true, 0.0, 1.0)
        result["loss"] = -np.log(np.clip(p_true, _EPS, 1.0))
        if len(classes) == 2:
            result["score"] = np.clip(proba[:, 1], 0.0, 1.0)
    else:
        result["loss"] = (prediction != label).astype(np.float64)
    return result


def infer_task(label_dtype: str, requested: str) -> str:
    """``auto``: regression for a float label, classification otherwise."""
    if requested in ("classification", "regression"):
        return requested
    if requested != "auto":
        raise DataError(f"task must be auto, classification or regression, got {requested!r}")
    return "regression" if label_dtype.startswith(("float", "Float")) else "classification"
