"""Trusted evidence against real servers: the gate decides which data and which outcomes count.

One story per backend — SQLite under uvicorn (a secret generated in the database) and PostgreSQL
under gunicorn with two workers (``GATEKEEPER_SECRET`` set) — with real scikit-learn models, the
real ``evaluate`` job, the CLI as a subprocess and a verifier process the server starts:

registered set → first release verified and promoted → a cherry-picked subset refused →
fabricated outcomes caught by verification → a forged and a replayed verification record
refused → a genuine better model verified and promoted → evidence on a stale set version refused →
shopping across set versions refused → the audit chain intact.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression
from sqlalchemy import create_engine, text

from benchmarks.servers import MlflowServer
from gatekeeper_cli.client import GatekeeperClient
from projects.datasets import log_dataset_input
from projects.evaluate import evaluate
from registry_hooks.evidence import EvaluatedData, ExampleOutcomes, log_evidence

POLICY = """
version: 1
defaults:
  primary: {metric: accuracy, margin: 0.0}
  evaluation: {sets: [golden], min_rows: 200, verify: {sample: 256}}
"""
FEATURES = ["a", "b", "c", "d"]
WEAK, STRONG = ["d", "c"], FEATURES  # columns each model reads: the strong one sees the signal in a and b
SECRET = "s3cret-" + "x" * 40


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    label = (x[:, 0] + 0.6 * x[:, 1] + 0.3 * x[:, 2] + rng.normal(scale=0.8, size=n) > 0).astype(int)
    frame = pd.DataFrame(x, columns=FEATURES).assign(label=label)
    frame.insert(0, "row_id", [f"s{seed}-{i}" for i in range(n)])
    return frame


def _fit(columns: list[str]) -> LogisticRegression:
    train = _table(3000, 1)
    return LogisticRegression().fit(train[columns], train["label"])


class Story:
    """One model's versions on one server, and the files its sets are registered from."""

    def __init__(self, server: MlflowServer, workdir: Path):
        self.server, self.url, self.workdir = server, server.url, workdir
        self.name = f"trusted-{uuid.uuid4().hex[:6]}"
        self.gate, self.client = GatekeeperClient(self.url), MlflowClient(self.url)
        mlflow.set_tracking_uri(self.url)
        self.models = {"weak": _fit(WEAK), "strong": _fit(STRONG)}

    def register(self, kind: str) -> str:
        """A new version of the model: the weak or the strong one (each reads only its columns)."""
        from mlflow.models import infer_signature

        columns = WEAK if kind == "weak" else STRONG
        sample = _table(50, 9)[columns]
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(  # the signature names its columns: evaluate feeds it those
                self.models[kind], name="model", registered_model_name=self.name,
                signature=infer_signature(sample, self.models[kind].predict(sample)),
            )
        return str(info.registered_model_version)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gatekeeper_cli.main", "--tracking-uri", self.url, *args],
                              capture_output=True, text=True, timeout=300)

    def register_set(self, name: str, frame: pd.DataFrame, file: str) -> None:
        path = self.workdir / file
        frame.to_parquet(path)
        done = self.cli("sets", "register", name, str(path), "--label", "label")
        assert done.returncode == 0, done.stderr

    def evaluate(self, version: str, data: str) -> str:
        return evaluate(f"models:/{self.name}/{version}", data, "label", [], tracking_uri=self.url,
                        out=open("/dev/null", "w")).run_id

    def refusal(self, version: str) -> str:
        """Promote through MlflowClient (the way the UI does); the gate's refusal text."""
        with pytest.raises(MlflowException) as refused:
            self.client.set_registered_model_alias(self.name, "champion", version)
        assert refused.value.error_code == "PERMISSION_DENIED", refused.value.message
        return refused.value.message


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"trusted-{request.param}")
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    if request.param == "sqlite":
        with MlflowServer(workdir, f"sqlite:///{workdir}/mlflow.db", policy=policy) as started:
            yield started
        return
    with request.getfixturevalue("postgres_uri_factory")() as uri:
        with MlflowServer(workdir, uri, policy=policy, gunicorn=True, workers=2,
                          env={"GATEKEEPER_SECRET": SECRET}) as started:
            yield started


def _fabricated(story: Story, version: str, golden: pd.DataFrame, champion: str) -> str:
    """Evidence for ``version`` (really the weak model) whose candidate predictions were 'fixed' on
    5 % of the rows where it is wrong: better than the champion on paper, never on the data."""
    rng = np.random.default_rng(5)
    weak = story.models["weak"].predict(golden[WEAK])
    baseline = story.models["weak"].predict(golden[WEAK])  # v1 is the weak model too
    label = golden["label"].to_numpy()
    wrong = np.flatnonzero(weak != label)
    fixed = weak.copy()
    chosen = rng.choice(wrong, size=len(golden) // 20, replace=False)
    fixed[chosen] = label[chosen]
    with mlflow.start_run() as run:
        logged = log_dataset_input(golden, source="golden.parquet", name="golden", context="evaluation")
        log_evidence(candidate=(story.name, version), baseline=(story.name, champion),
                     data=EvaluatedData("golden", logged.content_hash), task="classification",
                     outcomes=ExampleOutcomes(row_id=golden["row_id"], label=label, candidate={"prediction": fixed},
                                              baseline={"prediction": baseline}))
    return run.info.run_id


def test_trusted_evidence_story(server, tmp_path):
    story = Story(server, tmp_path)
    golden = _table(1000, 2)

    # A registration with a bad field records nothing: 400, as MLflow answers bad parameters.
    bad = requests.post(f"{story.url}/gatekeeper/api/sets/register", json={"name": "golden", "content_hash": "abc"},
                        timeout=30)
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE", bad.text
    story.register_set("golden", golden, "golden.parquet")
    listed = story.cli("sets", "list")
    assert listed.returncode == 0 and "golden v1" in listed.stdout and "1,000 rows" in listed.stdout, listed

    # First release on the registered set: verified by a verifier process, then promoted.
    v1 = story.register("weak")
    story.evaluate(v1, "set:golden")
    verified = story.gate.wait_for_verification(story.name, v1, timeout_s=240)
    check = next(c for c in verified["checks"] if c["name"] == "verification:golden")
    assert check["outcome"] == "pass", check
    assert story.gate.promote(story.name, v1)["verdict"] == "promote"

    # A cherry-picked subset where the candidate happens to win is not a registered set.
    v2 = story.register("strong")
    story.evaluate(v2, str(_subset(golden, story, tmp_path)))
    assert "evidence on unregistered data" in story.refusal(v2)

    # Fabricated outcomes: the weak model's predictions 'fixed' on 5 % of the rows.
    v3 = story.register("weak")
    forged_run = _fabricated(story, v3, golden, v1)
    answer = story.gate.wait_for_verification(story.name, v3, timeout_s=240)
    check = next(c for c in answer["checks"] if c["name"] == "verification:golden")
    assert check["numbers"]["status"] == "failed" and "disagree with the logged outcomes" in check["message"], check
    assert "verification" in story.refusal(v3) and "failed" in story.refusal(v3)

    # A client cannot post a verification, and a tag on the evidence run means nothing to the gate.
    posted = requests.post(f"{story.url}/gatekeeper/api/verifications", json={"run_id": forged_run, "status": "passed"},
                           timeout=30)
    assert posted.status_code == 404, posted.text
    story.client.set_tag(forged_run, "gatekeeper.verification", "passed")
    assert "failed" in story.refusal(v3)

    # Genuine evidence for the strong model, verified (the CLI waits for the verifier).
    story.evaluate(v2, "set:golden")
    waited = story.cli("verify", story.name, v2, "--timeout", "240")
    assert waited.returncode == 0, waited.stdout + waited.stderr

    # Replay: v2's passed verification copied onto v3's failed one is not signed for v3.
    _replay(server, story, from_version=v2, onto_version=v3)
    assert "not signed by this server" in story.refusal(v3)

    promoted = story.cli("promote", story.name, v2)
    assert promoted.returncode == 0 and "verdict: promote" in promoted.stdout, promoted.stdout + promoted.stderr

    # A newer version of the set makes evidence on the older one stale.
    v4 = story.register("strong")
    story.evaluate(v4, "set:golden")
    story.register_set("golden", _table(1000, 3), "golden-v2.parquet")
    assert "set golden has a newer version v2" in story.refusal(v4)

    # Shopping: v5 (no better than v2) refused on golden v2; a friendlier golden v3 does not help.
    v5 = story.register("weak")
    story.evaluate(v5, "set:golden")
    story.gate.wait_for_verification(story.name, v5, timeout_s=240)
    story.refusal(v5)
    story.register_set("golden", _friendly(story, _table(3000, 4)), "golden-v3.parquet")
    story.evaluate(v5, "set:golden")
    story.gate.wait_for_verification(story.name, v5, timeout_s=240)
    shopped = story.refusal(v5)
    assert "every attempt counts" in shopped and "golden v2" in shopped, shopped

    assert story.client.get_registered_model(story.name).aliases == {"champion": v2}
    chain = story.cli("audit", "verify", story.name)
    assert chain.returncode == 0 and "audit log intact" in chain.stdout, chain.stdout + chain.stderr


def _subset(golden: pd.DataFrame, story: Story, workdir: Path) -> Path:
    """The rows where the strong candidate is right and the weak champion wrong, plus a few others."""
    strong = story.models["strong"].predict(golden[STRONG])
    weak = story.models["weak"].predict(golden[WEAK])
    label = golden["label"].to_numpy()
    path = workdir / "subset.parquet"
    golden[((strong == label) & (weak != label)) | (np.arange(len(golden)) % 7 == 0)].to_parquet(path)
    return path


def _friendly(story: Story, table: pd.DataFrame) -> pd.DataFrame:
    """A set where the weak model beats the strong one: the rows only the weak one gets right, with
    half the rows both get right or wrong — what an evaluator shopping for a pass would hope for."""
    strong = story.models["strong"].predict(table[STRONG])
    weak = story.models["weak"].predict(table[WEAK])
    label = table["label"].to_numpy()
    wins = (weak == label) & (strong != label)
    both = (weak == strong)
    return table[wins | (both & (np.arange(len(table)) % 2 == 0))].reset_index(drop=True)


def _replay(server: MlflowServer, story: Story, *, from_version: str, onto_version: str) -> None:
    """Copy a passed verification's result and signature onto another candidate's request row."""
    engine = create_engine(server.backend_uri)
    with engine.begin() as connection:
        rows = {row.candidate_version: row for row in connection.execute(text(
            "SELECT id, candidate_version, status, result, signature, error FROM gatekeeper_verifications "
            "WHERE model_name = :name"), {"name": story.name})}
        passed, target = rows[from_version], rows[onto_version]
        assert passed.status == "passed", passed
        connection.execute(text("UPDATE gatekeeper_verifications SET status = :status, result = :result, "
                                "signature = :signature, error = :error WHERE id = :id"),
                           {"status": passed.status, "result": passed.result, "signature": passed.signature,
                            "error": passed.error, "id": target.id})
    engine.dispose()


def test_verifier_down_then_an_external_worker_verifies(tmp_path):
    """``GATEKEEPER_VERIFIER=external``: the server starts no verifier. Until one claims the
    request the gate refuses ("pending", then "verifier down" with what to do); a
    ``gatekeeper verify-worker`` pointed at the database then verifies, and the promotion passes."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    db_uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {"GATEKEEPER_VERIFIER": "external", "GATEKEEPER_VERIFIER_TIMEOUT": "2"}
    with MlflowServer(tmp_path, db_uri, policy=policy, env=env) as server:
        story = Story(server, tmp_path)
        story.register_set("golden", _table(600, 2), "golden.parquet")
        v1 = story.register("weak")
        story.evaluate(v1, "set:golden")  # its preview asks the gate: the request is made
        time.sleep(3)
        down = story.refusal(v1)
        assert "verifier down" in down and "has not been claimed" in down and "gatekeeper verify-worker" in down, down
        worker = subprocess.run(
            [sys.executable, "-m", "gatekeeper_cli.main", "--tracking-uri", db_uri, "verify-worker", "--once",
             "--artifacts-destination", str(tmp_path / "artifacts")],
            capture_output=True, text=True, timeout=300, env={**os.environ, "DO_NOT_TRACK": "true"})
        assert worker.returncode == 0, worker.stdout + worker.stderr
        assert story.gate.promote(story.name, v1)["verdict"] == "promote"


def test_under_basic_auth_only_admins_and_the_policys_registrars_register_sets(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY + "registrars: [Bob]\n")
    env = {"GATEKEEPER_BASIC_AUTH": "true", "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password-123",
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret"}
    admin = ("admin", "admin-password-123")
    golden = _table(300, 2)
    golden.to_parquet(tmp_path / "golden.parquet")
    from registry_hooks.eval_sets import describe_table

    facts = describe_table(str(tmp_path / "golden.parquet"), "label")
    body = {"name": "golden", "source": str(tmp_path / "golden.parquet"), "label_column": "label",
            "content_hash": facts.content_hash, "n_rows": facts.n_rows, "columns": [list(c) for c in facts.columns],
            "keys_digest": facts.keys_digest}
    with MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", policy=policy, env=env) as server:
        for user in ("alice", "bob"):
            created = requests.post(f"{server.url}/api/2.0/mlflow/users/create", auth=admin, timeout=30,
                                    json={"username": user, "password": f"{user}-password-123"})
            assert created.status_code == 200, created.text
        route = f"{server.url}/gatekeeper/api/sets/register"
        assert requests.post(route, json=body, timeout=30).status_code == 401  # nobody signed in
        refused = requests.post(route, json=body, auth=("alice", "alice-password-123"), timeout=30)
        assert refused.status_code == 403, refused.text
        listed = requests.get(f"{server.url}/gatekeeper/api/sets", auth=("alice", "alice-password-123"), timeout=30)
        assert listed.status_code == 200 and listed.json() == {"sets": []}  # alice may read; nothing was recorded
        accepted = requests.post(route, json=body, auth=("bob", "bob-password-123"), timeout=30)
        assert accepted.status_code == 200 and accepted.json()["set"]["created_by"] == "bob", accepted.text
        cli = subprocess.run([sys.executable, "-m", "gatekeeper_cli.main", "--tracking-uri", server.url, "sets",
                              "register", "golden", str(tmp_path / "golden.parquet")], capture_output=True, text=True,
                             timeout=300, env={**os.environ, "MLFLOW_TRACKING_USERNAME": "admin",
                                               "MLFLOW_TRACKING_PASSWORD": "admin-password-123"})
        assert cli.returncode == 0 and "golden v1" in cli.stdout, cli.stdout + cli.stderr  # same table: no new version
