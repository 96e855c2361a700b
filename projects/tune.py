"""``tune``: an optuna study over the training hyperparameters, every trial a nested MLflow run.

The study's run is the parent; each trial is a child run with its params, per-epoch metrics and
a ``trial_state`` tag (COMPLETE or PRUNED), so the MLflow UI shows what was tried and what the
median pruner cut short. With an RDB storage (``postgresql+psycopg2://…``, ``sqlite:///…``) several
``tune`` processes, on one machine or many, work on one study at once: optuna hands each a trial.
The best parameters feed ``train`` (``retrain`` does that).

``python -m projects.tune [--data PATH] [--trials 30] [--storage URL] [--study NAME]``; without
``--data``, the training set ``retrain`` builds (same ``--mix``, ``--train-size``, ``--seed``, in
``--data-dir``), so what is tuned is what ``retrain`` trains on.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from projects.cli_types import integer_at_least
from projects.train import resolve_data, train
from projects.train_config import Hyperparameters, Runtime, Tracking, TrainConfig
from registry_hooks.contract import TAG_TUNE_BEST_PARAMS

SEARCH_SPACE = {
    "lr": ("float_log", 3e-4, 1e-2),
    "width": ("int_choice", (8, 12, 16, 24)),
    "dropout": ("float", 0.0, 0.4),
    "weight_decay": ("float_log", 1e-6, 1e-3),
    "batch_size": ("int_choice", (64, 128, 256)),
}


@dataclass(frozen=True)
class TuneConfig:
    """One study and this process's share of it.

    ``trials`` is how many trials this process runs (others sharing ``storage``, an optuna RDB URL,
    add theirs; None or ``''`` keeps the study in memory). ``base`` is every trial's starting point:
    the trial replaces the ``SEARCH_SPACE`` hyperparameters and keeps the rest, its ``epochs`` (the
    pruner may stop earlier) and its ``seed``, which also seeds the sampler.
    """

    study_name: str = "road-scenes"
    trials: int = 10
    storage: str | None = None
    timeout: float | None = None
    base: Hyperparameters = field(default_factory=lambda: Hyperparameters(epochs=6))


@dataclass(frozen=True)
class TuneResult:
    run_id: str
    study_name: str
    best_params: dict[str, Any]
    best_value: float
    n_trials: int
    n_pruned: int


def _suggest(trial, name: str, spec: tuple) -> Any:
    kind = spec[0]
    if kind == "float_log":
        return trial.suggest_float(name, spec[1], spec[2], log=True)
    if kind == "float":
        return trial.suggest_float(name, spec[1], spec[2])
    return trial.suggest_categorical(name, list(spec[1]))


def _storage(url: str | None):
    """In memory by default; an optuna RDB URL (SQLite, PostgreSQL) for studies shared by processes."""
    if not url:
        return None
    import optuna

    if not url.startswith(("sqlite:", "postgresql", "mysql")):
        raise ValueError(f"storage must be an optuna RDB URL (sqlite:///…, postgresql+psycopg2://…), got {url!r}")
    # Processes started together race to create optuna's schema; the loser finds it made.
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120)
        except Exception:  # noqa: BLE001 - e.g. "type studydirection already exists"
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))


class _Objective:
    """A trial: train once with the sampled hyperparameters, as a child run of the study's run;
    report each epoch's validation accuracy to optuna and stop when its pruner says so."""

    def __init__(self, frame: pd.DataFrame, source: str, base: Hyperparameters):
        import mlflow

        self.frame, self.source, self.base = frame, source, base
        self.client = mlflow.MlflowClient()
        self.pruned = 0

    def config(self, trial) -> TrainConfig:
        """The trial's training run: sampled values over ``base``, no model logged or registered."""
        sampled = {name: _suggest(trial, name, spec) for name, spec in SEARCH_SPACE.items()}
        return TrainConfig(
            replace(self.base, **sampled),
            Tracking(registered_model=None, log_model=False, source=self.source, run_name=f"trial {trial.number}"),
            Runtime(progress=False),
        )

    def __call__(self, trial) -> float:
        import optuna

        def report(epoch: int, val_loss: float, val_accuracy: float) -> bool:
            trial.report(val_accuracy, epoch)
            return trial.should_prune()

        result = train(self.frame, self.config(trial), on_epoch=report)
        state = "PRUNED" if result.stop_reason == "callback" else "COMPLETE"
        self.client.set_tag(result.run_id, "optuna.trial_number", str(trial.number))
        self.client.set_tag(result.run_id, "trial_state", state)
        if state == "PRUNED":
            self.pruned += 1
            raise optuna.TrialPruned()
        return result.best_val_accuracy


def _table(data: str | pd.DataFrame, source: str | None) -> tuple[pd.DataFrame, str]:
    """The table and its source, read once for all trials."""
    if isinstance(data, pd.DataFrame):
        return data, source or "in-memory"
    from projects.datasets import load_table

    source = resolve_data(data)[0]
    return load_table(source), source


def tune(data: str | pd.DataFrame, config: TuneConfig = TuneConfig(), *, source: str | None = None) -> TuneResult:
    """Run ``config.trials`` trials of the study (more may run in other processes sharing its storage).

    ``source`` names where an in-memory DataFrame came from (see ``Tracking.source``).
    """
    import mlflow
    import optuna

    from projects.run_scope import child_run

    if config.trials < 1 or config.base.epochs < 1:
        raise ValueError(f"trials and epochs must be >= 1, got trials={config.trials}, epochs={config.base.epochs}")
    rdb = _storage(config.storage)  # a bad URL fails before any data is read
    frame, source = _table(data, source)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=config.study_name, storage=rdb, load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=config.base.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    objective = _Objective(frame, source, config.base)
    # Under `mlflow run` a child of the project's run, whose params (storage="") would clash with these.
    with child_run(f"tune {config.study_name}", error=ValueError) as parent:
        mlflow.log_params({"study": config.study_name, "trials": config.trials, "epochs": config.base.epochs,
                           "storage": config.storage or "memory", "seed": config.base.seed})
        # train() logs into a child of the study's run: one nested run per trial.
        study.optimize(objective, n_trials=config.trials, timeout=config.timeout, catch=())
        best = study.best_trial
        mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
        mlflow.log_metric("best_val_accuracy", best.value)
        mlflow.set_tag(TAG_TUNE_BEST_PARAMS, str(best.params))
    return TuneResult(parent.info.run_id, config.study_name, dict(best.params), float(best.value), config.trials,
                      objective.pruned)


def _data(args: argparse.Namespace) -> str:
    """``--data``, or when empty the training set ``retrain`` would build with the same mix, size and
    seed (generated into ``--data-dir`` the first time): what a newcomer's ``mlflow run . -e tune`` tunes."""
    if args.data:
        return args.data
    from projects.scenes import training_version

    path, manifest = training_version(args.data_dir, args.mix, args.train_size, args.seed)
    print(f"tune: no --data: using the training set retrain builds, {path} ({manifest['n']} {args.mix} scenes)",
          file=sys.stderr)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    from projects.scenes import mix_name

    # One option per MLproject parameter: the entry point's public surface. The study's values reach
    # tune only through the TuneConfig built below (the data ones pick the table, see _data).
    parser = argparse.ArgumentParser(prog="tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="", help="scenes table or data-set version directory (default: retrain's "
                        "training set for --mix, --train-size and --seed, kept in --data-dir)")
    parser.add_argument("--data-dir", default="data", help="where the default training set is kept (as retrain's)")
    parser.add_argument("--mix", type=mix_name, default="summer", help="mix of the default training set")
    parser.add_argument("--train-size", type=integer_at_least(100), default=8000, help="rows of the default training set")
    parser.add_argument("--trials", type=integer_at_least(1), default=10)
    parser.add_argument("--epochs", type=integer_at_least(1), default=6, help="epochs per trial (the pruner may stop earlier)")
    parser.add_argument("--storage", default="", help="optuna RDB URL to share the study between processes")
    parser.add_argument("--study", default="road-scenes")
    parser.add_argument("--seed", type=integer_at_least(0), default=0, help="sampler and training seed (and the default data's)")
    args = parser.parse_args(argv)
    config = TuneConfig(study_name=args.study, trials=args.trials, storage=args.storage or None,
                        base=Hyperparameters(epochs=args.epochs, seed=args.seed))
    try:
        result = tune(_data(args), config)
    except (ValueError, OSError) as exc:
        print(f"tune: {exc}", file=sys.stderr)
        return 2
    print(f"best val_accuracy {result.best_value:.4f} with {result.best_params} "
          f"({result.n_trials} trials here, {result.n_pruned} pruned)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
