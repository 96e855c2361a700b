"""The autopilot's lease: one holder per model, by compare-and-set, on SQLite and PostgreSQL.

First the rules on the database itself (explicit clocks: no sleeping), then a race of many
takers at once, then the route on a real gated server, as the autopilot calls it.
"""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.orm import Session

from gatekeeper_cli.client import GatekeeperClient
from registry_hooks import autopilot_lease
from registry_hooks.audit.log import migrate
from registry_hooks.contract import API_PREFIX
from registry_hooks.transactions import retrying
from tests.support.traffic import register

TTL = 10_000


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path) -> Iterator[sa.Engine]:
    @contextmanager
    def sqlite() -> Iterator[str]:
        yield f"sqlite:///{tmp_path / 'lease.db'}"

    factory = request.getfixturevalue("postgres_uri_factory") if request.param == "postgres" else sqlite
    with factory() as uri:
        made = sa.create_engine(uri)
        migrate(made)
        yield made
        made.dispose()


def run(engine: sa.Engine, action, *args):
    def once():
        with Session(engine) as session, session.begin():
            return action(session, *args)

    return retrying(once)


def test_a_second_holder_waits_until_release_or_expiry_and_gets_the_next_generation(engine):
    first = run(engine, autopilot_lease.acquire, "m", "alpha", TTL, 1_000)
    assert (first.held, first.holder, first.generation, first.expires_at) == (True, "alpha", 1, 11_000)
    waiting = run(engine, autopilot_lease.acquire, "m", "beta", TTL, 2_000)
    assert (waiting.held, waiting.holder, waiting.expires_at) == (False, "alpha", 11_000)
    again = run(engine, autopilot_lease.acquire, "m", "alpha", TTL, 3_000)  # a holder re-asking keeps its generation
    assert (again.held, again.generation, again.expires_at) == (True, 1, 13_000)
    after_expiry = run(engine, autopilot_lease.acquire, "m", "beta", TTL, 13_000)
    assert (after_expiry.held, after_expiry.holder, after_expiry.generation) == (True, "beta", 2)
    released = run(engine, autopilot_lease.release, "m", "beta", 2, 14_000)
    assert (released.held, released.holder) == (False, None)
    assert run(engine, autopilot_lease.acquire, "m", "alpha", TTL, 14_001).generation == 3


def test_a_holder_that_lost_its_lease_cannot_renew_it_back(engine):
    run(engine, autopilot_lease.acquire, "m", "alpha", TTL, 0)
    assert run(engine, autopilot_lease.renew, "m", "alpha", 1, TTL, 5_000).expires_at == 15_000
    taken = run(engine, autopilot_lease.acquire, "m", "beta", TTL, 15_000)  # alpha paused past its lease
    assert taken.held and taken.generation == 2
    lost = run(engine, autopilot_lease.renew, "m", "alpha", 1, TTL, 15_001)
    assert (lost.held, lost.holder, lost.generation) == (False, "beta", 2)
    assert not run(engine, autopilot_lease.renew, "m", "beta", 1, TTL, 15_002).held  # a stale generation, same holder
    expired = run(engine, autopilot_lease.renew, "m", "beta", 2, TTL, 26_000)  # past its own expiry: lost too
    assert not expired.held and run(engine, autopilot_lease.look, "m", 26_000).holder is None


def test_many_takers_at_once_one_wins(engine):
    barrier, answers = threading.Barrier(8), []

    def take(holder: str) -> None:
        barrier.wait()
        answers.append(run(engine, autopilot_lease.acquire, "raced", holder, TTL, 50_000))

    threads = [threading.Thread(target=take, args=(f"h{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [a for a in answers if a.held]
    assert len(answers) == 8 and len(winners) == 1, answers
    assert {a.holder for a in answers} == {winners[0].holder}  # every loser is told who won


def _lease(url: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(f"{url}{API_PREFIX}/autopilot/lease", json=body, timeout=30, **kwargs)


def test_the_route_grants_one_holder_and_refuses_bad_input(backend_server):
    name = f"leased-{uuid.uuid4().hex[:8]}"
    register(backend_server.url, name)
    gate = GatekeeperClient(backend_server.url)
    mine = gate.lease(name, "autopilot-a", "acquire", ttl_s=60)
    assert mine["held"] and mine["generation"] == 1
    theirs = gate.lease(name, "autopilot-b", "acquire", ttl_s=60)
    assert not theirs["held"] and theirs["holder"] == "autopilot-a"
    assert gate.lease(name, "autopilot-a", "renew", ttl_s=60, generation=1)["held"]
    assert not gate.lease(name, "autopilot-b", "renew", ttl_s=60, generation=1)["held"]
    shown = requests.get(f"{backend_server.url}{API_PREFIX}/autopilot/lease", params={"name": name}, timeout=30).json()
    assert shown["lease"]["holder"] == "autopilot-a" and shown["lease"]["held"] is False
    gate.lease(name, "autopilot-a", "release", generation=1)
    assert gate.lease(name, "autopilot-b", "acquire", ttl_s=60)["generation"] == 2
    for body, status, words in (
        ({"name": "no-such-model", "holder": "a", "action": "acquire", "ttl_s": 5}, 404, "not found"),
        ({"name": name, "holder": "a", "action": "steal", "ttl_s": 5}, 400, "'action'"),
        ({"name": name, "holder": "a", "action": "acquire", "ttl_s": 0}, 400, "ttl_s"),
        ({"name": name, "holder": "a", "action": "acquire", "ttl_s": "5"}, 200, ""),
        ({"name": name, "holder": "a", "action": "acquire", "ttl_s": 1e9}, 400, "ttl_s"),
        ({"name": name, "holder": "", "action": "acquire", "ttl_s": 5}, 400, "holder"),
        ({"name": name, "holder": "a\x00", "action": "acquire", "ttl_s": 5}, 400, "NUL"),
        ({"name": name, "holder": "a", "action": "renew", "ttl_s": 5}, 400, "generation"),
        ({"name": name, "holder": "a", "action": "acquire", "ttl_s": 5, "force": True}, 400, "unknown field"),
    ):
        answer = _lease(backend_server.url, body)
        assert answer.status_code == status and words in answer.text, (body, answer.text)
    assert gate.lease(name, "autopilot-b", "renew", ttl_s=60, generation=2)["held"]  # none of that took it
