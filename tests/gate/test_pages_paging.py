"""The model page past its first 100 decisions: ``before``/``after`` cursors, the verdict filter
kept in every link, strict cursor parsing (400, never 500), and pages of older decisions that do not
move when new decisions arrive.

One server for the module, on SQLite, then on PostgreSQL. Its model gets three real decisions through the gate (first
release, promotion, refusal as worse); the log is then filled to 250 decisions with copies of them
appended through the public ``audit.append`` (``benchmarks.bench_pages.fill_audit_log``), and the
server's own chain check must still pass.
"""

from __future__ import annotations

import re
import uuid
from contextlib import ExitStack

import pytest
import requests

from benchmarks.bench_pages import fill_audit_log, real_decisions
from benchmarks.servers import MlflowServer

TIMEOUT = 60
PAGE_SIZE = 100
DECISIONS = 250
_ROW_ID = re.compile(r'<th scope="row"><a href="/gatekeeper/decision\?id=(\d+)">')
_LINK = re.compile(r'<a href="(/gatekeeper/model\?[^"]+)"(?: rel="(prev|next)")?>([^<]+)</a>')


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request, tmp_path_factory, gate_policy):
    """A gated server on SQLite, then on PostgreSQL (the paging query and ``audit.append`` on both)."""
    workdir = tmp_path_factory.mktemp(f"paging-{request.param}")
    with ExitStack() as stack:
        uri = (f"sqlite:///{workdir}/mlflow.db" if request.param == "sqlite"
               else stack.enter_context(request.getfixturevalue("postgres_uri_factory")()))
        yield stack.enter_context(MlflowServer(workdir, uri, policy=gate_policy))


@pytest.fixture(scope="module")
def model(server) -> dict:
    """The model's name, its decisions' ids newest first, and the ids of each verdict."""
    name = f"paging-{uuid.uuid4().hex[:8]}"
    made = real_decisions(server.url, name)
    fill_audit_log(server.backend_uri, list(reversed(made)), DECISIONS - len(made))
    verify = requests.get(f"{server.url}/gatekeeper/api/audit/verify", params={"name": name}, timeout=TIMEOUT).json()
    assert verify["ok"] and verify["rows"] == DECISIONS, verify
    history = requests.get(f"{server.url}/gatekeeper/api/history", params={"name": name, "limit": "10000"},
                           timeout=TIMEOUT).json()["decisions"]
    by_verdict: dict[str, list[int]] = {}
    for record in history:
        by_verdict.setdefault(record["verdict"], []).append(record["id"])
    return {"name": name, "ids": [r["id"] for r in history], "by_verdict": by_verdict, "server": server}


def fetch(server, path_or_params) -> str:
    if isinstance(path_or_params, str):
        response = requests.get(f"{server.url}{path_or_params.replace('&amp;', '&')}", timeout=TIMEOUT)
    else:
        response = requests.get(f"{server.url}/gatekeeper/model", params=path_or_params, timeout=TIMEOUT)
    assert response.status_code == 200, response.text[:2000]
    return response.text


def shown(html: str) -> list[int]:
    return [int(i) for i in _ROW_ID.findall(html)]


def links(html: str) -> dict[str, str]:
    """The pager's links by their words (each pager appears above and below the table: same links)."""
    nav = "".join(part.split("</nav>")[0] for part in html.split('<nav class="pager"')[1:])
    return {words.strip("«‹› "): href for href, _, words in _LINK.findall(nav)}


def walk(server, first: dict, direction: str) -> list[list[int]]:
    """Every page from ``first``, following the link ``direction`` ("older decisions"/"newer decisions")."""
    pages, html = [], fetch(server, first)
    while True:
        pages.append(shown(html))
        href = links(html).get(direction)
        if href is None:
            return pages
        html = fetch(server, href)


def test_first_page_shows_the_100_newest_and_the_total(model):
    html = fetch(model["server"], {"name": model["name"]})
    assert shown(html) == model["ids"][:PAGE_SIZE]
    assert f"{DECISIONS} decisions; this page shows {PAGE_SIZE}" in html
    nav = links(html)
    assert set(nav) == {"older decisions"}  # no newer page, no "newest" link on the newest page
    assert f"before={model['ids'][PAGE_SIZE - 1]}" in nav["older decisions"]


def test_older_links_walk_every_decision_once_and_newer_links_walk_back(model):
    server = model["server"]
    pages = walk(server, {"name": model["name"]}, "older decisions")
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [i for p in pages for i in p] == model["ids"]  # every decision once, newest first
    last = fetch(server, {"name": model["name"], "before": pages[1][-1]})
    assert set(links(last)) == {"newest", "newer decisions"}
    back = walk(server, {"name": model["name"], "before": pages[1][-1]}, "newer decisions")
    assert back == pages[::-1]


def test_the_verdict_filter_is_kept_on_every_page(model):
    for verdict, ids in model["by_verdict"].items():
        pages = walk(model["server"], {"name": model["name"], "verdict": verdict}, "older decisions")
        assert [i for p in pages for i in p] == ids
        html = fetch(model["server"], {"name": model["name"], "verdict": verdict})
        assert f"{len(ids)} decisions with the verdict <code>{verdict}</code>" in html
        assert all(f"verdict={verdict}" in href for href in links(html).values())


def test_a_page_newer_than_a_recent_decision_is_the_newest_page(model):
    html = fetch(model["server"], {"name": model["name"], "after": model["ids"][5]})
    assert shown(html) == model["ids"][:PAGE_SIZE] and "newer decisions" not in links(html)


@pytest.mark.parametrize("cursor", ["before", "after"])
def test_the_largest_id_is_a_valid_cursor(model, cursor):
    html = fetch(model["server"], {"name": model["name"], cursor: str(2**63 - 1)})
    assert shown(html) == model["ids"][:PAGE_SIZE]  # older than it: the newest; newer than it: none, so the newest


def test_a_cursor_past_the_oldest_decision_shows_an_empty_page_with_a_way_back(model):
    html = fetch(model["server"], {"name": model["name"], "before": "1"})
    assert shown(html) == [] and "No decision older than this." in html
    assert set(links(html)) == {"newest", "newer decisions"}


@pytest.mark.parametrize(("params", "words"), [
    ({"before": "abc"}, "Parameter &#39;before&#39;"),
    ({"before": "0"}, "[1, 9223372036854775807]"),
    ({"before": "-5"}, "before"),
    ({"before": "1.5"}, "before"),
    ({"before": " 7"}, "before"),
    ({"before": "١"}, "before"),
    ({"before": "9" * 40}, "before"),
    ({"after": "x"}, "Parameter &#39;after&#39;"),
    ({"after": "9" * 19}, "after"),
    ({"before": "5", "after": "3"}, "at most one of"),
])
def test_a_bad_cursor_is_a_clear_400(model, params, words):
    response = requests.get(f"{model['server'].url}/gatekeeper/model", params={"name": model["name"]} | params,
                            timeout=TIMEOUT)
    assert response.status_code == 400, response.text[:2000]
    assert "<h1>400:" in response.text and words in response.text


def test_a_cursor_on_an_unknown_model_is_a_404(model):
    response = requests.get(f"{model['server'].url}/gatekeeper/model", params={"name": "no-such-model", "before": "5"},
                            timeout=TIMEOUT)
    assert response.status_code == 404


def test_a_page_of_older_decisions_does_not_move_when_new_ones_arrive(model):
    """Last in the module: it appends a decision."""
    server = model["server"]
    cursor = model["ids"][PAGE_SIZE - 1]
    before = shown(fetch(server, {"name": model["name"], "before": cursor}))
    history = requests.get(f"{server.url}/gatekeeper/api/history", params={"name": model["name"], "limit": "1"},
                           timeout=TIMEOUT).json()["decisions"]
    (newest,) = fill_audit_log(server.backend_uri, history, 1)
    assert shown(fetch(server, {"name": model["name"], "before": cursor})) == before
    assert shown(fetch(server, {"name": model["name"]}))[0] == newest


def test_since_when_and_latest_verdicts_reach_past_any_number_of_newer_decisions(server):
    """v2 was approved, then 250 refusals of v3 followed: the overview and the model page still say
    which decision put v2 in production, and v3's latest verdict is its newest refusal."""
    name = f"since-{uuid.uuid4().hex[:8]}"
    made = real_decisions(server.url, name)  # newest first: v3 refused, v2 promoted, v1 first release
    refusal, approval = made[0], made[1]
    assert (refusal["action"], approval["action"], approval["candidate_version"]) == ("refuse", "promote", "2")
    newest = fill_audit_log(server.backend_uri, [refusal], DECISIONS)[-1]
    overview, model_page = fetch(server, "/gatekeeper/"), fetch(server, {"name": name})
    for mine in (overview[overview.index(f">{name}</a></h2>"):], model_page):  # the overview: this model's card on
        assert f'decision?id={approval["id"]}"' in mine  # the approval that put v2 in production, 251 decisions back
        pending = mine[mine.index('<ul class="candidates">'):]
        pending = pending[:pending.index("</ul>")]
        assert "v3" in pending and f'decision?id={newest}"' in pending  # v3's latest verdict: the newest refusal
