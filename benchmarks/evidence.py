"""Small real models and the evidence they produce, for the gate tests and benchmarks.

The models are real scikit-learn classifiers fitted on a generated task with a ``weather``
slice; their per-example predictions go through the public ``log_evidence`` helper exactly as an
evaluator's would.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from projects.datasets import content_hash, log_dataset_input
from registry_hooks.evidence import EvaluatedData, ExampleOutcomes, log_evidence

FEATURES = [f"x{i}" for i in range(6)]

# The policy the gated test and benchmark servers hold: the scenarios below are judged under it
# (accuracy primary, a log-loss guard, the ``weather`` slice), and name patterns select stricter rules.
GATE_POLICY = """
version: 1
defaults:
  targets: {stages: [Production], aliases: [champion]}
  promote_to: {alias: champion, stage: Production}
  primary: {metric: accuracy, margin: 0.0}
  confidence: 0.95
  secondary:
    - {metric: log_loss, tolerance: 0.05}
  slices: {columns: [weather], min_size: 30, tolerance: 0.05}
  evidence: {max_age: 1d}
models:
  - pattern: "strict-*"
    primary: {metric: accuracy, margin: 0.5}
  - pattern: "no-override-*"
    overrides: {allowed: false}
  - pattern: "regress-*"
    primary: {metric: mae, margin: 0.0}
    secondary: [{metric: rmse, tolerance: 0.5}]
"""


def make_data(n: int, seed: int) -> pd.DataFrame:
    """A binary task where ``x0..x5`` all carry signal; rain adds noise to x0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    weather = rng.choice(["clear", "rain", "fog"], size=n, p=[0.6, 0.25, 0.15])
    logits = x @ np.array([1.5, 1.2, 1.0, 0.8, 0.6, 0.4]) + rng.normal(scale=0.5, size=n)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["weather"] = weather
    frame["label"] = (logits > 0).astype(int)
    frame.insert(0, "row_id", [f"r{i}" for i in range(n)])
    return frame


@dataclass(frozen=True)
class Scored:
    prediction: np.ndarray
    proba_label: np.ndarray

    def as_outcomes(self) -> dict[str, np.ndarray]:
        return {"prediction": self.prediction, "proba_label": self.proba_label}


@lru_cache(maxsize=1)
def models() -> dict[str, object]:
    """``strong`` uses every feature, ``weak`` only two: a real, clearly worse model."""
    from sklearn.linear_model import LogisticRegression

    train = make_data(4000, seed=1)
    return {
        "strong": (LogisticRegression().fit(train[FEATURES], train["label"]), FEATURES),
        "weak": (LogisticRegression().fit(train[FEATURES[:2]], train["label"]), FEATURES[:2]),
    }


def score(model_name: str, data: pd.DataFrame) -> Scored:
    model, features = models()[model_name]
    proba = model.predict_proba(data[features])
    label = data["label"].to_numpy()
    return Scored(prediction=proba.argmax(axis=1), proba_label=proba[np.arange(len(data)), label])


def evaluation(n: int, seed: int = 11):
    """``n`` generated examples and per-example outcomes: candidate ~86 % right, baseline ~80 %
    (no model: the benchmarks of the gate need evidence of any size, fast)."""
    rng = np.random.default_rng(seed)
    data = make_data(n, seed)
    label = data["label"].to_numpy()

    def scored(accuracy: float) -> Scored:
        right = rng.random(n) < accuracy
        proba_label = np.where(right, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.5, n))
        return Scored(prediction=np.where(right, label, 1 - label), proba_label=proba_label)

    return data, scored(0.86), scored(0.80)


def register_version(client: MlflowClient, name: str) -> str:
    """A new version of ``name`` whose source is a (tiny) training run's artifact folder."""
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    experiment = client.get_experiment_by_name("training") or client.get_experiment(client.create_experiment("training"))
    run = client.create_run(experiment.experiment_id)
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return version.version


@dataclass(frozen=True)
class Comparison:
    """What one evaluation run compares: ``candidate`` of model ``name`` against ``baseline`` (None:
    a first release), each with its scores on the evaluation data."""

    name: str
    candidate: str
    baseline: str | None
    candidate_scores: Scored
    baseline_scores: Scored | None = None


def log_evidence_run(tracking_uri: str, comparison: Comparison, data: pd.DataFrame, *, data_name: str = "eval",
                     slices: tuple[str, ...] = ("weather",)) -> str:
    """One finished evaluation run holding gate evidence; returns its run id."""
    c = comparison
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("evaluations")
    with mlflow.start_run() as run:
        logged = log_dataset_input(data, source=f"file:///generated/{data_name}.parquet", name=data_name, context="evaluation")
        outcomes = ExampleOutcomes(
            row_id=data["row_id"],
            label=data["label"],
            candidate=c.candidate_scores.as_outcomes(),
            baseline=c.baseline_scores.as_outcomes() if c.baseline_scores else None,
            slices={column: data[column] for column in slices},
        )
        log_evidence(candidate=(c.name, c.candidate), baseline=(c.name, c.baseline) if c.baseline else None,
                     data=EvaluatedData(data_name, logged.content_hash), task="classification", outcomes=outcomes)
    assert logged.content_hash == content_hash(data)
    return run.info.run_id


class Scenario:
    """One registered model on a live server, with helpers to add versions, evidence and production."""

    def __init__(self, server_url: str, name: str, n: int = 1500, seed: int = 7):
        from gatekeeper_cli.client import GatekeeperClient

        self.url, self.name = server_url, name
        self.client = MlflowClient(server_url, registry_uri=server_url)
        self.gate = GatekeeperClient(server_url)
        self.data = make_data(n, seed)

    def version(self) -> str:
        return register_version(self.client, self.name)

    def evidence(self, candidate: str, baseline: str | None, candidate_model: str = "strong",
                 baseline_model: str = "weak", data: pd.DataFrame | None = None, data_name: str = "eval") -> str:
        data = self.data if data is None else data
        scores = Comparison(self.name, candidate, baseline, score(candidate_model, data),
                            score(baseline_model, data) if baseline else None)
        return log_evidence_run(self.url, scores, data, data_name=data_name)

    def first_release(self, model: str = "weak") -> str:
        """v1 promoted to production through the gate (first-release evidence)."""
        version = self.version()
        self.evidence(version, None, candidate_model=model)
        self.gate.promote(self.name, version)
        return version

    def production(self) -> tuple[str | None, list[str]]:
        """(champion alias holder, versions in Production)."""
        model = self.client.get_registered_model(self.name)
        champion = model.aliases.get("champion")
        in_production = [mv.version for mv in self.client.search_model_versions(f"name='{self.name}'")
                         if mv.current_stage == "Production"]
        return champion, sorted(in_production)
