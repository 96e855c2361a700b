"""registry_hooks.transactions on a real SQLite database: a lock is waited out, a lost insert is
re-read (never inserted twice), every other error propagates at once, and the waiting is bounded."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from registry_hooks import transactions
from registry_hooks.transactions import retrying


@pytest.fixture()
def engine(tmp_path):
    # timeout=0: a locked database answers at once instead of after pysqlite's 5 s busy wait;
    # check_same_thread=False: a timer thread releases the lock another connection holds
    engine = create_engine(f"sqlite:///{tmp_path / 'race.db'}", connect_args={"timeout": 0, "check_same_thread": False})
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE item (key TEXT PRIMARY KEY, owner TEXT NOT NULL)"))
    yield engine
    engine.dispose()


def claim(engine, key: str, owner: str, calls: list[str]) -> str:
    """Insert ``key`` for ``owner`` unless it exists; returns whoever owns it (reads before it writes)."""
    calls.append(owner)
    with engine.begin() as connection:
        found = connection.execute(text("SELECT owner FROM item WHERE key = :k"), {"k": key}).scalar()
        if found is not None:
            return found
        if len(calls) == 1:  # the first attempt loses the race: another writer commits the key now
            with engine.begin() as winner:
                winner.execute(text("INSERT INTO item VALUES (:k, 'winner')"), {"k": key})
        connection.execute(text("INSERT INTO item VALUES (:k, :o)"), {"k": key, "o": owner})
        return owner


def test_a_lost_insert_race_is_re_read_not_inserted_again(engine):
    calls: list[str] = []
    assert retrying(lambda: claim(engine, "k", "me", calls)) == "winner"
    assert calls == ["me", "me"]  # the second run read the winner's row at once
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM item")).scalar() == 1


def test_a_locked_database_is_waited_out_with_short_pauses(engine):
    holder = engine.connect()
    holder.exec_driver_sql("BEGIN IMMEDIATE")  # another worker holds the write lock ...
    threading.Timer(0.3, holder.close).start()  # ... for 0.3 s (closing rolls it back)
    started = time.monotonic()
    assert retrying(lambda: claim(engine, "k", "me", ["earlier"])) == "me"
    assert 0.3 <= time.monotonic() - started < 2.0


def test_a_lock_that_never_goes_away_fails_within_the_bound(engine):
    holder = engine.connect()
    holder.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"):
            retrying(lambda: claim(engine, "k", "me", ["earlier"]))
        bound = sum(min(transactions.MAX_PAUSE_S, transactions.FIRST_PAUSE_S * 2 ** i) for i in range(transactions.ATTEMPTS - 1))
        assert time.monotonic() - started < bound + 1.0 and bound < 6.0
    finally:
        holder.close()


def test_any_other_error_propagates_at_once(engine):
    calls = []

    def broken():
        calls.append(1)
        with engine.begin() as connection:
            connection.execute(text("SELECT owner FROM item WHERE key = :k"), {})  # no value for :k

    with pytest.raises(StatementError):
        retrying(broken)
    with pytest.raises(ValueError):
        retrying(lambda: calls.append(1) or int("not a number"))
    assert calls == [1, 1]


def test_an_insert_that_keeps_colliding_is_not_retried_forever(engine):
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO item VALUES ('k', 'winner')"))
    calls = []

    def blind_insert():  # does not read first: every run collides
        calls.append(1)
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO item VALUES ('k', 'me')"))

    with pytest.raises(IntegrityError):
        retrying(blind_insert, attempts=3)
    assert len(calls) == 3
