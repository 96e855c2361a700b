"""Predictions a registered model made, written by the real inference-log writer.

For the tests of what reads the log through the gate (feedback, mining): a model with one
version made by a real run, and ``n`` logged predictions of that version with ids the model made
(``<hour>-<uuid>``) and ids a caller chose, with the metadata columns mining slices on.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import numpy as np
from mlflow import MlflowClient

from projects.inference_log import Batch, LogConfig, Writer
from registry_hooks.inference_records import new_request_id

CLASSES = ("orange_cone", "green_cone", "pedestrian", "nothing")


@dataclass
class Traffic:
    """A registered model with one version, and the predictions it made."""

    name: str
    run_id: str
    ids: list[str]  # made by the model: the hour prefix
    caller_ids: list[str]  # the caller's own
    predicted: list[str]  # the class predicted for ids + caller_ids, in that order


def register(url: str, name: str) -> str:
    """A model with one version made by a real run; the run's id."""
    client = MlflowClient(url, registry_uri=url)
    experiment = client.get_experiment_by_name("traffic")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("traffic")
    run_id = client.create_run(experiment_id).info.run_id
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    return run_id


def predictions(url: str, log_root: str, name: str, n: int = 6, caller_ids: int = 2, seed: int = 0) -> Traffic:
    """Register ``name`` on the server at ``url`` and log ``n + caller_ids`` of its predictions
    under ``log_root`` (the folder the server reads as ``GATEKEEPER_INFERENCE_LOG``)."""
    run_id = register(url, name)
    now = dt.datetime.now(dt.timezone.utc)
    total = n + caller_ids
    ids = [new_request_id(now) for _ in range(n)]
    callers = [f"order-{uuid.uuid4().hex[:10]}" for _ in range(caller_ids)]
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), size=total)
    predicted = np.asarray(CLASSES, dtype=object)[probabilities.argmax(1)]
    columns = {"request_id": np.asarray(ids + callers, dtype=object), "prediction": predicted,
               "confidence": probabilities.max(1), **{f"p_{c}": probabilities[:, k] for k, c in enumerate(CLASSES)},
               "weather": rng.choice(np.asarray(["clear", "rain", "fog"], dtype=object), total),
               "light": rng.choice(np.asarray(["day", "night"], dtype=object), total)}
    writer = Writer(LogConfig(log_root))
    writer.submit(Batch(now, columns, rng.integers(0, 256, (total, 8), dtype=np.uint8),
                        {"model_run_id": run_id, "model_id": ""}))
    writer.close()
    return Traffic(name, run_id, ids, callers, list(predicted))
