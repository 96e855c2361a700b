"""An attempt the gate has seen stays an attempt: retagging, failing or deleting its run hides nothing.

In process on SQLite (the gated store the CLI opens on a database URI), weak mode: v2 is evaluated
on data A, where it is worse, and the gate is asked (as evaluate's preview asks it). The run is
then hidden — retagged to another candidate, marked FAILED, deleted — and v2 evaluated on data B,
where it is better. Each time the promotion is refused: every attempt counts.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from gatekeeper_cli.client import GatekeeperClient, PromotionRefused
from projects.datasets import log_dataset_input
from registry_hooks.contract import TAG_CANDIDATE_VERSION
from registry_hooks.evidence import EvaluatedData, ExampleOutcomes, log_evidence
from tests.support.tracking import tracking_at

N = 400


def _evidence(name: str, candidate: str, baseline: str | None, seed: int, candidate_right: float,
              baseline_right: float = 0.75) -> str:
    """One evidence run on a fresh table of N rows: each model right on the given share of rows."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, N)
    table = pd.DataFrame({"row_id": [f"{seed}-{i}" for i in range(N)], "label": label, "x": rng.normal(size=N)})

    def predictions(share: float) -> np.ndarray:
        return np.where(rng.random(N) < share, label, 1 - label)

    with mlflow.start_run() as run:
        logged = log_dataset_input(table, source=f"data-{seed}.parquet", name=f"data-{seed}", context="evaluation")
        outcomes = ExampleOutcomes(row_id=table["row_id"], label=label, candidate={"prediction": predictions(candidate_right)},
                                   baseline={"prediction": predictions(baseline_right)} if baseline else None)
        log_evidence(candidate=(name, candidate), baseline=(name, baseline) if baseline else None,
                     data=EvaluatedData(f"data-{seed}", logged.content_hash), task="classification", outcomes=outcomes)
    return run.info.run_id


@pytest.fixture
def gated(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.delenv("GATEKEEPER_POLICY", raising=False)
    with tracking_at(uri, "attempts", tmp_path / "artifacts"):  # artifacts in tmp_path, not ./mlruns
        client = MlflowClient(uri)
        client.create_registered_model("m")
        for _ in range(3):
            client.create_model_version("m", str(tmp_path / "model"))
        gate = GatekeeperClient(uri)
        _evidence("m", "1", None, seed=1, candidate_right=0.8)
        assert gate.promote("m", "1")["verdict"] == "promote"
        yield client, gate


@pytest.mark.parametrize("hide", ["retag", "fail", "delete"])
def test_a_hidden_failed_attempt_still_refuses(gated, hide):
    client, gate = gated
    failed = _evidence("m", "2", "1", seed=2, candidate_right=0.55)
    assert gate.explain("m", "2")["verdict"] == "refuse_worse"  # the gate has seen the attempt now
    if hide == "retag":
        client.set_tag(failed, TAG_CANDIDATE_VERSION, "3")
    elif hide == "fail":
        client.set_terminated(failed, status="FAILED")
    else:
        client.delete_run(failed)
    _evidence("m", "2", "1", seed=3, candidate_right=0.95)
    with pytest.raises(PromotionRefused) as refused:
        gate.promote("m", "2")
    assert "every attempt counts" in str(refused.value) and failed in str(refused.value), str(refused.value)
    assert client.get_registered_model("m").aliases == {"champion": 1}  # a SQL store gives the version as int


def test_an_attempt_the_gate_never_saw_and_that_was_retagged_is_not_found(gated):
    """The limit, stated: evidence retagged before the gate was ever asked about it is not an
    attempt the gate knows of (the README says so; registered sets bound what such shopping buys)."""
    client, gate = gated
    failed = _evidence("m", "2", "1", seed=2, candidate_right=0.55)
    client.set_tag(failed, TAG_CANDIDATE_VERSION, "3")
    _evidence("m", "2", "1", seed=3, candidate_right=0.95)
    assert gate.promote("m", "2")["verdict"] == "promote"
