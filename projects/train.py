"""Train the road-scenes CNN, log everything to MLflow, register the model.

Function::

    from projects.train import train
    result = train("data/scenes/<hash>", registered_model="road-scenes", epochs=10)
    result.run_id, result.model_uri, result.version, result.best_val_accuracy, result.epochs_run

CLI (an MLflow Projects entry point; prints the result as JSON on stdout)::

    python -m projects.train --data data/scenes/<hash>/data.parquet [--registered-model NAME]
        [--no-register] [--epochs N] [--lr X] [--batch-size N] [--width N] [--dropout X]
        [--weight-decay X] [--patience N] [--val-fraction X] [--seed N] ...

What a training run records: every hyperparameter and the split sizes as params; per epoch
``train_loss``, ``val_loss``, ``val_accuracy`` (``step`` = epoch, counted from 0); at the end
``best_val_loss``, ``best_val_accuracy``, ``best_epoch``, ``epochs_run`` and
``val_recall_<class>`` of the restored best weights; the training table as a dataset input
(context ``training``, full content hash tag, see ``projects.datasets``); the data-set manifest
as ``data/manifest.json`` when the table is a stored version; the model (``name="model"``,
``pt2`` format, see ``projects.model``) and, unless ``registered_model`` is None, a new version
of that registered model.

Run nesting (``projects.run_scope``): inside an active MLflow run (``retrain``, ``tune``) the
training run is a nested child in the parent's experiment; under ``mlflow run`` a child of the
project's run (``MLFLOW_RUN_ID``), whose params are the command line's as typed (``lr=1e-3``) and
would clash with the ones logged here (``0.001``); otherwise a new run.

Early stopping watches ``val_loss`` with ``patience`` epochs and restores the best weights.
``on_epoch(epoch, val_loss, val_accuracy) -> bool`` is called after each epoch; returning True
stops training there (e.g. an optuna pruner said so); an exception it raises propagates and
the run ends FAILED, with no model logged.

torch, mlflow and the model are imported inside the functions, so the CLI rejects bad arguments
in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from projects.cli_types import whole_number

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_REGISTERED_MODEL = "road-scenes"
DATASET_NAME = "road-scenes"
EpochCallback = Callable[[int, float, float], bool]


@dataclass(frozen=True)
class TrainConfig:
    """All hyperparameters of a training run; ``validate`` says what is wrong with a value."""

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

    def validate(self) -> TrainConfig:
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
class TrainResult:
    run_id: str
    model_uri: str | None  # None when log_model=False
    version: int | None  # registered model version, None when not registered
    best_val_accuracy: float
    epochs_run: int
    best_val_loss: float = float("nan")
    best_epoch: int = 0
    stop_reason: str = "epochs"  # "epochs", "patience" or "callback"
    registered_model: str | None = None
    data_hash: str = ""
    history: list[dict] = field(default_factory=list, repr=False, compare=False)
    model: Any = field(default=None, repr=False, compare=False)  # the trained RoadSceneNet, on the CPU

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("history", "model")}


class EarlyStopping:
    """Stop once ``patience`` epochs in a row brought no new lowest ``val_loss`` (by more than
    ``min_delta``), as Keras counts: patience 0 stops at the first epoch that does not improve."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.best_epoch = -1
        self.bad_epochs = 0

    def step(self, epoch: int, value: float) -> bool:
        """Record an epoch's value; True when it is the best so far."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs > 0 and self.bad_epochs >= self.patience


def resolve_data(data: str | os.PathLike) -> tuple[str, dict | None]:
    """The table a ``--data`` value names, and its manifest if it is a stored version.

    A data-set version directory (or its manifest) means its ``data.parquet``.
    """
    from projects.datasets import MANIFEST_FILE, is_local, local_table_path

    data = os.fspath(data)
    if not is_local(data):
        return data, None
    path = Path(local_table_path(data))
    manifest_path = path.parent / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    return str(path.resolve()), manifest


def _split(labels, val_fraction: float, seed: int):
    """Stratified train/validation indices: each class contributes ``val_fraction`` of its rows
    (at least one when it has two or more), so rare classes are validated too."""
    import numpy as np

    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        k = int(round(val_fraction * len(rows)))
        k = min(max(k, 1 if len(rows) > 1 else 0), len(rows) - 1)
        val_idx.append(rows[:k])
        train_idx.append(rows[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def pick_device(device: str | None = None):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_num_threads() -> int:
    """The CPUs this process may use (2 on the team's machines); more threads than cores only
    adds contention for a network this small."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too


def fit(
    model,
    x_train,
    y_train,
    x_val,
    y_val,
    config: TrainConfig,
    *,
    device=None,
    on_epoch: EpochCallback | None = None,
    log_epoch: Callable[[int, dict], None] | None = None,
    progress: bool | None = None,
) -> dict:
    """The training loop, without MLflow: AdamW, cosine learning rate, early stopping.

    ``x_*`` are (n, 3072) uint8 tensors, ``y_*`` int64 label tensors. Leaves the best weights in
    ``model`` (in eval mode) and returns ``{"history", "best_epoch", "best_val_loss",
    "best_val_accuracy", "epochs_run", "stop_reason"}``.
    """
    import copy

    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    device = device or pick_device()
    model.to(device)
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_val, y_val = x_val.to(device), y_val.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    stopper = EarlyStopping(config.patience)
    best_state, best_accuracy = copy.deepcopy(model.state_dict()), float("nan")
    history: list[dict] = []
    stop_reason = "epochs"
    n = len(x_train)

    bar = tqdm(range(config.epochs), desc="train", unit="epoch", disable=None if progress is None else not progress)
    for epoch in bar:
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        flips = torch.rand(n, generator=generator).to(device) < 0.5
        total_loss = 0.0
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            xb = x_train[idx].reshape(-1, 3, 32, 32)
            if config.hflip:
                xb = torch.where(flips[idx].view(-1, 1, 1, 1), xb.flip(3), xb)
            loss = F.cross_entropy(model.logits(xb), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
        scheduler.step()
        val_loss, val_accuracy, _ = evaluate(model, x_val, y_val)
        metrics = {
            "train_loss": total_loss / n,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "epoch_seconds": time.perf_counter() - started,
        }
        history.append({"epoch": epoch, **metrics})
        if log_epoch is not None:
            log_epoch(epoch, metrics)
        if stopper.step(epoch, val_loss):
            best_state, best_accuracy = copy.deepcopy(model.state_dict()), val_accuracy
        bar.set_postfix(train_loss=f"{metrics['train_loss']:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_accuracy:.3f}")
        if on_epoch is not None and on_epoch(epoch, val_loss, val_accuracy):
            stop_reason = "callback"
            break
        if stopper.should_stop:
            stop_reason = "patience"
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return {
        "history": history,
        "best_epoch": stopper.best_epoch,
        "best_val_loss": stopper.best,
        "best_val_accuracy": best_accuracy,
        "epochs_run": len(history),
        "stop_reason": stop_reason,
    }


def evaluate(model, x, y, batch_size: int = 1024) -> tuple[float, float, Any]:
    """Mean cross-entropy, accuracy and predicted labels of ``model`` on (x, y)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    loss, preds = 0.0, []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model.logits(x[start : start + batch_size])
            loss += F.cross_entropy(logits, y[start : start + batch_size], reduction="sum").item()
            preds.append(logits.argmax(dim=1))
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=y.device)
    return loss / max(len(x), 1), (pred == y).float().mean().item() if len(x) else float("nan"), pred


def model_signature():
    """uint8 (-1, 3072) pixels in, float32 (-1, 4) class probabilities out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    from projects.scenes import CLASS_NAMES, N_PIXELS

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, N_PIXELS))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(CLASS_NAMES)))]),
    )


def train(
    data: str | os.PathLike | pd.DataFrame,
    *,
    registered_model: str | None = DEFAULT_REGISTERED_MODEL,
    epochs: int = TrainConfig.epochs,
    lr: float = TrainConfig.lr,
    batch_size: int = TrainConfig.batch_size,
    width: int = TrainConfig.width,
    dropout: float = TrainConfig.dropout,
    weight_decay: float = TrainConfig.weight_decay,
    patience: int = TrainConfig.patience,
    val_fraction: float = TrainConfig.val_fraction,
    seed: int = TrainConfig.seed,
    hflip: bool = TrainConfig.hflip,
    source: str | None = None,
    dataset_name: str = DATASET_NAME,
    experiment: str | None = None,
    run_name: str | None = "train",
    on_epoch: EpochCallback | None = None,
    log_model: bool = True,
    device: str | None = None,
    num_threads: int | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train on ``data`` (a scenes table, a path/URI to one, or a data-set version directory).

    ``source`` names where an in-memory DataFrame came from, logged with the dataset input: a
    path or a URI MLflow's dataset sources resolve (``s3://``, ``runs:/``...), default
    ``in-memory``;
    ``experiment`` is only used when no run is active; ``log_model=False`` skips logging and
    registering the model (for tuning trials). See the module docstring for what is logged.
    """
    config = TrainConfig(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        width=width,
        dropout=dropout,
        weight_decay=weight_decay,
        patience=patience,
        val_fraction=val_fraction,
        seed=seed,
        hflip=hflip,
    ).validate()
    if registered_model is not None and not str(registered_model).strip():
        registered_model = None

    import mlflow
    import numpy as np
    import pandas as pd
    import torch

    from projects.datasets import DataError, load_table, log_dataset_input
    from projects.model import RoadSceneNet
    from projects.run_scope import child_run
    from projects.scenes import CLASS_NAMES, pixels, validate

    manifest = None
    if isinstance(data, pd.DataFrame):
        df = data
        source = source or "in-memory"
    else:
        source, manifest = resolve_data(data)
        df = load_table(source)
    validate(df)
    x_all = pixels(df)
    y_all = df["label"].to_numpy(dtype=np.int64)
    train_idx, val_idx = _split(y_all, config.val_fraction, config.seed)

    threads = num_threads or default_num_threads()
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed for deterministic cuBLAS
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    device_ = pick_device(device)
    seed_everything(config.seed)

    if mlflow.active_run() is None and experiment and not os.environ.get("MLFLOW_RUN_ID"):
        mlflow.set_experiment(experiment)
    try:
        with child_run(run_name, error=DataError) as run:
            mlflow.log_params(
                {
                    **asdict(config),
                    "optimizer": "AdamW",
                    "lr_schedule": "cosine",
                    "n_train": len(train_idx),
                    "n_val": len(val_idx),
                    "device": device_.type,
                    "num_threads": threads,
                    "registered_model": registered_model or "",
                }
            )
            logged = log_dataset_input(df, source=source, name=dataset_name, context="training")
            if manifest is not None:
                mlflow.log_dict(manifest, "data/manifest.json")

            model = RoadSceneNet(width=config.width, dropout=config.dropout)
            outcome = fit(
                model,
                torch.from_numpy(x_all[train_idx]),
                torch.from_numpy(y_all[train_idx]),
                torch.from_numpy(x_all[val_idx]),
                torch.from_numpy(y_all[val_idx]),
                config,
                device=device_,
                on_epoch=on_epoch,
                log_epoch=lambda epoch, metrics: mlflow.log_metrics(metrics, step=epoch),
                progress=progress,
            )
            model.cpu().eval()
            _, _, val_pred = evaluate(model, torch.from_numpy(x_all[val_idx]), torch.from_numpy(y_all[val_idx]))
            y_val = y_all[val_idx]
            val_pred = val_pred.numpy()
            recalls = {
                f"val_recall_{name}": float((val_pred[y_val == k] == k).mean())
                for k, name in enumerate(CLASS_NAMES)
                if (y_val == k).any()
            }
            mlflow.log_metrics(
                {
                    "best_val_loss": outcome["best_val_loss"],
                    "best_val_accuracy": outcome["best_val_accuracy"],
                    "best_epoch": outcome["best_epoch"],
                    "epochs_run": outcome["epochs_run"],
                    **recalls,
                }
            )
            mlflow.set_tag("stop_reason", outcome["stop_reason"])

            model_uri, version = None, None
            if log_model:
                info = mlflow.pytorch.log_model(
                    model,
                    name="model",
                    signature=model_signature(),
                    input_example=x_all[val_idx[:2]] if len(val_idx) >= 2 else x_all[:2],
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "pandas"],
                )
                model_uri = info.model_uri
                if registered_model:
                    version = int(mlflow.register_model(model_uri, registered_model).version)
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        torch.backends.cudnn.benchmark = previous_benchmark

    return TrainResult(
        run_id=run.info.run_id,
        model_uri=model_uri,
        version=version,
        best_val_accuracy=outcome["best_val_accuracy"],
        epochs_run=outcome["epochs_run"],
        best_val_loss=outcome["best_val_loss"],
        best_epoch=outcome["best_epoch"],
        stop_reason=outcome["stop_reason"],
        registered_model=registered_model if version is not None else None,
        data_hash=logged.content_hash,
        history=outcome["history"],
        model=model,
    )


# --------------------------------------------------------------------------------------------
# CLI


def _type(convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if isinstance(value, float) and not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def _device_arg(text: str) -> str:
    kind, _, index = text.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use auto, cpu, cuda, cuda:N or mps")
    return text


def _data_arg(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("empty path")
    from projects.datasets import is_local

    if is_local(text):
        path = Path(urlparse(text).path if text.startswith("file:") else text)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"data file not found: {text}")
    return text


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m projects.train",
        description="Train the road-scenes CNN on a scenes table, log it to MLflow and register it.",
    )
    p.add_argument("--data", required=True, type=_data_arg, help="scenes table (.parquet/.csv path or URI) or a data-set version directory")
    p.add_argument("--registered-model", default=DEFAULT_REGISTERED_MODEL, help=f"registered model to add a version to (default {DEFAULT_REGISTERED_MODEL}; '' = none)")
    p.add_argument("--no-register", action="store_true", help="log the model but register no version")
    p.add_argument("--epochs", type=_type(whole_number, lambda v: v >= 1, "an integer >= 1"), default=d.epochs)
    p.add_argument("--lr", type=_type(float, lambda v: v > 0, "a number > 0"), default=d.lr)
    p.add_argument("--batch-size", type=_type(whole_number, lambda v: v >= 1, "an integer >= 1"), default=d.batch_size)
    p.add_argument("--width", type=_type(whole_number, lambda v: v >= 1, "an integer >= 1"), default=d.width, help="channels of the first conv block")
    p.add_argument("--dropout", type=_type(float, lambda v: 0 <= v < 1, "a number in [0, 1)"), default=d.dropout)
    p.add_argument("--weight-decay", type=_type(float, lambda v: v >= 0, "a number >= 0"), default=d.weight_decay)
    p.add_argument("--patience", type=_type(whole_number, lambda v: v >= 0, "an integer >= 0"), default=d.patience)
    p.add_argument("--val-fraction", type=_type(float, lambda v: 0 < v < 1, "a number in (0, 1)"), default=d.val_fraction)
    p.add_argument("--seed", type=_type(whole_number, lambda v: v >= 0, "an integer >= 0"), default=d.seed)
    p.add_argument("--no-hflip", action="store_true", help="no random horizontal flips")
    p.add_argument("--experiment", default=None, help="MLflow experiment (when not run inside another run)")
    p.add_argument("--run-name", default="train")
    p.add_argument("--device", type=_device_arg, default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")
    p.add_argument("--num-threads", type=_type(whole_number, lambda v: v >= 1, "an integer >= 1"), default=None, help="torch CPU threads (default: available cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from projects.datasets import DataError

    try:
        result = train(
            args.data,
            registered_model=None if args.no_register else args.registered_model,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            width=args.width,
            dropout=args.dropout,
            weight_decay=args.weight_decay,
            patience=args.patience,
            val_fraction=args.val_fraction,
            seed=args.seed,
            hflip=not args.no_hflip,
            experiment=args.experiment,
            run_name=args.run_name,
            device=args.device,
            num_threads=args.num_threads,
            progress=False if args.no_progress else None,
        )
    except DataError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
