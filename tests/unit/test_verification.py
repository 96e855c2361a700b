"""Verification requests on a real database: the secret sample, signatures, forged and replayed
rows, staleness, exclusive claims, and the gate's ``ensure`` without spawning."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from plugins import verifier_launch
from registry_hooks import verification as v
from registry_hooks.audit.log import migrate
from registry_hooks.audit.models import SqlVerification
from registry_hooks.contract import VERIFIER_ENV
from registry_hooks.transactions import retrying

SECRET = b"s" * 32
KEY = v.VerificationKey("run-a", "a" * 64, "road-scenes", "3", "2", "golden", 2, "c" * 64, 256)


def _now() -> int:
    return int(time.time() * 1000)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'gate.db'}")
        migrate(engine)
        yield engine
        engine.dispose()
        return
    with request.getfixturevalue("postgres_uri_factory")() as uri:
        engine = create_engine(uri)
        migrate(engine)
        yield engine
        engine.dispose()


def _request(engine, key=KEY) -> int:
    def once():
        with Session(engine) as session, session.begin():
            return v.request(session, key, _now())

    return retrying(once)


def _lookup(engine, key=KEY, secret=SECRET, now=None):
    with Session(engine) as session:
        return v.lookup(session, key, secret, now or _now())


def _pass(engine, key=KEY, result=None) -> v.Claim:
    """A request claimed and finished as passed, as a verifier does it."""
    request_id = _request(engine, key)
    with Session(engine) as session, session.begin():
        claim = v.claim(session, "test:1", _now(), request_id)
    with Session(engine) as session, session.begin():
        assert v.finish(session, claim, v.PASSED, result or {"rows_checked": 256, "n_rows": 3000}, None, SECRET, _now())
    return claim


# -- the sample -------------------------------------------------------------------------------------


def test_the_sample_is_fixed_per_key_and_secret_and_differs_otherwise():
    rows = v.sample_rows(SECRET, KEY, 3000)
    assert len(rows) == 256 and len(np.unique(rows)) == 256
    assert (np.diff(rows) > 0).all() and rows.min() >= 0 and rows.max() < 3000
    np.testing.assert_array_equal(rows, v.sample_rows(SECRET, KEY, 3000))
    others = [v.sample_rows(SECRET, replace(KEY, evidence_run_id="run-b"), 3000),
              v.sample_rows(SECRET, replace(KEY, outcomes_sha256="b" * 64), 3000),
              v.sample_rows(b"t" * 32, KEY, 3000)]
    for other in others:
        assert len(np.intersect1d(rows, other)) < 100  # about 22 shared by chance
    # the model, set or sample size do not move the rows: only the evidence and the secret do
    np.testing.assert_array_equal(v.sample_rows(SECRET, replace(KEY, candidate_version="9"), 3000), rows)


def test_the_sample_never_exceeds_the_table():
    np.testing.assert_array_equal(v.sample_rows(SECRET, KEY, 100), np.arange(100))
    assert len(v.sample_rows(SECRET, KEY, 0)) == 0
    assert len(v.sample_rows(SECRET, replace(KEY, sample_size=1), 100_000)) == 1
    with pytest.raises(ValueError):
        v.sample_rows(SECRET, replace(KEY, sample_size=0), 10)


def test_the_signature_covers_every_key_field_the_status_the_result_and_the_error():
    base = v.sign(SECRET, KEY, v.PASSED, '{"rows_checked": 256}')
    assert base == v.sign(SECRET, KEY, v.PASSED, '{"rows_checked": 256}')
    changed = [v.sign(SECRET, replace(KEY, **{name: value}), v.PASSED, '{"rows_checked": 256}')
               for name, value in [("evidence_run_id", "run-b"), ("outcomes_sha256", "b" * 64), ("model_name", "m"),
                                   ("candidate_version", "4"), ("baseline_version", None), ("set_name", "other"),
                                   ("set_version", 3), ("set_content_hash", "d" * 64), ("sample_size", 64)]]
    changed += [v.sign(SECRET, KEY, v.FAILED, '{"rows_checked": 256}'), v.sign(SECRET, KEY, v.PASSED, '{"rows_checked": 255}'),
                v.sign(SECRET, KEY, v.PASSED, '{"rows_checked": 256}', "oops"), v.sign(b"t" * 32, KEY, v.PASSED, '{"rows_checked": 256}')]
    assert len({base, *changed}) == len(changed) + 1


# -- the rows -----------------------------------------------------------------------------------------


def test_a_request_is_made_once_per_evidence_and_rekeyed_when_the_key_changes(engine):
    first = _request(engine)
    assert _request(engine) == first
    fact = _lookup(engine)
    assert fact.status == v.PENDING and fact.request_id == first and not fact.trusted
    assert "request #" in fact.message and "waits for a verifier" in fact.message
    bigger = replace(KEY, sample_size=512)
    assert _lookup(engine, bigger) is None  # the row answers another key
    assert _request(engine, bigger) == first
    assert _lookup(engine, KEY) is None and _lookup(engine, bigger).status == v.PENDING


def test_a_signed_answer_is_trusted_and_says_what_was_checked(engine):
    _pass(engine, result={"rows_checked": 256, "n_rows": 3000})
    fact = _lookup(engine)
    assert fact.status == v.PASSED and fact.trusted and fact.signature
    assert fact.message.endswith("passed: re-scored 256 of 3,000 rows of golden v2, every label and prediction "
                                 "matched (probabilities within 0.0001)")
    assert _lookup(engine, secret=b"t" * 32).status == v.FORGED  # another server's secret


def test_a_row_written_by_anyone_else_is_forged(engine):
    with Session(engine) as session, session.begin():
        row = SqlVerification(**{f: getattr(KEY, f) for f in KEY.__dataclass_fields__}, status=v.PASSED,
                              requested_at=_now(), finished_at=_now(), tries=1, result='{"rows_checked": 256}',
                              signature="0" * 64)
        session.add(row)
    fact = _lookup(engine)
    assert fact.status == v.FORGED and not fact.trusted
    assert fact.message == f"verification record #{fact.request_id} is not signed by this server: ignored"


def test_a_real_answer_replayed_onto_other_evidence_is_forged(engine):
    _pass(engine)
    other = replace(KEY, evidence_run_id="run-b")
    with Session(engine) as session, session.begin():
        genuine = session.query(SqlVerification).one()
        copy = {c.name: getattr(genuine, c.name) for c in SqlVerification.__table__.columns if c.name != "id"}
        session.add(SqlVerification(**copy | {"evidence_run_id": other.evidence_run_id}))
    assert _lookup(engine).status == v.PASSED
    assert _lookup(engine, other).status == v.FORGED
    with Session(engine) as session, session.begin():  # and an edited answer: failed turned into passed
        row = session.query(SqlVerification).filter_by(evidence_run_id="run-a").one()
        row.result = '{"rows_checked": 999, "n_rows": 3000}'
    assert _lookup(engine).status == v.FORGED


def test_unclaimed_or_silent_requests_are_down_with_the_reason(engine):
    request_id = _request(engine)
    later = _now() + (v.UNCLAIMED_AFTER_S + 5) * 1000
    down = _lookup(engine, now=later)
    assert down.status == v.DOWN and f"request #{request_id} has not been claimed for 6" in down.message
    assert "gatekeeper verify-worker" in down.message
    with Session(engine) as session, session.begin():
        claim = v.claim(session, "host:42", _now(), request_id)
    assert _lookup(engine).status == v.RUNNING
    silent = _lookup(engine, now=_now() + (v.SILENT_AFTER_S + 5) * 1000)
    assert silent.status == v.DOWN and "claimed by host:42, which has been silent for 6" in silent.message
    with Session(engine) as session, session.begin():
        assert v.heartbeat(session, claim, _now())


def test_a_claim_is_exclusive_even_when_verifiers_race(engine):
    request_id = _request(engine)
    barrier, won = threading.Barrier(6), []

    def verifier(n: int) -> None:
        barrier.wait()

        def once():
            with Session(engine) as session, session.begin():
                return v.claim(session, f"verifier:{n}", _now(), request_id)

        claim = retrying(once)
        if claim is not None:
            won.append(claim)

    threads = [threading.Thread(target=verifier, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and won[0].key == KEY
    loser = replace(won[0], worker="verifier:other")
    with Session(engine) as session, session.begin():  # a verifier without the claim can neither beat nor answer
        assert not v.heartbeat(session, loser, _now())
        assert not v.finish(session, loser, v.PASSED, {}, None, SECRET, _now())
        assert v.finish(session, won[0], v.FAILED, {"reason": "x"}, None, SECRET, _now())
    assert _lookup(engine).status == v.FAILED and _lookup(engine).message == f"verification #{request_id} failed: x"


def test_a_polling_worker_takes_requests_in_order_and_takes_over_silent_ones(engine):
    first, second = _request(engine), _request(engine, replace(KEY, evidence_run_id="run-b"))
    with Session(engine) as session, session.begin():
        a = v.claim(session, "w:1", _now(), count_try=True)
        b = v.claim(session, "w:2", _now(), count_try=True)
        assert (a.request_id, b.request_id, a.tries) == (first, second, 1)
        assert v.claim(session, "w:3", _now(), count_try=True) is None
    with Session(engine) as session, session.begin():
        assert v.release_silent(session, _now() + (v.SILENT_AFTER_S + 1) * 1000) == [first, second]
        again = v.claim(session, "w:3", _now(), count_try=True)
    assert again.request_id == first and again.tries == 2
    with Session(engine) as session, session.begin():  # the first worker lost it: its answer is dropped
        assert not v.finish(session, a, v.PASSED, {}, None, SECRET, _now())


# -- the gate's side ------------------------------------------------------------------------------


def test_ensure_requests_once_then_reads_the_answer(engine, monkeypatch):
    monkeypatch.setenv(VERIFIER_ENV, "external")
    fact = verifier_launch.ensure(engine, "sqlite:///unused.db", KEY, SECRET)
    assert fact.status == v.PENDING and "waits for a verifier" in fact.message
    assert verifier_launch.ensure(engine, "sqlite:///unused.db", KEY, SECRET).request_id == fact.request_id
    with Session(engine) as session, session.begin():
        claim = v.claim(session, "w:1", _now(), fact.request_id)
        v.finish(session, claim, v.PASSED, {"rows_checked": 5, "n_rows": 5}, None, SECRET, _now())
    assert verifier_launch.ensure(engine, "sqlite:///unused.db", KEY, SECRET).trusted
    monkeypatch.setenv(VERIFIER_ENV, "sometimes")
    refused = verifier_launch.ensure(engine, "sqlite:///unused.db", replace(KEY, evidence_run_id="x"), SECRET)
    assert refused.status == v.DOWN and "GATEKEEPER_VERIFIER must be 'spawn' or 'external'" in refused.message
