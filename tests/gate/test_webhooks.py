"""Every decision notified, against a real gated server on SQLite and PostgreSQL.

A receiver is a small ``http.server`` on 127.0.0.1 that answers what the test scripts (200 unless
told otherwise) and records every POST; it verifies nothing itself: the tests check each POST's
signature with MLflow's own ``_generate_hmac_signature``, so a receiver written for MLflow's
webhooks verifies ours. The outbox table is read directly to see attempts and delivery.
"""

from __future__ import annotations

import json
import os
import signal
import time
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from benchmarks.evidence import Scenario
from benchmarks.servers import MlflowServer
from gatekeeper_cli.client import PromotionRefused
from plugins import notifier
from registry_hooks.contract import OUTBOX_TABLE
from tests.support.webhooks import SECRET, Receiver

DEADLINE_S = 30


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def gate(request, tmp_path_factory, gate_policy):
    """A gated server whose decisions are notified to one receiver, retrying fast (0.2 s first)."""
    workdir = tmp_path_factory.mktemp(f"webhooks-{request.param}")
    receiver = Receiver().start()
    env = {notifier.URLS_ENV: receiver.url, notifier.SECRET_ENV: SECRET, notifier.FIRST_RETRY_ENV: "0.2"}
    try:
        if request.param == "sqlite":
            uri = f"sqlite:///{workdir}/mlflow.db"
            with MlflowServer(workdir, uri, policy=gate_policy, env=env) as server:
                yield _gate(server, receiver, uri)
            return
        with request.getfixturevalue("postgres_uri_factory")() as uri:
            with MlflowServer(workdir, uri, policy=gate_policy, env=env) as server:
                yield _gate(server, receiver, uri)
    finally:
        receiver.stop()


def _gate(server: MlflowServer, receiver: Receiver, uri: str) -> SimpleNamespace:
    engine = sa.create_engine(uri)
    return SimpleNamespace(server=server, receiver=receiver, engine=engine,
                           outbox=lambda model: _outbox(engine, model))


def _outbox(engine, model: str) -> list[dict[str, Any]]:
    """The outbox rows about ``model``, oldest first."""
    with engine.connect() as connection:
        rows = connection.execute(sa.text(f"SELECT * FROM {OUTBOX_TABLE} ORDER BY id")).mappings().all()
    return [dict(row) for row in rows if json.loads(row["payload"])["data"]["model_name"] == model]


def wait_for(what: str, check: Callable[[], Any], deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``check`` until it returns something true; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"not within {deadline_s} s: {what}")


def refused(gate, model: str) -> dict[str, Any]:
    """A new version of ``model`` promoted without evidence: the gate refuses and records it."""
    scenario = Scenario(gate.server.url, model)
    version = scenario.version()
    with pytest.raises(PromotionRefused):
        scenario.gate.promote(model, version)
    return scenario.gate.history(model, limit=1)[0]


def test_every_kind_of_decision_is_posted_signed_and_once(gate, model_name):
    scenario = Scenario(gate.server.url, model_name)
    first = scenario.first_release()
    second = scenario.version()
    with pytest.raises(PromotionRefused):
        scenario.gate.promote(model_name, second)
    scenario.gate.promote(model_name, second, force=True, reason="the incident needs it now")
    scenario.gate.rollback(model_name, reason="the override misbehaved")
    decisions = scenario.gate.history(model_name)[::-1]
    assert [d["action"] for d in decisions] == ["promote", "refuse", "override", "rollback"]

    wait_for("four notifications", lambda: len(gate.receiver.about(model_name)) >= 4)
    time.sleep(1)  # nothing is sent twice: a few more polls add nothing
    got = sorted(gate.receiver.about(model_name), key=lambda r: r.json["data"]["decision_id"])
    assert len(got) == 4 and all(r.signed() for r in got)
    assert not got[0].signed("another-secret-of-enough-length")
    for post, decision, row in zip(got, decisions, gate.outbox(model_name)):
        body = post.json
        assert (body["entity"], body["action"]) == ("gatekeeper_decision", decision["action"])
        assert body["data"]["decision_id"] == decision["id"] and body["data"]["verdict"] == decision["verdict"]
        assert body["data"]["decision_url"] == f"/gatekeeper/decision?id={decision['id']}"
        assert (post.delivery_id, post.body, row["attempts"]) == (row["delivery_id"], row["payload"], 1)
        assert row["delivered_at"] is not None and post.headers["Content-Type"] == "application/json"
    assert got[0].json["data"]["candidate_version"] == first and got[0].json["data"]["baseline_version"] is None
    assert got[2].json["data"]["reasons"][0].endswith("the incident needs it now")


def test_a_receiver_failing_twice_gets_the_third_attempt_with_the_same_delivery_id(gate, model_name):
    with gate.receiver.lock:
        gate.receiver.answers = [503, 503]
    decision = refused(gate, model_name)
    (row,) = wait_for("delivered", lambda: [r for r in gate.outbox(model_name) if r["delivered_at"]])
    posts = gate.receiver.about(model_name)
    assert len(posts) == 3 and {p.delivery_id for p in posts} == {row["delivery_id"]}
    assert all(p.signed() for p in posts) and posts[0].json["data"]["decision_id"] == decision["id"]
    assert row["attempts"] == 3 and row["last_error"].startswith("HTTP 503")


def _failing(gate, model: str, attempts: int = 1) -> dict[str, Any]:
    """The model's one outbox row, once it has failed ``attempts`` times."""
    rows = wait_for(f"{attempts} failed attempt(s)",
                    lambda: [r for r in gate.outbox(model) if r["attempts"] >= attempts and r["last_error"]])
    assert rows[0]["delivered_at"] is None
    return rows[0]


def test_a_receiver_down_at_the_decision_still_gets_it_when_it_comes_up(gate, model_name):
    gate.receiver.stop()
    try:
        refused(gate, model_name)
        row = _failing(gate, model_name, attempts=2)
        assert "Connection" in row["last_error"], row["last_error"]
    finally:
        gate.receiver.start()
    wait_for("delivered after the receiver came up", lambda: [r for r in gate.outbox(model_name) if r["delivered_at"]])
    (post,) = gate.receiver.about(model_name)
    assert post.signed() and post.delivery_id == row["delivery_id"]


def test_a_server_killed_before_delivery_delivers_after_restart(gate, model_name):
    """Last in the module: it kills the module's server with SIGKILL and starts it again on the same database."""
    gate.receiver.stop()
    try:
        refused(gate, model_name)
        row = _failing(gate, model_name)
        os.killpg(gate.server.process.pid, signal.SIGKILL)
        gate.server.process.wait(timeout=10)
    finally:
        gate.receiver.start()
    time.sleep(1)
    assert gate.receiver.about(model_name) == [] and not gate.outbox(model_name)[0]["delivered_at"]
    gate.server.start()
    wait_for("delivered by the restarted server", lambda: [r for r in gate.outbox(model_name) if r["delivered_at"]])
    (post,) = gate.receiver.about(model_name)
    assert post.signed() and post.delivery_id == row["delivery_id"]


@pytest.mark.parametrize(("env", "words"), [
    ({notifier.URLS_ENV: "http://127.0.0.1:9/hook"}, "GATEKEEPER_WEBHOOK_SECRET must hold"),
    ({notifier.URLS_ENV: "127.0.0.1:9/hook", notifier.SECRET_ENV: SECRET}, "is not a receiver URL"),
])
def test_the_server_refuses_to_start_with_a_bad_webhook_setting(tmp_path, gate_policy, env, words):
    server = MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", policy=gate_policy, env=env)
    with pytest.raises(RuntimeError, match="mlflow server exited"):
        server.start(timeout=60)
    assert words in server.log(), server.log()[-3000:]
