"""Train the road-scenes CNN, log everything to MLflow, register the model.

Function::

    from projects.train import train
    from projects.train_config import Hyperparameters, TrainConfig, Tracking
    config = TrainConfig(Hyperparameters(epochs=10), Tracking(registered_model="road-scenes"))
    result = train("data/scenes/<hash>", config)
    result.run_id, result.model_uri, result.version, result.best_val_accuracy, result.epochs_run

The settings of a run are one ``TrainConfig`` (``projects.train_config``), built once by each
entry point: this module's CLI from its arguments, ``tune`` per trial, ``retrain`` for its train
step.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from projects.cli_types import whole_number
from projects.train_config import DEFAULT_REGISTERED_MODEL, Hyperparameters, Runtime, Tracking, TrainConfig

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

EpochCallback = Callable[[int, float, float], bool]


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
    train_set: tuple[torch.Tensor, torch.Tensor],
    val_set: tuple[torch.Tensor, torch.Tensor],
    hyperparameters: Hyperparameters,
    *,
    device=None,
    on_epoch: EpochCallback | None = None,
    log_epoch: Callable[[int, dict], None] | None = None,
    progress: bool | None = None,
) -> dict:
    """The training loop, without MLflow: AdamW, cosine learning rate, early stopping.

    ``train_set`` and ``val_set`` are ``(x, y)`` pairs: (n, 3072) uint8 pixels and int64 labels.
    Leaves the best weights in ``model`` (in eval mode) and returns ``{"history", "best_epoch",
    "best_val_loss", "best_val_accuracy", "epochs_run", "stop_reason"}``.
    """
    import copy

    import torch
    from tqdm.auto import tqdm

    device = device or pick_device()
    model.to(device)
    (x_train, y_train), (x_val, y_val) = ((x.to(device), y.to(device)) for x, y in (train_set, val_set))
    optimizer = torch.optim.AdamW(model.parameters(), lr=hyperparameters.lr, weight_decay=hyperparameters.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hyperparameters.epochs)
    generator = torch.Generator(device="cpu").manual_seed(hyperparameters.seed)
    stopper = EarlyStopping(hyperparameters.patience)
    best_state, best_accuracy = copy.deepcopy(model.state_dict()), float("nan")
    history: list[dict] = []
    stop_reason = "epochs"

    bar = tqdm(range(hyperparameters.epochs), desc="train", unit="epoch", disable=None if progress is None else not progress)
    for epoch in bar:
        started = time.perf_counter()
        train_loss = _train_one_epoch(model, (x_train, y_train), optimizer, generator, hyperparameters)
        scheduler.step()
        val_loss, val_accuracy, _ = loss_accuracy_predictions(model, x_val, y_val)
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy,
                   "epoch_seconds": time.perf_counter() - started}
        history.append({"epoch": epoch, **metrics})
        if log_epoch is not None:
            log_epoch(epoch, metrics)
        if stopper.step(epoch, val_loss):
            best_state, best_accuracy = copy.deepcopy(model.state_dict()), val_accuracy
        bar.set_postfix(train_loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_accuracy:.3f}")
        if on_epoch is not None and on_epoch(epoch, val_loss, val_accuracy):
            stop_reason = "callback"
            break
        if stopper.should_stop:
            stop_reason = "patience"
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_epoch": stopper.best_epoch, "best_val_loss": stopper.best,
            "best_val_accuracy": best_accuracy, "epochs_run": len(history), "stop_reason": stop_reason}


def _train_one_epoch(model, train_set, optimizer, generator, hyperparameters: Hyperparameters) -> float:
    """One pass over ``train_set`` in an order drawn from ``generator`` (so a seed fixes it), each
    image flipped left-right with probability 1/2 when ``hflip``; returns the mean training loss.
    The flips are drawn even without ``hflip``, so switching it off leaves the order unchanged."""
    import torch
    import torch.nn.functional as F

    x, y = train_set
    n = len(x)
    model.train()
    order = torch.randperm(n, generator=generator).to(x.device)
    flips = torch.rand(n, generator=generator).to(x.device) < 0.5
    total_loss = 0.0
    for start in range(0, n, hyperparameters.batch_size):
        idx = order[start : start + hyperparameters.batch_size]
        xb = x[idx].reshape(-1, 3, 32, 32)
        if hyperparameters.hflip:
            xb = torch.where(flips[idx].view(-1, 1, 1, 1), xb.flip(3), xb)
        loss = F.cross_entropy(model.logits(xb), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(idx)
    return total_loss / n


def loss_accuracy_predictions(model, x, y, batch_size: int = 1024) -> tuple[float, float, Any]:
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


@dataclass(frozen=True)
class _Table:
    """A validated scenes table and its train/validation split: what one training run reads."""

    frame: pd.DataFrame
    source: str
    manifest: dict | None  # the data-set version's, when the table is a stored version
    x: np.ndarray
    y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray

    def tensors(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        return torch.from_numpy(self.x[idx]), torch.from_numpy(self.y[idx])


def _load(data: str | os.PathLike | pd.DataFrame, tracking: Tracking, hyperparameters: Hyperparameters) -> _Table:
    """Read and check the table before any run exists, so bad data leaves nothing behind."""
    import numpy as np
    import pandas as pd

    from projects.datasets import load_table
    from projects.scenes import pixels, validate

    manifest = None
    if isinstance(data, pd.DataFrame):
        frame, source = data, tracking.source or "in-memory"
    else:
        source, manifest = resolve_data(data)
        frame = load_table(source)
    validate(frame)
    y = frame["label"].to_numpy(dtype=np.int64)
    train_idx, val_idx = _split(y, hyperparameters.val_fraction, hyperparameters.seed)
    return _Table(frame, source, manifest, pixels(frame), y, train_idx, val_idx)


@contextmanager
def _reproducible_torch(runtime: Runtime, seed: int) -> Iterator[tuple[torch.device, int]]:
    """Threads, deterministic kernels and seeds for one run; yields (device, threads). The process's
    previous torch settings come back afterwards: tune trains many times in one process, and
    whoever called train keeps the settings it had."""
    import torch

    threads = runtime.num_threads or default_num_threads()
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed for deterministic cuBLAS
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        device = pick_device(runtime.device)
        seed_everything(seed)
        yield device, threads
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        torch.backends.cudnn.benchmark = previous_benchmark


def _log_inputs(config: TrainConfig, table: _Table, device: torch.device, threads: int) -> str:
    """Params, the dataset input and the data-set manifest; returns the table's content hash."""
    import mlflow

    from projects.datasets import log_dataset_input

    mlflow.log_params(
        {
            **asdict(config.hyperparameters),
            "optimizer": "AdamW",
            "lr_schedule": "cosine",
            "n_train": len(table.train_idx),
            "n_val": len(table.val_idx),
            "device": device.type,
            "num_threads": threads,
            "registered_model": config.tracking.model_name or "",
        }
    )
    logged = log_dataset_input(table.frame, source=table.source, name=config.tracking.dataset_name, context="training")
    if table.manifest is not None:
        mlflow.log_dict(table.manifest, "data/manifest.json")
    return logged.content_hash


def _log_outcome(model, outcome: dict, table: _Table) -> None:
    """The best epoch's figures and the restored weights' recall per class on the validation rows."""
    import mlflow

    from projects.scenes import CLASS_NAMES

    _, _, val_pred = loss_accuracy_predictions(model, *table.tensors(table.val_idx))
    y_val, val_pred = table.y[table.val_idx], val_pred.numpy()
    recalls = {
        f"val_recall_{name}": float((val_pred[y_val == k] == k).mean())
        for k, name in enumerate(CLASS_NAMES)
        if (y_val == k).any()
    }
    best = {key: outcome[key] for key in ("best_val_loss", "best_val_accuracy", "best_epoch", "epochs_run")}
    mlflow.log_metrics({**best, **recalls})
    mlflow.set_tag("stop_reason", outcome["stop_reason"])


def _log_model(model, tracking: Tracking) -> tuple[str, int | None]:
    """Log the served model, the network wrapped so that it logs what production sees
    (``projects.serving``), and register a version when ``tracking`` names a registered model."""
    import mlflow

    from projects import serving

    info = serving.log_model(model)
    if not tracking.model_name:
        return info.model_uri, None
    return info.model_uri, int(mlflow.register_model(info.model_uri, tracking.model_name).version)


def train(
    data: str | os.PathLike | pd.DataFrame,
    config: TrainConfig = TrainConfig(),
    *,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train on ``data`` (a scenes table, a path/URI to one, or a data-set version directory).

    Invalid hyperparameters and data fail before any run is created. ``on_epoch`` is a hook, not a
    setting (tune's pruner); see the module docstring for it and for what is logged.
    """
    hyperparameters = config.hyperparameters.validate()
    tracking = config.tracking

    import mlflow

    from projects.datasets import DataError
    from projects.model import RoadSceneNet
    from projects.run_scope import child_run

    table = _load(data, tracking, hyperparameters)
    if mlflow.active_run() is None and tracking.experiment and not os.environ.get("MLFLOW_RUN_ID"):
        mlflow.set_experiment(tracking.experiment)
    with _reproducible_torch(config.runtime, hyperparameters.seed) as (device, threads), \
            child_run(tracking.run_name, error=DataError) as run:
        data_hash = _log_inputs(config, table, device, threads)
        model = RoadSceneNet(width=hyperparameters.width, dropout=hyperparameters.dropout)
        outcome = fit(
            model,
            table.tensors(table.train_idx),
            table.tensors(table.val_idx),
            hyperparameters,
            device=device,
            on_epoch=on_epoch,
            log_epoch=lambda epoch, metrics: mlflow.log_metrics(metrics, step=epoch),
            progress=config.runtime.progress,
        )
        model.cpu().eval()
        _log_outcome(model, outcome, table)
        model_uri, version = _log_model(model, tracking) if tracking.log_model else (None, None)

    return TrainResult(
        run_id=run.info.run_id,
        model_uri=model_uri,
        version=version,
        best_val_accuracy=outcome["best_val_accuracy"],
        epochs_run=outcome["epochs_run"],
        best_val_loss=outcome["best_val_loss"],
        best_epoch=outcome["best_epoch"],
        stop_reason=outcome["stop_reason"],
        registered_model=tracking.model_name if version is not None else None,
        data_hash=data_hash,
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
    """Every parameter of a training run, one option each: the command line is the entry point's
    public surface (MLproject's ``train`` and ``mlflow run -P`` name them). Each option's ``dest``
    is its field's name, so ``config_from_args`` moves the values into a TrainConfig in one place."""
    d = Hyperparameters()
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
    p.add_argument("--no-hflip", dest="hflip", action="store_false", help="no random horizontal flips")
    p.add_argument("--experiment", default=None, help="MLflow experiment (when not run inside another run)")
    p.add_argument("--run-name", default="train")
    p.add_argument("--device", type=_device_arg, default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")
    p.add_argument("--num-threads", type=_type(whole_number, lambda v: v >= 1, "an integer >= 1"), default=None, help="torch CPU threads (default: available cores)")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None, help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The command line's values as the run's TrainConfig (built here only)."""
    return TrainConfig(
        Hyperparameters(**{f.name: getattr(args, f.name) for f in fields(Hyperparameters)}),
        Tracking(
            registered_model=None if args.no_register else args.registered_model,
            experiment=args.experiment,
            run_name=args.run_name,
        ),
        Runtime(device=args.device, num_threads=args.num_threads, progress=args.progress),
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from projects.datasets import DataError

    try:
        result = train(args.data, config_from_args(args))
    except DataError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
