"""The outbox (``registry_hooks.outbox``) on a real SQLite file migrated by the gate's own chain, and
the notifier's pure parts: its configuration, its payload and its signature against MLflow's."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from plugins import notifier
from registry_hooks import outbox
from registry_hooks.audit import log as audit
from registry_hooks.audit.models import SqlOutbox
from registry_hooks.transactions import retrying

SECRET = b"s" * 32
URLS = ("http://127.0.0.1:9/a", "https://hooks.example.com/b?token=1")
NOW = 1_800_000_000_000
LEASE = 60_000


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'outbox.db'}", connect_args={"timeout": 30})
    audit.migrate(engine)
    yield engine
    engine.dispose()


def _in(engine, work):
    def once():
        with Session(engine) as session, session.begin():
            return work(session)

    return retrying(once)


def _enqueue(engine, urls=URLS, payload='{"entity": "gatekeeper_decision"}') -> list[str]:
    return _in(engine, lambda s: outbox.enqueue(s, urls, "gatekeeper_decision.promote", payload, SECRET, NOW))


def _single(engine) -> int:
    _enqueue(engine, urls=URLS[:1])
    (row_id,) = _due(engine)
    return row_id


def _row(engine, row_id) -> SqlOutbox:
    with Session(engine) as session:
        return session.get(SqlOutbox, row_id)


def _claim(engine, row_id, now=NOW, max_attempts=10):
    return _in(engine, lambda s: outbox.claim(s, row_id, now, LEASE, max_attempts))


def _due(engine, now=NOW, max_attempts=10, urls=URLS):
    return _in(engine, lambda s: outbox.due(s, urls, now, max_attempts, 100))


def test_one_row_per_url_due_at_once_with_its_own_stable_delivery_id(engine):
    ids = _enqueue(engine)
    assert len(set(ids)) == 2
    first, second = _due(engine)
    message = _claim(engine, first)
    assert (message.url, message.delivery_id, message.attempts) == (URLS[0], ids[0], 1)
    assert outbox.authentic(SECRET, message)
    assert _claim(engine, first) is None, "a claimed row is nobody else's until its lease ends"
    assert _due(engine) == [second]

    assert _in(engine, lambda s: outbox.failed(s, message, "HTTP 503 Service Unavailable", NOW, 2.0))
    row = _row(engine, first)
    assert (row.attempts, row.next_attempt_at, row.claimed_until) == (1, NOW + 2000, None)
    assert row.last_error == "HTTP 503 Service Unavailable"
    assert _claim(engine, first, now=NOW + 1999) is None, "not due before its pause is over"
    again = _claim(engine, first, now=NOW + 2000)
    assert (again.delivery_id, again.attempts, again.payload) == (ids[0], 2, message.payload)

    _in(engine, lambda s: outbox.delivered(s, again, NOW + 2100))
    assert _row(engine, first).delivered_at == NOW + 2100
    assert _due(engine, now=NOW + 10**9) == [second]


def test_only_configured_urls_are_ever_due(engine):
    _enqueue(engine, urls=("http://attacker.example/x",))
    assert _due(engine) == []


def test_of_several_claimers_exactly_one_wins_each_row(engine):
    _in(engine, lambda s: [outbox.enqueue(s, URLS[:1], "e", str(i), SECRET, NOW) for i in range(40)])
    rows = _due(engine)
    assert len(rows) == 40
    start = threading.Barrier(4)

    def claimer(_):  # each with its own engine, as each server worker has
        own = create_engine(engine.url, connect_args={"timeout": 30})
        start.wait()
        try:
            return [row_id for row_id in rows if _claim(own, row_id) is not None]
        finally:
            own.dispose()

    with ThreadPoolExecutor(4) as pool:
        won = [row_id for wins in pool.map(claimer, range(4)) for row_id in wins]
    assert sorted(won) == rows, "every row claimed exactly once"


def test_a_lost_lease_is_taken_over_and_fences_the_old_holder(engine):
    row_id = _single(engine)
    stale = _claim(engine, row_id)
    assert _claim(engine, row_id, now=NOW + LEASE - 1) is None
    fresh = _claim(engine, row_id, now=NOW + LEASE + 1)
    assert fresh is not None and fresh.attempts == 2 and fresh.delivery_id == stale.delivery_id
    assert not _in(engine, lambda s: outbox.failed(s, stale, "timed out", NOW + LEASE + 2, 2.0))
    assert _row(engine, row_id).claimed_until == fresh.claimed_until, "the old holder changed nothing"


def test_the_backoff_doubles_up_to_five_minutes():
    assert [outbox.pause_s(n, 2.0) for n in range(1, 11)] == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert [outbox.pause_s(n, 0.1) for n in range(1, 4)] == pytest.approx([0.1, 0.2, 0.4])


def test_after_the_last_attempt_the_row_stays_visible_and_a_higher_limit_retries_it(engine):
    row_id = _single(engine)
    now = NOW
    for _ in range(3):
        message = _claim(engine, row_id, now=now, max_attempts=3)
        _in(engine, lambda s: outbox.failed(s, message, "ConnectionError: refused", now, 0.001))
        now += 1000
    assert _due(engine, now=now, max_attempts=3) == [] and _claim(engine, row_id, now=now, max_attempts=3) is None
    row = _row(engine, row_id)
    assert (row.attempts, row.delivered_at, row.last_error) == (3, None, "ConnectionError: refused")
    assert _due(engine, now=now, max_attempts=4) == [row_id]


def test_a_row_written_outside_the_gate_is_refused_and_never_due_again(engine):
    row_id = _single(engine)
    with Session(engine) as session, session.begin():  # someone with write access to the table
        session.get(SqlOutbox, row_id).payload = '{"action": "promote", "forged": true}'
    message = _claim(engine, row_id)
    assert not outbox.authentic(SECRET, message)
    assert _in(engine, lambda s: outbox.refused(s, message, "seal does not match"))
    assert _due(engine, now=NOW + 10**12, max_attempts=100) == []


def test_the_signature_is_mlflows():
    payload = json.dumps({"entity": "gatekeeper_decision", "action": "refuse", "data": {"model_name": "ünïcode"}})
    ours = notifier.signature("webhook-secret-123", "4f1c-delivery", "1800000000", payload)
    assert ours == _generate_hmac_signature("webhook-secret-123", "4f1c-delivery", "1800000000", payload)
    message = outbox.Message(1, URLS[0], "e", payload, "4f1c-delivery", "", 1, 0)
    sent = notifier.headers("webhook-secret-123", message, "1800000000")
    assert sent["X-MLflow-Signature"] == ours and sent["X-MLflow-Delivery-Id"] == "4f1c-delivery"
    assert sent["X-MLflow-Timestamp"] == "1800000000"


def _record() -> audit.DecisionRecord:
    return audit.DecisionRecord(model_name="m", candidate_version="2", baseline_version="1", action="refuse",
                                verdict="refuse_worse", target="alias:champion", route="promote", actor="ana",
                                reasons=["worse"], checks=[], evidence_run_ids=[], policy_hash="h", id=7,
                                created_at=1_800_000_000_000)


def test_the_payload_is_shaped_like_mlflows():
    event, payload = notifier.decision_event(_record())
    body = json.loads(payload)
    assert event == "gatekeeper_decision.refuse"
    assert (body["entity"], body["action"]) == ("gatekeeper_decision", "refuse")
    assert body["timestamp"] == "2027-01-15T08:00:00+00:00"
    assert body["data"] == {"decision_id": 7, "model_name": "m", "candidate_version": "2", "baseline_version": "1",
                            "verdict": "refuse_worse", "target": "alias:champion", "actor": "ana", "reasons": ["worse"],
                            "decision_url": "/gatekeeper/decision?id=7"}


GOOD = {notifier.URLS_ENV: "http://127.0.0.1:8080/hook, https://hooks.example.com/x?t=1",
        notifier.SECRET_ENV: "a-webhook-secret-of-32-characters"}


def _settings(monkeypatch, env):
    for name in (notifier.URLS_ENV, notifier.SECRET_ENV, notifier.MAX_ATTEMPTS_ENV, notifier.FIRST_RETRY_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return notifier.settings()


def test_settings_defaults_and_off(monkeypatch):
    config = _settings(monkeypatch, GOOD)
    assert config.urls == ("http://127.0.0.1:8080/hook", "https://hooks.example.com/x?t=1")
    assert (config.max_attempts, config.first_retry_s) == (10, 2.0)
    assert _settings(monkeypatch, {notifier.URLS_ENV: " "}) is None
    assert _settings(monkeypatch, {}) is None


@pytest.mark.parametrize(("env", "words"), [
    ({notifier.SECRET_ENV: ""}, "GATEKEEPER_WEBHOOK_SECRET must hold"),
    ({notifier.SECRET_ENV: "short"}, "at least 16"),
    ({notifier.SECRET_ENV: "x" * 32, "GATEKEEPER_SECRET": "x" * 32}, "must differ from GATEKEEPER_SECRET"),
    ({notifier.URLS_ENV: "ftp://example.com/x"}, "http:// or https://"),
    ({notifier.URLS_ENV: "example.com/hook"}, "http:// or https://"),
    ({notifier.URLS_ENV: "http://"}, "with a host"),
    ({notifier.URLS_ENV: "http://user:pw@example.com/"}, "credentials"),
    ({notifier.URLS_ENV: "http://example.com:99999/"}, "not a receiver URL"),
    ({notifier.URLS_ENV: "http://a.example/,"}, "not a receiver URL"),
    ({notifier.URLS_ENV: "http://a.example/x y"}, "no spaces"),
    ({notifier.URLS_ENV: "http://a.example/, http://a.example/"}, "twice"),
    ({notifier.MAX_ATTEMPTS_ENV: "0"}, "from 1 to 100"),
    ({notifier.MAX_ATTEMPTS_ENV: "2.5"}, "from 1 to 100"),
    ({notifier.MAX_ATTEMPTS_ENV: "1_0"}, "from 1 to 100"),
    ({notifier.FIRST_RETRY_ENV: "0"}, "GATEKEEPER_WEBHOOK_FIRST_RETRY_S='0'"),
    ({notifier.FIRST_RETRY_ENV: "nan"}, "from 0.001 to 300"),
    ({notifier.FIRST_RETRY_ENV: "301"}, "from 0.001 to 300"),
    ({notifier.FIRST_RETRY_ENV: "-1"}, "from 0.001 to 300"),
])
def test_settings_are_read_strictly(monkeypatch, env, words):
    with pytest.raises(ValueError) as raised:
        _settings(monkeypatch, GOOD | env)
    assert words in str(raised.value)


def test_the_store_call_writes_one_row_per_configured_url_and_none_when_off(engine, monkeypatch):
    def rows():
        with Session(engine) as session:
            return session.query(SqlOutbox.url, SqlOutbox.payload).order_by(SqlOutbox.id).all()

    _settings(monkeypatch, {})
    _in(engine, lambda s: notifier.enqueue(s, _record(), SECRET))
    assert rows() == []
    config = _settings(monkeypatch, GOOD)
    _in(engine, lambda s: notifier.enqueue(s, _record(), SECRET))
    assert [url for url, _ in rows()] == list(config.urls)
    assert {payload for _, payload in rows()} == {notifier.decision_event(_record())[1]}
