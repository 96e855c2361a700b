"""The gate's verifier daemon as real processes, no mocks: one per process serving every request,
started again after ``kill -9``, gone once its parent is (after answering what it was asked), and
started ahead by the store only inside a server whose policy verifies.

The requests name a set nobody registered: the daemon answers each with an error in well under a
second once warm, which is all these tests need from a verification."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from plugins import verifier_launch
from registry_hooks import verification
from registry_hooks.audit.log import migrate
from registry_hooks.audit.models import SqlVerification
from registry_hooks.contract import SECRET_ENV, VERIFIER_ENV
from registry_hooks.secret import server_secret
from registry_hooks.verification import VerificationKey

pytestmark = pytest.mark.timeout(180)
KEY = VerificationKey("run-1", "1" * 64, "m", "2", "1", "unregistered", 1, "3" * 64, 256)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A gate database of its own (so a daemon of its own); the daemon is stopped afterwards."""
    monkeypatch.delenv(VERIFIER_ENV, raising=False)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    db_uri = f"sqlite:///{tmp_path / 'gate.db'}"
    engine = create_engine(db_uri)
    migrate(engine)
    yield db_uri, engine
    pid = verifier_launch.daemon_pid(db_uri)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    engine.dispose()


def _answer(engine, key: VerificationKey, limit_s: float = 120) -> SqlVerification:
    """The request row once a verifier finished it (read directly: ``ensure`` would start it again)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with Session(engine) as session:
            row = session.query(SqlVerification).filter_by(evidence_run_id=key.evidence_run_id).one()
            if row.status in verification.FINISHED:
                return row
        time.sleep(0.2)
    raise AssertionError(f"request of {key.evidence_run_id} not answered in {limit_s} s (status {row.status})")


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_one_daemon_per_process_answers_every_request_the_gate_counted(store):
    db_uri, engine = store
    uncounted = replace(KEY, evidence_run_id="nobody-started-me")
    with Session(engine) as session, session.begin():  # a request no gate counted: not the daemon's
        verification.request(session, uncounted, int(time.time() * 1000))
    second = replace(KEY, evidence_run_id="run-2")
    secret = server_secret(engine)
    assert verifier_launch.ensure(engine, db_uri, KEY, secret).status == verification.PENDING
    pid = verifier_launch.daemon_pid(db_uri)
    assert pid is not None
    assert verifier_launch.ensure(engine, db_uri, second, secret).status == verification.PENDING
    assert verifier_launch.daemon_pid(db_uri) == pid  # the same daemon, not a second process
    for key in (KEY, second):
        row = _answer(engine, key)
        assert row.status == verification.ERROR and "no evaluation set named 'unregistered'" in row.error
        assert row.worker.endswith(f":{pid}") and row.tries == 1
        assert "could not be done" in verifier_launch.log_path(db_uri, row.id).read_text()
    with Session(engine) as session:
        left = session.query(SqlVerification).filter_by(evidence_run_id=uncounted.evidence_run_id).one()
        assert (left.status, left.tries) == (verification.PENDING, 0)
    assert verifier_launch.daemon_pid(db_uri) == pid


def test_a_killed_daemon_is_started_again_by_the_next_ensure(store):
    db_uri, engine = store
    secret = server_secret(engine)
    verifier_launch.ensure(engine, db_uri, KEY, secret)
    first = verifier_launch.daemon_pid(db_uri)
    os.kill(first, signal.SIGKILL)  # before it could take the request: importing mlflow alone takes seconds
    deadline = time.monotonic() + 10
    while verifier_launch.daemon_pid(db_uri) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert verifier_launch.daemon_pid(db_uri) is None
    assert verifier_launch.ensure(engine, db_uri, KEY, secret).status == verification.PENDING
    second = verifier_launch.daemon_pid(db_uri)
    assert second not in (None, first)
    row = _answer(engine, KEY)
    assert row.worker.endswith(f":{second}") and row.tries == 1  # restarting the daemon is no new start


def test_the_daemon_answers_then_exits_once_its_parent_is_gone(store):
    """A CLI asks and quits at once: the daemon still answers, then sees its parent gone and exits."""
    db_uri, engine = store
    parent = textwrap.dedent(f"""
        from sqlalchemy import create_engine
        from plugins import verifier_launch
        from registry_hooks.secret import server_secret
        from registry_hooks.verification import VerificationKey
        engine = create_engine({db_uri!r})
        key = VerificationKey(*{tuple(vars(KEY).values())!r})
        verifier_launch.ensure(engine, {db_uri!r}, key, server_secret(engine))
        print(verifier_launch.daemon_pid({db_uri!r}))
    """)
    done = subprocess.run([sys.executable, "-c", parent], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    pid = int(done.stdout.split()[-1])
    row = _answer(engine, KEY)
    assert row.status == verification.ERROR and row.worker.endswith(f":{pid}")
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def test_the_store_starts_the_daemon_ahead_only_inside_a_server_whose_policy_verifies(store, monkeypatch):
    from registry_hooks.policy import Policy

    db_uri, _ = store
    def policy(sample: int) -> Policy:
        return Policy.from_dict({"defaults": {"evaluation": {"sets": ["golden"], "verify": {"sample": sample}}}})

    verifying = policy(256)
    verifier_launch.prestart(db_uri, verifying)  # a CLI or a script: left to the first ensure
    assert verifier_launch.daemon_pid(db_uri) is None
    monkeypatch.setenv("_MLFLOW_SERVER_FILE_STORE", db_uri)  # what `mlflow server` sets for its workers
    verifier_launch.prestart(db_uri, policy(0))
    assert verifier_launch.daemon_pid(db_uri) is None
    verifier_launch.prestart(db_uri, verifying)
    assert verifier_launch.daemon_pid(db_uri) is not None
