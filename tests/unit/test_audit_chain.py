"""The audit chain on a real SQLite database (MLflow's tables, then the gate's migrations): an intact
log verifies; with the append-only triggers dropped, an edited, deleted, reordered or forged row, a
cut-off tail, a history deleted with its head and a rewritten head are each named with their kind;
rows written before the chain verify, and are sealed by the first chained row."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from registry_hooks.audit import chain
from registry_hooks.audit import log as audit
from registry_hooks.audit.models import SqlDecision

SECRET = b"s" * 32


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """MLflow's tables and the gate's, made once (seconds); each test gets a copy."""
    path = tmp_path_factory.mktemp("audit") / "migrated.db"
    store = SqlAlchemyStore(f"sqlite:///{path}")
    audit.migrate(store.engine)
    store.engine.dispose()
    return path


@pytest.fixture()
def engine(migrated, tmp_path):
    path = tmp_path / "audit.db"
    shutil.copyfile(migrated, path)
    engine = create_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def record(model: str, n: int) -> audit.DecisionRecord:
    return audit.DecisionRecord(
        model_name=model, candidate_version=str(n), baseline_version=None, action="refuse",
        verdict="refuse_insufficient_evidence", target="alias 'champion'", route="test", actor="alice",
        reasons=[f"no evidence for v{n}"], checks=[{"name": "evidence", "outcome": "fail_insufficient"}],
        evidence_run_ids=[], policy_hash="p" * 64, digests={"policy": "p" * 64},
    )


def append(engine, model: str, n: int, secret: bytes = SECRET) -> audit.DecisionRecord:
    with Session(engine) as session, session.begin():
        session.execute(text("BEGIN IMMEDIATE"))  # as the store does under its per-model lock
        return audit.append(session, record(model, n), secret)


def verify(engine, model: str | None = None, secret: bytes = SECRET) -> chain.ChainReport:
    with Session(engine) as session:
        return chain.verify(session, secret, model)


def tamper(engine, *statements: str) -> None:
    """Run SQL as someone with write access to the database: the triggers are no obstacle to them."""
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER IF EXISTS gatekeeper_decisions_no_update"))
        connection.execute(text("DROP TRIGGER IF EXISTS gatekeeper_decisions_no_delete"))
        for statement in statements:
            connection.execute(text(statement))


def kinds(report: chain.ChainReport) -> set[tuple[str | None, int | None, str]]:
    return {(p.model_name, p.decision_id, p.kind) for p in report.problems}


@pytest.fixture()
def log(engine) -> dict[str, list[int]]:
    """Three decisions about ``a`` and two about ``b``, interleaved: ids a 1, 3, 5 and b 2, 4."""
    ids: dict[str, list[int]] = {"a": [], "b": []}
    for n, model in enumerate(["a", "b", "a", "b", "a"], start=1):
        ids[model].append(append(engine, model, n).id)
    return ids


def test_an_untouched_log_verifies_and_links_each_row_to_its_models_previous_one(engine, log):
    report = verify(engine)
    assert (report.ok, report.models, report.rows, report.problems, report.legacy) == (True, 2, 5, (), 0)
    with Session(engine) as session:
        a = audit.history(session, "a")[::-1]
    assert a[0].prev_hash == chain.GENESIS
    assert [r.prev_hash for r in a[1:]] == [r.row_hash for r in a[:-1]]  # b's rows in between do not count
    assert a[0].digests == {"policy": "p" * 64}
    assert verify(engine, "a").rows == 3 and verify(engine, "b").ok


def test_an_edited_reason_is_named(engine, log):
    target = log["a"][1]
    tamper(engine, f"UPDATE gatekeeper_decisions SET reasons = '[\"evidence passed\"]' WHERE id = {target}")
    report = verify(engine)
    assert not report.ok and kinds(report) == {("a", target, "edited")}
    assert "no longer matches its hash" in report.problems[0].message
    assert verify(engine, "b").ok  # the other model's chain is untouched


def test_a_deleted_middle_row_breaks_the_link_of_the_next(engine, log):
    tamper(engine, f"DELETE FROM gatekeeper_decisions WHERE id = {log['a'][1]}")
    found = kinds(verify(engine))
    assert ("a", log["a"][2], "broken_link") in found
    assert ("a", None, "missing_rows") in found and (None, None, "missing_rows") in found


def test_a_deleted_last_row_is_seen_by_the_head_and_its_id_is_never_reused(engine, log):
    last = log["a"][-1]
    tamper(engine, f"DELETE FROM gatekeeper_decisions WHERE id = {last}")
    assert ("a", last, "missing_tail") in kinds(verify(engine))
    assert append(engine, "b", 6).id == last + 1  # the sealed id is not handed out again
    assert ("a", last, "missing_tail") in kinds(verify(engine))  # a later decision does not hide it


def test_swapped_rows_are_reported_as_reordered(engine, log):
    first, second = log["a"][0], log["a"][1]
    columns = [c for c in SqlDecision.__table__.columns.keys() if c != "id"]
    swap = ", ".join(f"{c} = (SELECT {c} FROM gatekeeper_decisions WHERE id = {{other}})" for c in columns)
    tamper(engine,
           f"CREATE TABLE saved AS SELECT * FROM gatekeeper_decisions WHERE id IN ({first}, {second})",
           f"UPDATE gatekeeper_decisions SET {swap.replace('gatekeeper_decisions', 'saved').format(other=second)} "
           f"WHERE id = {first}",
           f"UPDATE gatekeeper_decisions SET {swap.replace('gatekeeper_decisions', 'saved').format(other=first)} "
           f"WHERE id = {second}")
    report = verify(engine)
    assert kinds(report) == {("a", first, "reordered"), ("a", second, "reordered")}
    assert f"holds the decision the gate wrote as #{second}" in report.problems[0].message


def test_a_row_forged_with_a_plain_hash_is_not_taken_for_the_gates(engine, log):
    with Session(engine) as session:
        last = session.get(SqlDecision, log["a"][-1])
        values = chain._values(last) | {"id": 6, "reasons": '["promoted after review"]', "action": "promote",
                                        "prev_hash": last.row_hash}
    forged = hashlib.sha256((values["prev_hash"] + chain.canonical(values)).encode()).hexdigest()
    columns = ", ".join(values) + ", row_hash"
    with engine.begin() as connection:  # an insert needs no dropped trigger at all
        connection.execute(text(f"INSERT INTO gatekeeper_decisions ({columns}) VALUES "
                                f"({', '.join(':' + c for c in values)}, :row_hash)"), values | {"row_hash": forged})
    assert kinds(verify(engine)) == {("a", 6, "forged")}


def test_a_history_deleted_with_its_head_is_seen_by_the_count_of_all_models(engine, log):
    tamper(engine, "DELETE FROM gatekeeper_decisions WHERE model_name = 'b'",
           "DELETE FROM gatekeeper_audit_heads WHERE model_name = 'b'")
    report = verify(engine)
    assert kinds(report) == {(None, None, "missing_rows")} and "2 deleted" in report.problems[0].message


def test_a_head_rewritten_to_hide_a_cut_off_tail_stays_visible_after_later_decisions(engine, log):
    keep, cut = log["a"][1], log["a"][2]
    tamper(engine, f"DELETE FROM gatekeeper_decisions WHERE id = {cut}",
           f"UPDATE gatekeeper_audit_heads SET last_id = {keep}, count = 2, "
           f"last_hash = (SELECT row_hash FROM gatekeeper_decisions WHERE id = {keep}) WHERE model_name = 'a'")
    assert ("a", None, "head_edited") in kinds(verify(engine))
    append(engine, "a", 7)  # the gate goes on, but does not sign the rewritten head
    found = kinds(verify(engine))
    assert ("a", None, "head_edited") in found and (None, None, "missing_rows") in found


def test_a_deleted_head_is_missing_and_is_not_silently_re_created(engine, log):
    tamper(engine, "DELETE FROM gatekeeper_audit_heads WHERE model_name = 'a'")
    assert kinds(verify(engine)) == {("a", None, "head_missing")}
    append(engine, "a", 6)
    assert kinds(verify(engine)) == {("a", None, "head_edited")}


def test_without_the_secret_nothing_verifies(engine, log):
    report = verify(engine, secret=b"x" * 32)
    assert {p.kind for p in report.problems} == {"edited", "head_edited"}


def insert_legacy(engine, model: str, n: int) -> None:
    """A row as written before migration 0003: no digests, no hashes."""
    with Session(engine) as session, session.begin():
        session.add(SqlDecision(created_at=n, model_name=model, action="refuse", verdict="refuse", target="t",
                                route="test", reasons=json.dumps([f"legacy {n}"]), checks="[]",
                                evidence_run_ids="[]", replaced="{}", policy_hash="p" * 64))


def test_rows_from_before_the_chain_verify_and_the_first_chained_row_seals_them(engine):
    for n in (1, 2):
        insert_legacy(engine, "a", n)
    assert verify(engine).ok and verify(engine).legacy == 2  # nothing sealed yet, nothing to contradict
    chained = append(engine, "a", 3)
    assert chained.prev_hash != chain.GENESIS
    report = verify(engine)
    assert (report.ok, report.rows, report.legacy) == (True, 3, 2)
    with Session(engine) as session:
        assert [r.digests for r in audit.history(session, "a")] == [{"policy": "p" * 64}, {}, {}]
    tamper(engine, "UPDATE gatekeeper_decisions SET reasons = '[\"edited\"]' WHERE id = 1")
    assert kinds(verify(engine)) == {("a", chained.id, "broken_link")}
