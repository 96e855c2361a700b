"""The settings of one training run: a ``TrainConfig`` of three frozen parts.

``Hyperparameters`` decide the network: all are logged as params, ``fit`` reads them, tune's
trials vary them. ``Tracking`` says where the run, its dataset input and its model go in MLflow.
``Runtime`` is how the run executes (device, threads, progress bar), not what it learns.

Each entry point builds one config, once: ``python -m projects.train`` from its arguments
(``projects.train.config_from_args``), ``tune`` for each trial from its study's base
hyperparameters and the sampled values, ``retrain`` for its train step. This module imports
nothing heavy, so they can build configs without loading torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_REGISTERED_MODEL = "road-scenes"
DATASET_NAME = "road-scenes"


@dataclass(frozen=True)
class Hyperparameters:
    """What decides the trained network, all logged as params; ``validate`` says what is wrong with a value."""

    epochs: int = 12
    lr: float = 3e-3
    batch_size: int = 128
    width: int = 16
    dropout: float = 0.2
    weight_decay: float = 1e-4
    patience: int = 3
    val_fraction: float = 0.15
    seed: int = 0
    hflip: bool = True

    def validate(self) -> Hyperparameters:
        problems = []

        def integer(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                problems.append(f"{name} must be an integer >= {minimum}, got {value!r}")

        def number(name: str, ok: Callable[[float], bool], what: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                problems.append(f"{name} must be {what}, got {value!r}")

        integer("epochs", 1)
        integer("batch_size", 1)
        integer("width", 1)
        integer("patience", 0)
        integer("seed", 0)
        number("lr", lambda v: v > 0, "> 0")
        number("dropout", lambda v: 0 <= v < 1, "in [0, 1)")
        number("weight_decay", lambda v: v >= 0, ">= 0")
        number("val_fraction", lambda v: 0 < v < 1, "in (0, 1)")
        if not isinstance(self.hflip, bool):
            problems.append(f"hflip must be a bool, got {self.hflip!r}")
        if problems:
            raise ValueError("invalid training parameters: " + "; ".join(problems))
        return self


@dataclass(frozen=True)
class Tracking:
    """Where a training run goes in MLflow.

    ``registered_model`` None or blank registers no version; ``log_model=False`` logs no model at
    all (tuning trials); ``experiment`` is only used when no run is active; ``source`` names where
    an in-memory DataFrame came from, logged with the dataset input (a path or a URI MLflow's
    dataset sources resolve: ``s3://``, ``runs:/``...; default ``in-memory``), and is ignored for a
    path, which is its own source.
    """

    registered_model: str | None = DEFAULT_REGISTERED_MODEL
    log_model: bool = True
    experiment: str | None = None
    run_name: str | None = "train"
    dataset_name: str = DATASET_NAME
    source: str | None = None

    @property
    def model_name(self) -> str | None:
        """The registered model to add a version to, None for none (``''`` from a command line)."""
        name = self.registered_model
        return name if name is not None and str(name).strip() else None


@dataclass(frozen=True)
class Runtime:
    """How the run executes, not what it learns: ``device`` None or ``auto`` is CUDA when available;
    ``num_threads`` None is the cores this process may use; ``progress`` None lets tqdm decide
    (a bar on a terminal only)."""

    device: str | None = None
    num_threads: int | None = None
    progress: bool | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``train`` needs besides the data (see the module docstring)."""

    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    tracking: Tracking = field(default_factory=Tracking)
    runtime: Runtime = field(default_factory=Runtime)
