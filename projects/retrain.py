"""``retrain``: the whole cycle in one command, every step a child run of the ``retrain`` run.

data-set versions → (tune) → train and register → drift of the current production window →
register the evaluation sets the policy requires → evaluate against production on each →
wait for the verifier → ask the gate to promote → summary. The promotion goes through the
gate (the server's, or on the embedded SQLite default an in-process gated store), so a cycle can
never promote what the gate would refuse. Exit status 0 means the pipeline ran, whatever the
verdict (the summary says which); non-zero means a step failed. Re-running is safe: data-set
versions are content-addressed, and the gate judges each new version on its own evidence.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator

from projects.cli_types import integer_at_least
from projects.train_config import Hyperparameters, Tracking, TrainConfig
from registry_hooks.contract import (
    DATASET_ENV,
    DRIFT_REPORT_PATH,
    POLICY_ENV,
    SET_DATA_PREFIX,
    STEP_ENV,
    STORE_URI_PREFIX,
    TAG_CANDIDATE_VERSION,
    TAG_DATASET_VERSION,
    TAG_PIPELINE_STEP,
    TAG_VERDICT,
    is_server_uri,
)

DEFAULT_POLICY = Path(__file__).with_name("road_scenes_policy.yaml")
DRIFT_COLUMNS = ["weather", "light", "img_brightness", "img_contrast", "img_saturation", "img_sharpness",
                 "img_mean_r", "img_mean_g", "img_mean_b"]
SLICES = ["weather", "light", "label_name"]
VERIFY_TIMEOUT_S = 600  # the verifier loads both models and re-scores a sample: seconds, not minutes


@dataclass(frozen=True)
class RetrainConfig:
    """What one cycle does: the retrain entry point's parameters, one field each (``data_dir``, where
    the content-addressed versions are kept, is an argument of ``retrain``: it changes no result).

    ``epochs`` and ``seed`` are the training run's and every tuning trial's (``hyperparameters``);
    ``seed`` also seeds the training set and the production window. ``tune_trials`` 0 skips tuning;
    ``tune_storage`` is an optuna RDB URL shared by several tune processes, ``''`` in memory.
    """

    registered_model: str = "road-scenes"
    mix: str = "summer"
    current: str = "summer"
    train_size: int = 8000
    eval_size: int = 3000
    window_size: int = 3000
    epochs: int = 15
    seed: int = 0
    tune_trials: int = 0
    tune_storage: str = ""

    def hyperparameters(self, **tuned) -> Hyperparameters:
        """What the train step trains with (``tuned``: the study's best values), and tuning starts from."""
        return Hyperparameters(epochs=self.epochs, seed=self.seed, **tuned)


@dataclass
class CycleResult:
    run_id: str
    version: str | None = None
    verdict: str = "not reached"
    reasons: list[str] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    report_uri: str | None = None


def evaluation_mix():
    """A fixed evaluation mix with enough rare conditions that every slice can be tested."""
    from projects.scenes import Mix

    return Mix(
        name="evaluation",
        description="Held-out evaluation set: rare conditions over-represented so slices are testable.",
        classes={"orange_cone": 0.27, "green_cone": 0.18, "pedestrian": 0.27, "nothing": 0.28},
        weather={"clear": 0.5, "rain": 0.3, "fog": 0.2},
        light={"day": 0.65, "night": 0.35},
    )


def _configure(tracking_uri: str | None) -> str:
    """Point MLflow at the tracking URI; on an embedded database, gate the registry in-process too."""
    import mlflow

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    mlflow.set_tracking_uri(uri)
    if not is_server_uri(uri):
        os.environ.setdefault(POLICY_ENV, str(DEFAULT_POLICY))
        mlflow.set_registry_uri(f"{STORE_URI_PREFIX}{uri}")
    return uri


@contextmanager
def _step(name: str, result: CycleResult) -> Iterator[None]:
    """Announce the step to the run-context provider and time it."""
    os.environ[STEP_ENV] = name
    start = time.perf_counter()
    try:
        yield
    finally:
        result.timings[name] = round(time.perf_counter() - start, 2)
        os.environ.pop(STEP_ENV, None)


def evaluation_version(data_dir: Path, n: int) -> Path:
    """The held-out evaluation mix of ``n`` scenes (seed fixed: every cycle judges on the same data)."""
    from projects.scenes import generate, save_version

    return save_version(generate(n, evaluation_mix(), 10_000), Path(data_dir) / "eval")[0]


def _versions(config: RetrainConfig, data_dir: Path):
    from projects.scenes import generate, save_version, training_version

    train_path, train_manifest = training_version(data_dir, config.mix, config.train_size, config.seed)
    eval_path = evaluation_version(data_dir, config.eval_size)
    window_path, _ = save_version(generate(config.window_size, config.current, 20_000 + config.seed), data_dir / "windows")
    return train_path, train_manifest, eval_path, window_path


def tune_and_train(config: RetrainConfig, train_dir: Path, content_hash: str, result: CycleResult) -> None:
    """The tune step (when ``tune_trials``) and the train step, which registers the candidate version."""
    from projects.train import train

    tuned = {}
    if config.tune_trials:
        with _step("tune", result):
            from projects.tune import TuneConfig, tune

            study = TuneConfig(study_name=f"{config.registered_model}-{content_hash[:12]}", trials=config.tune_trials,
                               storage=config.tune_storage, base=config.hyperparameters())
            found = tune(str(train_dir), study)
            tuned, result.runs["tune"] = found.best_params, found.run_id
    with _step("train", result):
        training = TrainConfig(config.hyperparameters(**tuned), Tracking(registered_model=config.registered_model))
        trained = train(str(train_dir), training)
        result.version, result.runs["train"] = str(trained.version), trained.run_id


def retrain(config: RetrainConfig = RetrainConfig(), *, data_dir: str = "data", tracking_uri: str | None = None,
            out=sys.stdout) -> CycleResult:
    """Run one cycle; returns what happened (also printed as a summary)."""
    import mlflow

    from gatekeeper_cli.client import GatekeeperClient
    from projects.run_scope import child_run

    uri = _configure(tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not os.environ.get("MLFLOW_RUN_ID") and mlflow.active_run() is None:
        mlflow.set_experiment("retrain")  # under `mlflow run`, the project's run decides
    gate = GatekeeperClient(uri)
    # Under `mlflow run` a child of the project's run: its params are the command line's as typed
    # (train_size=8000.0), these are the values used (8000), and MLflow refuses to change a param.
    with child_run(f"retrain {config.registered_model}", error=RuntimeError) as parent:
        result = CycleResult(parent.info.run_id)
        mlflow.log_params({k: v for k, v in asdict(config).items() if k != "tune_storage"})  # a URL, not a setting
        with _step("data", result):
            train_dir, manifest, eval_dir, window_dir = _versions(config, Path(data_dir))
        os.environ[DATASET_ENV] = manifest["content_hash"]
        mlflow.set_tags({TAG_DATASET_VERSION: manifest["content_hash"], TAG_PIPELINE_STEP: "retrain"})
        tune_and_train(config, train_dir, manifest["content_hash"], result)
        judge(config, gate, result, eval_dir, window_dir, out=out)
        mlflow.log_metrics({f"seconds/{step}": seconds for step, seconds in result.timings.items()})
    os.environ.pop(DATASET_ENV, None)
    _print_summary(result, config.registered_model, uri, out)
    return result


def judge(config: RetrainConfig, gate, result: CycleResult, eval_dir: Path, window_dir: Path, *,
          register_window: bool = True, out=sys.stdout) -> None:
    """After training: drift of ``window_dir`` against the candidate's training data, the policy's
    evaluation sets registered and evaluated on, verification, and the gate's decision — into
    ``result``. The autopilot calls this too (``register_window`` False: its hard cases come from
    labelled slices, not from a whole production window)."""
    import mlflow

    from gatekeeper_cli.client import GatekeeperError, PromotionRefused
    from projects import drift, evaluate
    from projects.scenes import DATA_FILE

    model_uri = f"models:/{config.registered_model}/{result.version}"
    with _step("drift", result):
        drifted = drift.run_drift(model_uri, str(window_dir / DATA_FILE), columns=DRIFT_COLUMNS)
        result.runs["drift"] = drifted.run_id
        result.report_uri = f"runs:/{drifted.run_id}/{DRIFT_REPORT_PATH}"
    with _step("evaluate", result):
        sets = _register_sets(gate, config, eval_dir / DATA_FILE, window_dir / DATA_FILE,
                              drifted if register_window else None)
        datas = [f"{SET_DATA_PREFIX}{name}" for name in sets] or [str(eval_dir / DATA_FILE)]
        for i, data in enumerate(datas):
            evaluated = evaluate.evaluate(model_uri, data, "label", SLICES, data_name="road-scenes-eval", out=out)
            result.runs["evaluate" if i == 0 else f"evaluate {data}"] = evaluated.run_id
    if sets and gate.policy(config.registered_model)["policy"]["evaluation"]["verify"]["sample"]:
        with _step("verify", result):
            gate.wait_for_verification(config.registered_model, result.version, VERIFY_TIMEOUT_S)
    with _step("gate", result):
        try:
            decision = gate.promote(config.registered_model, result.version)
        except PromotionRefused as refused:
            decision = gate.history(config.registered_model, limit=1)[0] | {"summary": str(refused)}
        except GatekeeperError as exc:  # the gate could not be asked: that is a failed step
            raise RuntimeError(f"the gate could not be asked to promote {model_uri}: {exc}") from exc
        result.verdict = decision.get("verdict", "unknown")
        result.reasons = list(decision.get("reasons", []))
        mlflow.set_tags({TAG_VERDICT: result.verdict, TAG_CANDIDATE_VERSION: result.version})
        mlflow.log_text("\n".join(result.reasons), "gate/reasons.txt")


def _register_sets(gate, config: RetrainConfig, eval_path: Path, window_path: Path, drifted=None) -> list[str]:
    """Register the policy's evaluation sets from this cycle's data; the names evaluated on.

    The first set is the held-out evaluation mix. A further set (``hard-cases``) is the production
    window, registered when the drift report flags it — a critical column drifted, or the data set
    as a whole: a failure found once is tested by every later candidate, even when the window it
    came from has moved on. Registering unchanged data adds no version (the registry keeps the
    current one), so re-running a cycle does not open new attempts.
    """
    from gatekeeper_cli.sets import register
    from registry_hooks.names import normalise

    policy = gate.policy(config.registered_model)["policy"]
    wanted = policy["evaluation"]["sets"]
    if not wanted:
        return []  # the weak mode: evaluate on the cycle's evaluation data, as before
    register(gate, wanted[0], str(eval_path), "label", f"retrain evaluation mix ({config.eval_size} scenes)")
    summary = drifted.summary if drifted is not None else None
    flagged = summary is not None and (summary.dataset_drift
                                       or set(summary.drifted_columns) & set(policy["drift"]["critical_columns"]))
    if len(wanted) > 1 and flagged:
        register(gate, wanted[1], str(window_path), "label",
                 f"production window '{config.current}' flagged by drift run {drifted.run_id}")
    registered = {normalise(s["name"]) for s in gate.sets()}
    return [name for name in wanted if normalise(name) in registered]


def _run_link(uri: str, run_id: str) -> str:
    import mlflow

    run = mlflow.get_run(run_id)
    if uri.startswith("http"):
        return f"{uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    return f"runs:/{run_id} (experiment {run.info.experiment_id}; `mlflow ui --backend-store-uri {uri}`)"


def _print_summary(result: CycleResult, name: str, uri: str, out) -> None:
    promoted = result.verdict in ("promote", "unchanged")
    print("\n=== retrain summary ===", file=out)
    print(f"candidate: {name} v{result.version}", file=out)
    print(f"verdict:   {result.verdict} — {'PROMOTED to production' if promoted else 'NOT promoted'} "
          "(the pipeline itself ran fine)", file=out)
    for reason in result.reasons:
        print(f"  - {reason}", file=out)
    for step, run_id in result.runs.items():
        print(f"{step + ':':<10} {_run_link(uri, run_id)}", file=out)
    if result.report_uri:
        print(f"drift report: {result.report_uri}", file=out)
    print("timings (s): " + ", ".join(f"{k} {v}" for k, v in result.timings.items()), file=out)


def main(argv: list[str] | None = None) -> int:
    from projects.scenes import mix_name

    # One option per MLproject parameter: the entry point's public surface. The values reach the
    # cycle only through the RetrainConfig built below.
    parser = argparse.ArgumentParser(prog="retrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--registered-model", default="road-scenes")
    parser.add_argument("--mix", type=mix_name, default="summer", help="training data mix")
    parser.add_argument("--current", type=mix_name, default="summer", help="mix of the current production window")
    parser.add_argument("--train-size", type=integer_at_least(100), default=8000)
    parser.add_argument("--eval-size", type=integer_at_least(100), default=3000)
    parser.add_argument("--window-size", type=integer_at_least(100), default=3000)
    parser.add_argument("--epochs", type=integer_at_least(1), default=15)
    parser.add_argument("--seed", type=integer_at_least(0), default=0)
    parser.add_argument("--tune-trials", type=integer_at_least(0), default=0, help="0: no tuning")
    parser.add_argument("--tune-storage", default="", help="optuna RDB URL shared by several tune processes")
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args(argv)
    config = RetrainConfig(**{f.name: getattr(args, f.name) for f in fields(RetrainConfig)})
    try:
        retrain(config, data_dir=args.data_dir)
    except Exception as exc:  # noqa: BLE001 - a failed step: one clear line and a non-zero exit
        print(f"retrain: a step failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
