"""The served road-scenes model: a pyfunc wrapper that scores and writes every prediction down.

Why a wrapper (docs/design/operation-vacation.md, section 1): logging inside the model is the one
place every serving path shares -- ``mlflow models serve``, ``mlflow.pyfunc.load_model``,
``spark_udf``, batch scoring. It is logged with MLflow's "models from code" (this file is the
model's code, nothing is pickled) and carries the trained network as an ``mlflow.pytorch`` model
in ``pt2`` format (a traced graph) under the artifact ``network``.

``predict`` takes a DataFrame with the 3,072 ``px_*`` columns and, optionally, ``request_id`` and
the metadata columns (``weather``, ``light``, the ``img_*`` summaries); any other column is
ignored, so a whole scenes table or today's pixels-only frames both work. It returns one row per
input: ``request_id`` (the caller's, or ``<UTC yyyymmddHH>-<uuid4 hex>``), ``prediction`` (class
name), ``confidence`` (top probability) and ``p_<class>`` per class (``projects.model.predict_proba``
reads those). Each call's rows go to the inference log (``projects.inference_log``) with the
model's ``run_id`` and ``model_id`` from its MLmodel file, without waiting for the write.

The signature declares the output and one param, ``log_inference`` (default true: a caller that
scores evaluation data, not traffic, passes false), but no input schema: MLflow enforces a
column schema column by column, about 200 ms per call for 3,072 columns whatever the batch size
(measured, mlflow 3.17), which would cost a single-image request 50 times its forward pass.
Columns are checked here instead: missing pixel columns, or values outside 0..255, are a clear
error.

Log it with ``log_model(network, name="model")`` inside an active run. Loading it imports this
project's ``projects`` package (the log writer, the column names): the serving environment must
have the project installed, as ``mlflow models serve --env-manager local`` from its venv does.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

from projects import inference_log
from projects.served import LOG_PARAM
from registry_hooks.inference_records import (
    CONFIDENCE,
    MODEL_ID,
    MODEL_RUN_ID,
    PREDICTION,
    PROBABILITY_PREFIX,
    REQUEST_ID,
    new_request_id,
)

NETWORK_ARTIFACT = "network"


class RoadScenesModel(PythonModel):
    """The network plus the log; see the module docstring."""

    def load_context(self, context) -> None:
        from projects.scenes import PIXEL_COLUMNS

        config = context.model_config
        self._classes = np.asarray(config["classes"], dtype=object)
        self._metadata = list(config["metadata"])
        self._pixels = PIXEL_COLUMNS
        self._network = mlflow.pytorch.load_model(context.artifacts[NETWORK_ARTIFACT])
        self._identity = _identity(Path(context.artifacts[NETWORK_ARTIFACT]))
        self._log = inference_log.writer_for(inference_log.LogConfig.from_env())

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        moment = dt.datetime.now(dt.timezone.utc)
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        pixels = self._pixel_matrix(frame)
        with torch.inference_mode():
            probabilities = self._network(torch.from_numpy(pixels)).numpy()
        output = self._output(frame, probabilities, moment)
        if self._log is not None and (params or {}).get(LOG_PARAM, True):
            self._log.submit(self._record(frame, output, pixels, moment))
        return output

    def _pixel_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The ``(n, 3072)`` uint8 pixels; JSON brings int64, and a value outside 0..255 would
        otherwise wrap around silently."""
        missing = [c for c in self._pixels if c not in frame.columns]
        if missing:
            raise ValueError(f"the input lacks {len(missing)} pixel column(s), e.g. {missing[:3]}: send the {len(self._pixels)} px_* columns")
        values = frame[self._pixels].to_numpy()
        if values.dtype != np.uint8 and (values.dtype.kind not in "iu" or values.size and (values.min() < 0 or values.max() > 255)):
            raise ValueError(f"pixel values must be integers in 0..255, got {values.dtype} in [{values.min()}, {values.max()}]")
        return values.astype(np.uint8, copy=False)

    def _output(self, frame: pd.DataFrame, probabilities: np.ndarray, moment: dt.datetime) -> pd.DataFrame:
        top = probabilities.argmax(axis=1)
        return pd.DataFrame({
            REQUEST_ID: _request_ids(frame, moment),
            PREDICTION: self._classes[top],
            CONFIDENCE: probabilities[np.arange(len(top)), top],
            **{f"{PROBABILITY_PREFIX}{name}": probabilities[:, k] for k, name in enumerate(self._classes)},
        }, index=frame.index)

    def _record(self, frame: pd.DataFrame, output: pd.DataFrame, pixels: np.ndarray, moment: dt.datetime) -> inference_log.Batch:
        """What the log keeps of one call: the output, the metadata the caller sent, the model."""
        columns = {name: output[name].to_numpy() for name in output.columns}
        for name in self._metadata:
            columns[name] = frame[name].to_numpy() if name in frame.columns else [None] * len(frame)
        return inference_log.Batch(moment, columns, pixels, constants=self._identity)


def _request_ids(frame: pd.DataFrame, moment: dt.datetime) -> np.ndarray:
    """The caller's ids where given (non-empty text), new ones elsewhere."""
    given = frame[REQUEST_ID] if REQUEST_ID in frame.columns else pd.Series([None] * len(frame), dtype=object)
    ids = [value if isinstance(value, str) and value.strip() else new_request_id(moment) for value in given]
    return np.asarray(ids, dtype=object)


def _identity(artifact: Path) -> dict[str, str]:
    """``model_run_id`` and ``model_id`` from the MLmodel file of the model holding ``artifact``
    (the registered version is not known here: readers map run ids to versions)."""
    from mlflow.models import Model

    for folder in artifact.parents:
        if (folder / "MLmodel").is_file():
            meta = Model.load(folder / "MLmodel")
            return {MODEL_RUN_ID: meta.run_id or "", MODEL_ID: meta.model_id or ""}
    return {MODEL_RUN_ID: "", MODEL_ID: ""}


def signature(classes: list[str]):
    """No input schema (see the module docstring); the output columns and the log param."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    outputs = Schema([ColSpec("string", REQUEST_ID), ColSpec("string", PREDICTION), ColSpec("float", CONFIDENCE),
                      *[ColSpec("float", f"{PROBABILITY_PREFIX}{name}") for name in classes]])
    return ModelSignature(inputs=None, outputs=outputs, params=ParamSchema([ParamSpec(LOG_PARAM, "boolean", True)]))


def log_model(network, *, name: str = "model", pip_requirements: list[str] | None = None):
    """Log ``network`` (a ``RoadSceneNet`` on the CPU) wrapped in this file's model; returns the
    ``ModelInfo``. No input example: MLflow would run ``predict`` on it, and log a row."""
    import tempfile

    from projects.scenes import CLASS_NAMES, N_PIXELS, SUMMARY_COLUMNS

    requirements = pip_requirements or _requirements()
    with tempfile.TemporaryDirectory() as scratch:
        saved = Path(scratch) / NETWORK_ARTIFACT
        example = np.zeros((2, N_PIXELS), dtype=np.uint8)
        mlflow.pytorch.save_model(network, saved, serialization_format="pt2", input_example=example,
                                  pip_requirements=requirements)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=__file__,
            artifacts={NETWORK_ARTIFACT: str(saved)},
            model_config={"classes": list(CLASS_NAMES), "metadata": ["weather", "light", *SUMMARY_COLUMNS]},
            signature=signature(list(CLASS_NAMES)),
            pip_requirements=requirements,
        )


def _requirements() -> list[str]:
    """Pinned torch and mlflow, as the training process has them (else MLflow infers them by
    loading the model in a subprocess, seconds per logged model)."""
    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}", "numpy", "pandas", "pyarrow", "fsspec"]


mlflow.models.set_model(RoadScenesModel())
