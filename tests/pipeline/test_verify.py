"""The verifier end to end on SQLite, no server: real models in the registry, a registered set,
evidence from ``evaluate`` and evidence falsified on 5 % of rows, the verifier as a real process
(spawned by the gate's ``ensure``, run for one request, and polling as a worker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from benchmarks.evidence import make_data, models
from plugins import verifier_launch
from projects.datasets import log_dataset_input
from projects.evaluate import evaluate
from registry_hooks import eval_sets, verification
from registry_hooks.audit.log import migrate
from registry_hooks.contract import EVIDENCE_MANIFEST_PATH, EVIDENCE_OUTCOMES_PATH, SECRET_ENV, VERIFIER_ENV, VERIFIER_MODULE
from registry_hooks.evidence import EvaluatedData, ExampleOutcomes, log_evidence, parse_manifest
from registry_hooks.secret import server_secret
from registry_hooks.verification import VerificationKey
from tests.support.tracking import tracking_at

pytestmark = pytest.mark.timeout(300)
PIP = ["scikit-learn", "pandas", "numpy"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite tracking + registry database with the gate's tables, artifacts in a temp folder."""
    root = tmp_path_factory.mktemp("verify")
    db_uri = f"sqlite:///{root / 'mlflow.db'}"
    with tracking_at(db_uri, "verify", root / "artifacts") as (patch, _):
        patch.delenv(SECRET_ENV, raising=False)  # the generated secret, shared through the database
        patch.delenv(VERIFIER_ENV, raising=False)
        engine = create_engine(db_uri)
        migrate(engine)  # after MLflow's own tables, as the gated store does
        yield db_uri, engine, root
        engine.dispose()


def _register_set(engine, name: str, path: Path) -> eval_sets.SetVersion:
    with Session(engine) as session, session.begin():
        return eval_sets.register(session, name, str(path), "label", eval_sets.describe_table(str(path), "label"),
                                  None, "test")


def _evidence_key(run_id: str, registered: eval_sets.SetVersion, sample: int = 256) -> VerificationKey:
    manifest = parse_manifest(mlflow.artifacts.load_text(f"runs:/{run_id}/{EVIDENCE_MANIFEST_PATH}"))
    return VerificationKey(run_id, manifest.outcomes_sha256, manifest.candidate.name, manifest.candidate.version,
                           manifest.baseline.version if manifest.baseline else None, registered.name,
                           registered.version, registered.content_hash, sample)


def falsify(run_id: str, data: pd.DataFrame, source: str, fraction: float, seed: int = 0) -> str:
    """A new evidence run: ``run_id``'s outcomes with the candidate's prediction moved to the next
    class on ``fraction`` of the rows, logged through ``log_evidence`` like any evaluator's."""
    manifest = parse_manifest(mlflow.artifacts.load_text(f"runs:/{run_id}/{EVIDENCE_MANIFEST_PATH}"))
    raw = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{EVIDENCE_OUTCOMES_PATH}")).read_bytes()
    frame = pd.read_feather(BytesIO(raw))
    rows = np.random.default_rng(seed).choice(len(frame), int(round(fraction * len(frame))), replace=False)
    prediction = frame["candidate.prediction"].to_numpy().copy()
    classes = np.unique(frame["label"].to_numpy())
    prediction[rows] = classes[(np.searchsorted(classes, prediction[rows]) + 1) % len(classes)]
    frame["candidate.prediction"] = prediction

    def side(prefix: str) -> dict | None:
        fields = {c.split(".", 1)[1]: frame[c].to_numpy() for c in frame if c.startswith(prefix + ".")}
        return fields or None

    with mlflow.start_run(run_name="falsified evidence") as run:
        logged = log_dataset_input(data, source=source, name=manifest.data.name, context="evaluation")
        log_evidence(candidate=(manifest.candidate.name, manifest.candidate.version),
                     baseline=(manifest.baseline.name, manifest.baseline.version) if manifest.baseline else None,
                     data=EvaluatedData(manifest.data.name, logged.content_hash, source), task=manifest.task,
                     outcomes=ExampleOutcomes(frame["row_id"], frame["label"], side("candidate"), side("baseline"),
                                              {c: frame[f"slice.{c}"] for c in manifest.slice_columns}))
    return run.info.run_id


def _request(engine, key: VerificationKey) -> int:
    with Session(engine) as session, session.begin():
        return verification.request(session, key, int(time.time() * 1000))


def _verifier(db_uri: str, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", VERIFIER_MODULE, "--db-uri", db_uri, *args],
                          capture_output=True, text=True, timeout=240, env=os.environ | {"DO_NOT_TRACK": "true"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _fact(engine, key: VerificationKey) -> verification.VerificationFact:
    with Session(engine) as session:
        return verification.lookup(session, key, server_secret(engine), int(time.time() * 1000))


def _wait(engine, db_uri: str, key: VerificationKey, limit_s: float = 180) -> verification.VerificationFact:
    """``ensure`` as the gate calls it on each promotion, until the spawned verifier answered."""
    deadline = time.monotonic() + limit_s
    while True:
        fact = verifier_launch.ensure(engine, db_uri, key, server_secret(engine))
        if fact.status not in (verification.PENDING, verification.RUNNING) or time.monotonic() > deadline:
            return fact
        time.sleep(0.5)


def _register_sklearn(name: str, kind: str) -> str:
    model, columns = models()[kind]
    sample = make_data(50, seed=5)[columns]
    with mlflow.start_run(run_name=f"train {kind}"):
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=PIP, pyfunc_predict_fn="predict_proba",
                                        signature=infer_signature(sample, model.predict_proba(sample)),
                                        registered_model_name=name)
    return str(info.registered_model_version)


def test_genuine_evidence_passes_and_falsified_evidence_fails_scikit_learn(store):
    db_uri, engine, root = store
    name = "verify-sklearn"
    baseline = _register_sklearn(name, "weak")
    candidate = _register_sklearn(name, "strong")
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", baseline)  # production, ungated here
    data = make_data(2000, seed=11)
    path = root / "golden.parquet"
    data.to_parquet(path)
    registered = _register_set(engine, "golden", path)

    genuine = evaluate(f"models:/{name}/{candidate}", str(path), "label", ["weather"], tracking_uri=db_uri)
    assert genuine.baseline == (name, baseline)
    key = _evidence_key(genuine.run_id, registered)
    assert verifier_launch.ensure(engine, db_uri, key, server_secret(engine)).status == verification.PENDING
    fact = _wait(engine, db_uri, key)
    assert fact.status == verification.PASSED, fact.message
    assert fact.message.startswith(f"verification #{fact.request_id} passed: re-scored 256 of 2,000 rows of golden v1")
    assert fact.numbers["rows_disagreeing"] == 0 and fact.numbers["max_abs_diff"]["candidate.proba_label"] < 1e-6

    falsified_run = falsify(genuine.run_id, data, str(path), fraction=0.05)
    falsified = _evidence_key(falsified_run, registered)
    _verifier(db_uri, "--request", str(_request(engine, falsified)))
    fact = _fact(engine, falsified)
    assert fact.status == verification.FAILED and not fact.trusted
    assert "re-scored rows disagree with the logged outcomes (candidate.prediction on row 'r" in fact.message
    assert 0 < fact.numbers["mismatches"]["candidate.prediction"] < 40  # about 256 * 5 % = 13
    assert fact.numbers["mismatches"]["baseline.prediction"] == 0


def test_evidence_that_does_not_cover_the_set_or_changed_outcomes_fail(store):
    db_uri, engine, root = store
    name = "verify-cover"
    version = _register_sklearn(name, "strong")
    data = make_data(300, seed=12)
    path = root / "cover.parquet"
    data.to_parquet(path)
    registered = _register_set(engine, "cover", path)
    subset = root / "cover-subset.parquet"
    data.iloc[:290].to_parquet(subset)
    partial = evaluate(f"models:/{name}/{version}", str(subset), "label", ["weather"], tracking_uri=db_uri)
    key = _evidence_key(partial.run_id, registered)
    _request(engine, key)
    stale = verification.VerificationKey(**{**key.__dict__, "outcomes_sha256": "0" * 64})
    _request(engine, stale)
    _verifier(db_uri, "--worker", "--once", "--poll", "0.2")  # answers both
    assert _fact(engine, key).message.endswith(
        "failed: the evidence does not cover cover v1 exactly: 10 of its 300 row ids are missing from the "
        "outcomes, 0 are extra and 0 labels differ")
    assert "the outcomes changed after the evidence was logged" in _fact(engine, stale).message


def test_a_set_whose_source_changed_is_an_error_with_the_reason(store):
    db_uri, engine, root = store
    path = root / "moving.parquet"
    make_data(100, seed=13).to_parquet(path)
    registered = _register_set(engine, "moving", path)
    make_data(100, seed=14).to_parquet(path)
    key = VerificationKey("no-such-run", "1" * 64, "m", "1", None, registered.name, registered.version,
                          registered.content_hash, 256)
    _verifier(db_uri, "--request", str(_request(engine, key)))
    fact = _fact(engine, key)
    assert fact.status == verification.ERROR and "the source of moving v1 no longer holds the registered table" in fact.message


def test_fabricated_outcomes_of_the_scenes_cnn_are_caught(store):
    """Two tiny CNNs (one epoch each), evidence from ``evaluate`` on 600 scenes, then the same
    evidence with 5 % of the candidate's predictions fabricated."""
    pytest.importorskip("torch")
    from projects import scenes
    from projects.train import train
    from projects.train_config import Hyperparameters, Runtime, Tracking, TrainConfig

    db_uri, engine, root = store
    name = "verify-scenes"
    mix = scenes.Mix("tiny", {c: 0.25 for c in scenes.CLASS_NAMES}, {"clear": 0.8, "rain": 0.2}, {"day": 0.75, "night": 0.25})
    training = scenes.generate(300, mix, seed=7)
    versions = [train(training, TrainConfig(Hyperparameters(epochs=1, batch_size=64, width=4, seed=seed),
                                            Tracking(registered_model=name), Runtime(progress=False))).version
                for seed in (1, 2)]
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", str(versions[0]))
    data = scenes.generate(600, mix, seed=8)
    path = root / "scenes-golden.parquet"
    scenes.write_parquet(data, path)
    registered = _register_set(engine, "scenes golden", path)

    genuine = evaluate(f"models:/{name}/{versions[1]}", str(path), "label", ["weather"], tracking_uri=db_uri)
    key = _evidence_key(genuine.run_id, registered)
    _verifier(db_uri, "--request", str(_request(engine, key)))
    passed = _fact(engine, key)
    assert passed.status == verification.PASSED, passed.message
    assert passed.numbers["rows_checked"] == 256

    fabricated = _evidence_key(falsify(genuine.run_id, data, str(path), fraction=0.05, seed=3), registered)
    _verifier(db_uri, "--request", str(_request(engine, fabricated)))
    failed = _fact(engine, fabricated)
    assert failed.status == verification.FAILED and failed.numbers["mismatches"]["candidate.prediction"] > 0
    assert json.dumps(failed.numbers)  # plain JSON, as the audit log stores it


def test_a_verifier_that_errs_is_started_again_at_most_max_tries_then_stays_an_error(store):
    """Spawned for real: each verifier records the reason; the gate starts a new one on its next
    call until ``MAX_TRIES`` starts were made, then reports the error and the verifier's log."""
    db_uri, engine, _ = store
    key = VerificationKey("never-logged", "2" * 64, "m", "1", None, "unregistered", 1, "3" * 64, 256)
    secret = server_secret(engine)
    messages = []
    for _ in range(verification.MAX_TRIES + 1):
        fact = _wait(engine, db_uri, key) if messages else verifier_launch.ensure(engine, db_uri, key, secret)
        messages.append(fact.message)
    assert messages[0].startswith("verification pending: request #")
    assert all(m.startswith("verification #") and "could not be done: SetError: no evaluation set named "
               "'unregistered' is registered" in m for m in messages[1:])
    for n, message in ((2, messages[1]), (3, messages[2])):
        assert message.endswith(f"a verifier was started again (start {n} of {verification.MAX_TRIES})")
    final = verifier_launch.ensure(engine, db_uri, key, secret)
    assert final.status == verification.ERROR and final.message == messages[3] and "started again" not in final.message
    assert final.message.endswith(f"(verifier log: {verifier_launch.log_path(db_uri, final.request_id)})")
