"""Fixtures for the drift tests: seeded synthetic windows and a local MLflow store with a candidate."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("DO_NOT_TRACK", "true")  # evidently telemetry off, before anything imports it

import numpy as np
import pandas as pd
import pytest

CATEGORIES = np.array(["alpha", "beta", "gamma", "delta", "epsilon"], dtype=object)


def make_window(n: int, seed: int, shifted: bool) -> pd.DataFrame:
    """Features of every kind evidently types differently; ``shifted`` moves the ``*_shift`` columns only."""
    rng = np.random.default_rng(seed)
    s = 1.0 if shifted else 0.0
    cat_p = np.array([0.45, 0.25, 0.15, 0.1, 0.05]) if shifted else np.full(5, 0.2)
    df = pd.DataFrame(
        {
            "num_shift": rng.normal(0.4 * s, 1.0, n),
            "num_same": rng.normal(0.0, 2.0, n),
            "num_scale_shift": rng.normal(0.0, 1.0 + 0.5 * s, n),
            "num_nan_inf": np.where(rng.random(n) < 0.1, np.nan, np.where(rng.random(n) < 0.02, np.inf, rng.exponential(1.0, n))),
            "int_wide": rng.integers(0, 200, n),  # > 10 values: numerical
            "int_few_shift": rng.choice(4, n, p=[0.25, 0.25, 0.25, 0.25] if not shifted else [0.55, 0.15, 0.15, 0.15]),
            "few_values": rng.choice([0.5, 1.5, 2.5], n),  # numerical with <= 5 values
            "flag": rng.random(n) < 0.3,
            "cat_shift": CATEGORIES[rng.choice(5, n, p=cat_p)],
            "cat_same": CATEGORIES[rng.integers(0, 5, n)],
            "cat_missing": pd.Series(CATEGORIES[rng.integers(0, 3, n)]).where(rng.random(n) > 0.1, None).to_numpy(),
        }
    )
    return df


SHIFTED = {"num_shift", "num_scale_shift", "int_few_shift", "cat_shift"}


@pytest.fixture(scope="session")
def window_factory():
    """``make_window(n, seed, shifted)``; the columns it shifts are ``window_factory.shifted``."""
    make_window.shifted = frozenset(SHIFTED)
    return make_window


@pytest.fixture(scope="session")
def windows() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_window(20_000, seed=1, shifted=False), make_window(15_000, seed=2, shifted=True)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """A sqlite tracking/registry store with model 'churn' v1 (training dataset logged) and 'bare' v1 (none).

    The store, its experiment and artifacts live in a temporary directory; MLflow's global URIs are
    pointed at it for the module (environment too, for the CLI subprocesses) and restored after, so
    no other test module inherits them.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils
    from sklearn.linear_model import LogisticRegression

    from projects.datasets import log_dataset_input

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_REGISTRY_URI", uri)
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mp.setattr(tracking_utils, "_tracking_uri", None)
        mp.setattr(registry_utils, "_registry_uri", None)
        client = MlflowClient(uri)
        experiment_id = client.create_experiment("drift-tests", artifact_location=(root / "artifacts").as_uri())
        mp.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
        rng = np.random.default_rng(0)
        n = 3000
        train = pd.DataFrame(
            {"x1": rng.normal(0, 1, n), "x2": rng.normal(0, 1, n), "color": rng.choice(["red", "green", "blue"], n)}
        )
        train["y"] = (train.x1 + train.x2 > 0).astype("int64")
        train_path = root / "train.parquet"
        train.to_parquet(train_path, index=False)
        model = LogisticRegression().fit(train[["x1", "x2"]], train.y)
        with mlflow.start_run(run_name="train", experiment_id=experiment_id) as run, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MLflow's hints on source guessing and integer schemas
            log_dataset_input(pd.read_parquet(train_path), source=str(train_path), name="train", context="training",
                              targets="y")  # fmt: skip
            mlflow.sklearn.log_model(model, name="model", registered_model_name="churn", pip_requirements=["scikit-learn"])
        with mlflow.start_run(run_name="train-bare", experiment_id=experiment_id):
            mlflow.sklearn.log_model(model, name="model", registered_model_name="bare", pip_requirements=["scikit-learn"])
        current = train.copy()
        current["x1"] = current["x1"] + 0.5
        current["pred"] = model.predict(current[["x1", "x2"]])
        current_path = root / "current.parquet"
        current.to_parquet(current_path, index=False)
        yield {
            "uri": uri,
            "root": root,
            "experiment_id": experiment_id,
            "train_run_id": run.info.run_id,
            "train": train_path,
            "current": current_path,
            "client": client,
        }
