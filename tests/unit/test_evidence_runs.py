"""How the gate finds its runs and reads their outcomes, on one real SQLite tracking store.

``plugins.evidence_runs`` answers with three indexed queries on MLflow's own SQL store and
through MLflow's public search on any other: both must find the same runs, in the same order,
with the same tags and input hashes, whatever state the runs are in. ``plugins.evidence_source``
does not parse an outcomes file again while it is unchanged, and must notice when it changes.
"""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from plugins import evidence_runs, evidence_source
from plugins.evidence_source import EvidenceSource
from projects.datasets import log_dataset_input
from registry_hooks import contract
from registry_hooks.evidence import EvaluatedData, ExampleOutcomes, OutcomesChanged, VersionRef, log_evidence


def _data(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"row_id": [f"r{i}" for i in range(n)], "label": rng.integers(0, 2, n),
                         "weather": np.where(np.arange(n) % 3, "clear", "rain")})


def _evidence_run(tmp_path: Path, version: int, baseline: int | None, data: pd.DataFrame, name: str = "eval",
                  experiment_id: str | None = None) -> str:
    with mlflow.start_run(experiment_id=experiment_id) as run:
        logged = log_dataset_input(data, source=f"{tmp_path}/{name}.parquet", name=name, context="evaluation")
        log_evidence(candidate=("m", version), baseline=("m", baseline) if baseline else None,
                     data=EvaluatedData(name, logged.content_hash), task="classification",
                     outcomes=ExampleOutcomes(row_id=data["row_id"], label=data["label"],
                                              candidate={"prediction": data["label"]},
                                              baseline={"prediction": 1 - data["label"]} if baseline else None,
                                              slices={"weather": data["weather"]}))
    return run.info.run_id


@pytest.fixture()
def tracking(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    client.create_experiment("evidence", artifact_location=str(tmp_path / "artifacts"))
    mlflow.set_experiment("evidence")
    yield uri, client
    mlflow.set_tracking_uri(None)


def test_the_query_and_mlflows_search_find_the_same_runs_in_every_state(tmp_path, tracking):
    uri, client = tracking
    data = _data()
    ids = {state: _evidence_run(tmp_path, 2, 1, data) for state in ("finished", "failed", "deleted")}
    ids["other-data"] = _evidence_run(tmp_path, 2, 1, _data(seed=1), name="other")
    client.set_terminated(ids["failed"], "FAILED")
    client.delete_run(ids["deleted"])
    gone = client.create_experiment("gone", artifact_location=str(tmp_path / "gone"))
    ids["gone-experiment"] = _evidence_run(tmp_path, 2, 1, data, experiment_id=gone)
    client.delete_experiment(gone)
    ids["other-version"] = _evidence_run(tmp_path, 3, 1, data)
    store = EvidenceSource(uri).tracking_store
    assert type(store).__name__ == "SqlAlchemyStore"  # the query path is the one a server takes
    wanted = {contract.TAG_EVIDENCE: "1", contract.TAG_CANDIDATE_NAME: "m", contract.TAG_CANDIDATE_VERSION: "2"}
    for deciding_only in (False, True):
        for limit in (1, 1000):
            queried = evidence_runs._queried(store, wanted, deciding_only, limit)
            assert queried == evidence_runs._searched(store, wanted, deciding_only, limit)
            assert queried == evidence_runs.find(store, wanted, deciding_only=deciding_only, limit=limit)
    every = evidence_runs.find(store, wanted, deciding_only=False, limit=1000)
    assert {r.run_id for r in every} == {ids[s] for s in ("finished", "failed", "deleted", "other-data", "gone-experiment")}
    assert [r.start_time for r in every] == sorted((r.start_time for r in every), reverse=True)
    deciding = evidence_runs.find(store, wanted, deciding_only=True, limit=1000)
    assert {r.run_id for r in deciding} == {ids["finished"], ids["other-data"]}
    state = {r.run_id: (r.status, r.run_active, r.experiment_active, r.decides) for r in every}
    assert state[ids["failed"]] == ("FAILED", True, True, False)
    assert state[ids["deleted"]] == ("FINISHED", False, True, False)
    assert state[ids["gone-experiment"]][2:] == (False, False)  # MLflow also marks its runs deleted
    finished = next(r for r in every if r.run_id == ids["finished"])
    assert finished.tags[contract.TAG_BASELINE_VERSION] == "1" and finished.tags[contract.TAG_DATA_NAME] == "eval"
    assert finished.input_hashes == {finished.tags[contract.TAG_DATA_HASH]}
    assert set(finished.tags) <= set(evidence_runs.TAG_KEYS)


def _outcomes_file(tmp_path: Path, run_id: str) -> Path:
    found = list((tmp_path / "artifacts").glob(f"{run_id}/artifacts/{contract.EVIDENCE_OUTCOMES_PATH}"))
    assert len(found) == 1, found
    return found[0]


def test_an_unchanged_outcomes_file_is_not_parsed_again_and_a_changed_one_is_refused(tmp_path, tracking):
    uri, _ = tracking
    run_id = _evidence_run(tmp_path, 2, 1, _data())
    source, checked = EvidenceSource(uri), evidence_source._CHECKED_FILES
    misses = checked.misses
    first, _, _ = source.gather(VersionRef("m", "2"), "1", ())
    assert first.error is None and checked.misses == misses + 1  # parsed and checked at once the first time
    hits = checked.hits
    again, _, _ = source.gather(VersionRef("m", "2"), "1", ())
    assert checked.hits == hits + 1  # the same file, unchanged: known
    assert again.error is None and "arrays" not in again.evidence.__dict__  # and nothing parsed yet
    assert again.evidence.n == 60 and again.evidence.content_identity == first.evidence.content_identity
    assert list(again.evidence.label) == list(first.evidence.label)  # parsed on first use, same arrays

    lazy, _, _ = source.gather(VersionRef("m", "2"), "1", ())
    outcomes = _outcomes_file(tmp_path, run_id)
    time.sleep(0.01)  # a new mtime even on coarse-grained file systems
    outcomes.write_bytes(outcomes.read_bytes()[:-8] + b"\0" * 8)  # same size, other bytes
    with pytest.raises(OutcomesChanged, match="does not match the sha256"):
        lazy.evidence.label  # noqa: B018 - the load is the point
    changed, _, _ = source.gather(VersionRef("m", "2"), "1", ())
    assert changed.evidence is None and "does not match the sha256 in its manifest" in changed.error
