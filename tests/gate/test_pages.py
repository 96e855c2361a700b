"""The ``/gatekeeper/`` pages on a real gated server: what they show, what they refuse, who may act.

One SQLite server per module holds a story with real evidence (a first release, an approved
promotion, a refusal for being worse, a version never judged); the pages are fetched with
``requests`` and their content checked against the audit log the JSON API returns. The forms are
posted like a browser posts them; basic-auth gets its own server. The chart is a pure function,
tested alone at the end.
"""

from __future__ import annotations

import json
import math
import re
import uuid
import mlflow
import pytest
import requests
from markupsafe import escape  # the pages' own escaping (Jinja's)

from benchmarks.evidence import GATE_POLICY, Scenario
from benchmarks.servers import MlflowServer
from plugins.pages.svg import Interval, interval_chart
from registry_hooks.contract import DRIFT_SUMMARY_PATH, TAG_CANDIDATE_NAME, TAG_CANDIDATE_VERSION, TAG_DECISION_URL, TAG_DRIFT
from registry_hooks.drift_summary import ColumnDrift, DriftSummary, TableInfo
from tests.support.story import Story, gated_server, tell

PAGES_POLICY = GATE_POLICY + """  - pattern: "drift-*"
    drift: {required: true, max_share_drifted: 0.5}
"""
TIMEOUT = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with gated_server(tmp_path_factory.mktemp("pages-server"), PAGES_POLICY) as running:
        yield running


@pytest.fixture(scope="module")
def story(server) -> Story:
    return tell(server.url, f"pages-{uuid.uuid4().hex[:8]}")


def get(server, path: str, **params) -> requests.Response:
    return requests.get(f"{server.url}{path}", params=params, timeout=TIMEOUT)


def page(server, path: str, **params) -> str:
    response = get(server, path, **params)
    assert response.status_code == 200, response.text[:2000]
    assert response.headers["Content-Type"].startswith("text/html")
    return response.text


def card(html: str, name: str) -> str:
    """The overview's section about one model."""
    sections = [s for s in html.split('<section class="card"')[1:] if f">{escape(name)}</a></h2>" in s]
    assert len(sections) == 1, f"no single card for {name}"
    return sections[0].split("</section>")[0]


def rows(html: str) -> list[str]:
    """The history table's body rows."""
    body = html.split('<table class="history">')[1].split("</tbody>")[0]
    return body.split("<tr>")[2:]  # [0] before the head row, [1] the head row


def token(html: str) -> str:
    found = re.findall(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no form on the page"
    return found[0]


# -- the overview and the model page -------------------------------------------------------------


def test_overview_shows_who_holds_production_since_when_and_the_last_verdict(server, story):
    html = card(page(server, "/gatekeeper/"), story.name)
    promoted = story.decision("promote", story.v2)
    assert "alias &#39;champion&#39;" in html and "stage Production" in html
    assert html.count(f"<strong>v{story.v2}</strong>") == 2  # both targets
    assert html.count(f'href="/gatekeeper/decision?id={promoted["id"]}"') >= 2  # since: the decision that put it there
    last = story.history()[0]
    assert last["verdict"] == "refuse_worse" and "refused: worse <code>refuse_worse</code>" in html.split("Pending")[0]
    pending = html.split("Pending candidates")[1]
    assert f"<strong>v{story.v3}</strong>" in pending and "refuse_worse" in pending
    assert f"<strong>v{story.v4}</strong>" in pending and "not judged yet" in pending
    assert f"<strong>v{story.v1}</strong>" not in pending  # older than production: not a candidate


def test_model_page_lists_every_decision_with_verdicts_checks_and_a_filter(server, story):
    html = page(server, "/gatekeeper/model", name=story.name)
    listed = rows(html)
    assert len(listed) == len(story.history()) == 3
    for row, record in zip(listed, story.history()):
        assert f"decision #{record['id']}</a>" in row and f"<code>{record['verdict']}</code>" in row
        assert "anonymous" in row and all(f"<code>{c['name']}</code>" in row for c in record["checks"])
    assert "slice:weather=fog:accuracy" in listed[1]  # the promotion's slice checks
    only = rows(page(server, "/gatekeeper/model", name=story.name, verdict="promote"))
    assert len(only) == 2 and all("<code>promote</code>" in row for row in only)
    worse = rows(page(server, "/gatekeeper/model", name=story.name, verdict="refuse_worse"))
    assert len(worse) == 1 and f"v{story.v3}" in worse[0]
    assert '<option value="refuse_worse" selected>' in page(server, "/gatekeeper/model", name=story.name,
                                                            verdict="refuse_worse")


# -- a decision, explain, and the tag that leads there -------------------------------------------


def _compared(check: dict) -> bool:
    return {"improvement", "ci_low", "ci_high"} <= set(check["numbers"])


def test_decision_page_shows_every_check_its_numbers_and_an_interval_chart(server, story):
    record = story.decision("promote", story.v2)
    html = page(server, "/gatekeeper/decision", id=str(record["id"]))
    assert f"Decision #{record['id']}" in html and "approved <code>promote</code>" in html
    sections = html.split('<section class="check')[1:]
    assert len(sections) == len(record["checks"])
    charted = [c for c in record["checks"] if _compared(c)]
    assert {c["name"].split(":")[0] for c in charted} >= {"primary", "slice"}
    assert len([c for c in charted if c["name"].startswith("slice:")]) == 3  # clear, fog, rain
    assert html.count("<svg") == len(charted)
    for check, section in zip(record["checks"], sections):
        assert f"<code>{check['name']}</code>" in section and escape(check["message"]) in section
        for key, value in check["numbers"].items():
            if isinstance(value, float):
                assert f"<th scope=\"row\">{key}</th><td>{value:.6g}</td>" in section, (check["name"], key)
        if _compared(check):
            numbers = check["numbers"]
            label = re.search(r'<svg[^>]* aria-label="([^"]+)"', section).group(1)
            reference = numbers["margin"] if check["name"].startswith("primary") else -numbers["tolerance"]
            for value in (numbers["improvement"], numbers["ci_low"], numbers["ci_high"], reference):
                assert f"{value:+.4f}" in label, (check["name"], value, label)
            assert ("margin" if check["name"].startswith("primary") else "−tolerance") in label
            assert 'stroke-dasharray="5 3"' in section  # the margin / tolerance line
    run_id = record["evidence_run_ids"][0]
    experiment = mlflow.MlflowClient(server.url).get_run(run_id).info.experiment_id
    assert f'href="/#/experiments/{experiment}/runs/{run_id}"' in html
    policy = story.scenario.gate.policy(story.name)
    assert record["policy_hash"] == policy["policy_hash"] and policy["policy_hash"] in html
    assert "Judged under the current policy" in html and escape('pattern: "strict-*"') in html  # the file's text


def test_explain_renders_the_dry_run_and_records_nothing(server, story):
    before = story.history()
    html = page(server, "/gatekeeper/explain", name=story.name, version=story.v4)
    assert f"Dry run: {story.name} v{story.v4}" in html and "Nothing was recorded" in html
    assert "<code>refuse_insufficient_evidence</code>" in html and "no evidence" in html
    assert f"v{story.v2} <span class=\"muted\">(" in html  # the baseline, with where it comes from
    assert story.history() == before


def test_each_version_tag_points_to_the_page_of_its_decision(server, story):
    client = mlflow.MlflowClient(server.url, registry_uri=server.url)
    for version, action in ((story.v2, "promote"), (story.v3, "refuse")):
        record = story.decision(action, version)
        url = client.get_model_version(story.name, version).tags[TAG_DECISION_URL]
        assert url == f"/gatekeeper/decision?id={record['id']}"
        html = requests.get(f"{server.url}{url}", timeout=TIMEOUT).text
        assert f"Decision #{record['id']}: {escape(story.name)} v{version}" in html


def test_each_decided_version_description_links_to_its_decision(server, story):
    """MLflow's UI renders a description as Markdown (its tags as plain text): the link is clickable there."""
    client = mlflow.MlflowClient(server.url, registry_uri=server.url)
    for version, action, words in ((story.v2, "promote", "✓ approved"), (story.v3, "refuse", "✗ refused: worse")):
        record = story.decision(action, version)
        first = client.get_model_version(story.name, version).description.splitlines()[0]
        assert first == (f"**Gatekeeper decision #{record['id']}: {words}** · "
                         f"[every check with its numbers](/gatekeeper/decision?id={record['id']})")
    assert not client.get_model_version(story.name, story.v4).description  # never judged: no line


FORGED = "**Gatekeeper decision #1: ✓ approved** · [every check with its numbers](/gatekeeper/decision?id=1)"


@pytest.mark.parametrize("route", ["client", "/api/", "/ajax-api/"])
def test_a_description_can_neither_forge_nor_hide_the_gates_line(server, story, route):
    """v3 was refused: writing a description that claims an approval, or none at all, keeps the true line."""
    client = mlflow.MlflowClient(server.url, registry_uri=server.url)
    true_line = client.get_model_version(story.name, story.v3).description.splitlines()[0]
    before = (story.scenario.production(), len(story.scenario.gate.history(story.name)))
    for description, kept in ((f"{FORGED}\nretrained on rain", "retrained on rain"),
                              ("ＧＡＴＥＫＥＥＰＥＲ  decision #1: approved", None), ("", None)):
        if route == "client":
            written = client.update_model_version(story.name, story.v3, description).description
        else:
            response = requests.patch(f"{server.url}{route}2.0/mlflow/model-versions/update", timeout=TIMEOUT,
                                      json={"name": story.name, "version": story.v3, "description": description})
            assert response.status_code == 200, response.text
            written = response.json()["model_version"]["description"]
        assert written == (f"{true_line}\n\n{kept}" if kept else true_line)
        assert client.get_model_version(story.name, story.v3).description == written
    assert (story.scenario.production(), len(story.scenario.gate.history(story.name))) == before


def test_a_new_or_copied_version_carries_no_line(server, story):
    client = mlflow.MlflowClient(server.url, registry_uri=server.url)
    copy_name = f"{story.name}-copy"
    copied = client.copy_model_version(f"models:/{story.name}/{story.v3}", copy_name)
    assert not copied.description and "gatekeeper.decision_id" not in copied.tags
    source = client.get_model_version(story.name, story.v3)
    fresh = client.create_model_version(copy_name, source.source, run_id=source.run_id, description=f"{FORGED}\nmine")
    assert fresh.description == "mine"


def test_an_unstorable_description_is_a_400(server, story):
    response = requests.patch(f"{server.url}/api/2.0/mlflow/model-versions/update", timeout=TIMEOUT,
                              json={"name": story.name, "version": story.v3, "description": "a\u0000b"})
    assert response.status_code == 400 and "without NUL bytes" in response.json()["message"]


@pytest.mark.parametrize(("path", "params", "status", "words"), [
    ("/gatekeeper/model", {}, 400, "Missing value for required parameter &#39;name&#39;"),
    ("/gatekeeper/model", {"name": "no-such-model"}, 404, "not found"),
    ("/gatekeeper/model", {"name": "STORY", "verdict": "approved"}, 400, "must be one of"),
    ("/gatekeeper/decision", {}, 400, "id"),
    ("/gatekeeper/decision", {"id": "abc"}, 400, "id"),
    ("/gatekeeper/decision", {"id": "0"}, 400, "id"),
    ("/gatekeeper/decision", {"id": "9" * 30}, 400, "id"),
    ("/gatekeeper/decision", {"id": "99999999"}, 404, "no decision #99999999"),
    ("/gatekeeper/explain", {"name": "STORY", "version": "abc"}, 400, "version"),
    ("/gatekeeper/explain", {"name": "STORY", "version": "999"}, 404, "not found"),
    ("/gatekeeper/explain", {"name": "no-such-model", "version": "1"}, 404, "not found"),
])
def test_bad_input_is_a_clear_4xx_page(server, story, path, params, status, words):
    params = {k: story.name if v == "STORY" else v for k, v in params.items()}
    response = get(server, path, **params)
    assert response.status_code == status, response.text[:2000]
    assert response.headers["Content-Type"].startswith("text/html") and f"<h1>{status}:" in response.text
    assert words in response.text


def test_pages_escape_user_input_and_load_nothing_from_elsewhere(server, story):
    response = get(server, "/gatekeeper/model", name="<script>alert(1)</script>")
    assert response.status_code == 404 and "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert "<script" not in response.text.lower()
    html = page(server, "/gatekeeper/decision", id=str(story.history()[0]["id"]))
    assert "default-src 'none'" in get(server, "/gatekeeper/").headers["Content-Security-Policy"]
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no CDN, no external asset
    assert "<script" not in html.lower() and 'href="/gatekeeper/static/pages.css"' in html
    css = get(server, "/gatekeeper/static/pages.css")
    assert css.status_code == 200 and ":focus-visible" in css.text and "@media" in css.text and "url(" not in css.text


# -- drift ---------------------------------------------------------------------------------------


def _log_drift_run(url: str, name: str, version: str) -> str:
    table = TableInfo(name="window", source="file:///window.parquet", content_hash="0" * 64, n_rows=500)
    columns = [ColumnDrift("weather", "cat", "chisquare", 0.001, 0.05, True, 0.0),
               ColumnDrift("x0", "num", "wasserstein", 0.02, 0.1, False, 0.0),
               ColumnDrift("x1", "num", "wasserstein", 0.03, 0.1, False, 0.0)]
    from datetime import datetime, timezone

    summary = DriftSummary(candidate_name=name, candidate_version=version, reference=table, current=table,
                           created_at=datetime.now(timezone.utc).isoformat(), columns=columns)
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("drift")
    with mlflow.start_run() as run:
        mlflow.set_tags({TAG_DRIFT: "1", TAG_CANDIDATE_NAME: name, TAG_CANDIDATE_VERSION: version})
        mlflow.log_text(json.dumps(summary.to_dict()), DRIFT_SUMMARY_PATH)
    return run.info.run_id


def test_a_drift_check_shows_the_drift_of_every_column(server):
    scenario = Scenario(server.url, f"drift-{uuid.uuid4().hex[:8]}")
    version = scenario.version()
    scenario.evidence(version, None)
    run_id = _log_drift_run(server.url, scenario.name, version)
    scenario.gate.promote(scenario.name, version)
    record = scenario.gate.history(scenario.name)[0]
    html = page(server, "/gatekeeper/decision", id=str(record["id"]))
    drift = html.split("<h2>Drift</h2>")[1].split("<h2>")[0]
    assert f"run {run_id}</a>" in drift and "/runs/" + run_id in drift
    weather = drift.split('<th scope="row">weather</th>')[1].split("</tr>")[0]
    assert "chisquare" in weather and "0.001" in weather and "✗</span> drifted" in weather
    assert "no drift" in drift.split('<th scope="row">x0</th>')[1].split("</tr>")[0]


# -- the forms -----------------------------------------------------------------------------------


@pytest.fixture
def released(server) -> Scenario:
    """A model with v1 in production and v2 registered without evidence."""
    scenario = Scenario(server.url, f"forms-{uuid.uuid4().hex[:8]}")
    scenario.first_release()
    scenario.version()
    return scenario


def post(server, path: str, data: dict) -> requests.Response:
    return requests.post(f"{server.url}{path}", data=data, timeout=TIMEOUT, allow_redirects=False)


def test_override_with_a_reason_is_audited_and_leads_to_its_decision(server, released):
    html = page(server, "/gatekeeper/model", name=released.name)
    assert '<form class="admin" method="post" action="/gatekeeper/override">' in html
    reason = "incident 42 <b>urgent</b>"
    response = post(server, "/gatekeeper/override",
                    {"name": released.name, "version": "2", "reason": reason, "csrf_token": token(html)})
    assert response.status_code == 303, response.text[:2000]
    record = released.gate.history(released.name)[0]
    assert response.headers["Location"].endswith(f"/gatekeeper/decision?id={record['id']}")
    assert record["action"] == "override" and reason in record["reasons"][0]
    assert record["route"] == "POST /gatekeeper/override" and released.production() == ("2", ["2"])
    shown = page(server, "/gatekeeper/decision", id=str(record["id"]))
    assert "override by anonymous: incident 42 &lt;b&gt;urgent&lt;/b&gt;" in shown and "<b>urgent" not in shown
    rolled = post(server, "/gatekeeper/rollback", {"name": released.name, "reason": "undo", "csrf_token": token(html)})
    assert rolled.status_code == 303 and released.production() == ("1", ["1"])
    assert released.gate.history(released.name)[0]["action"] == "rollback"


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_form_without_a_reason_is_refused(server, released, reason):
    html = page(server, "/gatekeeper/model", name=released.name)
    form = {"name": released.name, "version": "2", "csrf_token": token(html)} | ({} if reason is None else {"reason": reason})
    before = released.gate.history(released.name)
    for path in ("/gatekeeper/override", "/gatekeeper/rollback"):
        response = post(server, path, form)
        assert response.status_code == 400 and "reason" in response.text, response.text[:2000]
    assert released.gate.history(released.name) == before and released.production() == ("1", ["1"])


def test_a_missing_or_forged_token_is_refused_and_changes_nothing(server, released):
    good = token(page(server, "/gatekeeper/model", name=released.name))
    stamp, digest = good.split(".")
    before = released.gate.history(released.name)
    forged = [None, "", "garbage", f"{stamp}.{'0' * 64}", f"{int(stamp) + 1}.{digest}", f"{int(stamp) - 5 * 3600}.{digest}"]
    for bad in forged:
        form = {"name": released.name, "version": "2", "reason": "forged"} | ({} if bad is None else {"csrf_token": bad})
        for path in ("/gatekeeper/override", "/gatekeeper/rollback"):
            response = post(server, path, form)
            assert response.status_code == 403 and "security token" in response.text, (bad, response.text[:500])
    assert released.gate.history(released.name) == before and released.production() == ("1", ["1"])


# -- basic-auth ----------------------------------------------------------------------------------


def test_under_basic_auth_pages_follow_model_permissions_and_forms_are_for_admins(tmp_path, monkeypatch):
    policy = tmp_path / "policy.yaml"
    policy.write_text(PAGES_POLICY)
    admin, alice, bob = ("admin", "admin-password-123"), ("alice", "alice-password-123"), ("bob", "bob-password-123")
    env = {"GATEKEEPER_BASIC_AUTH": "true", "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret"}
    with MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", policy=policy, env=env) as server:
        url = server.url
        for user, password in (alice, bob):
            requests.post(f"{url}/api/2.0/mlflow/users/create", auth=admin, timeout=TIMEOUT,
                          json={"username": user, "password": password}).raise_for_status()
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])
        open_model, secret_model = Scenario(url, "open-model"), Scenario(url, "secret-model")
        open_model.first_release()
        open_model.version()
        secret_model.first_release()
        secret_decision = secret_model.gate.history("secret-model")[0]["id"]
        requests.post(f"{url}/api/3.0/mlflow/users/permissions/grant", auth=admin, timeout=TIMEOUT,
                      json={"username": "bob", "resource_type": "registered_model", "resource_id": "secret-model",
                            "permission": "DENY"}).raise_for_status()

        def fetch(who, path, **params):
            return requests.get(f"{url}{path}", params=params, auth=who, timeout=TIMEOUT)

        assert fetch(None, "/gatekeeper/").status_code == 401
        assert fetch(None, "/gatekeeper/model", name="open-model").status_code == 401
        seen_by_bob = fetch(bob, "/gatekeeper/")
        assert seen_by_bob.status_code == 200 and "open-model" in seen_by_bob.text and "secret-model" not in seen_by_bob.text
        assert "secret-model" in fetch(admin, "/gatekeeper/").text
        assert fetch(bob, "/gatekeeper/model", name="secret-model").status_code == 403
        assert fetch(bob, "/gatekeeper/explain", name="secret-model", version="1").status_code == 403
        assert fetch(bob, "/gatekeeper/decision", id=str(secret_decision)).status_code == 403
        assert fetch(alice, "/gatekeeper/decision", id=str(secret_decision)).status_code == 200  # READ by default
        assert fetch(alice, "/gatekeeper/static/pages.css").status_code == 200
        assert fetch(alice, "/gatekeeper/model").status_code == 400  # the page's own 400, not basic-auth's JSON

        as_alice = fetch(alice, "/gatekeeper/model", name="open-model")
        assert as_alice.status_code == 200 and "<form" in as_alice.text  # the filter ...
        assert 'class="admin"' not in as_alice.text and "csrf_token" not in as_alice.text  # ... but no admin form
        as_admin = fetch(admin, "/gatekeeper/model", name="open-model")
        form = {"name": "open-model", "version": "2", "reason": "incident 7", "csrf_token": token(as_admin.text)}
        refused = requests.post(f"{url}/gatekeeper/override", data=form, auth=alice, timeout=TIMEOUT, allow_redirects=False)
        assert refused.status_code == 403 and open_model.production() == ("1", ["1"])
        done = requests.post(f"{url}/gatekeeper/override", data=form, auth=admin, timeout=TIMEOUT, allow_redirects=False)
        assert done.status_code == 303, done.text[:2000]
        record = open_model.gate.history("open-model")[0]
        assert (record["action"], record["actor"]) == ("override", "admin") and open_model.production() == ("2", ["2"])


# -- the chart, alone ----------------------------------------------------------------------------


def _label(svg: str) -> str:
    return re.search(r'aria-label="([^"]+)"', svg).group(1)


def test_chart_draws_the_interval_the_estimate_and_the_margin_with_their_numbers():
    svg = interval_chart(Interval(0.0612, 0.0371, 0.0853, 0.01, "margin", "primary:accuracy",
                                  "one-sided 95% bounds"))
    assert svg.startswith("<svg") and svg.endswith("</svg>") and 'role="img"' in svg
    for text in ("+0.0612", "+0.0371", "+0.0853", "margin +0.0100", "0"):
        assert f">{text}</text>" in svg, text
    assert _label(svg) == ("primary:accuracy: improvement +0.0612, one-sided 95% bounds [+0.0371, +0.0853], "
                           "margin +0.0100")
    assert 'stroke-dasharray="5 3"' in svg and "<circle" in svg
    xs = [float(x) for x in re.findall(r'<line x1="([0-9.]+)" y1="35"', svg)]  # the bound ticks, low then high
    margin_x = float(re.search(r'<line x1="([0-9.]+)" y1="14"', svg).group(1))
    assert len(xs) == 2 and xs[0] < xs[1] and margin_x < xs[0]  # the interval clears the margin, drawn so


def test_chart_against_a_tolerance_and_an_interval_below_it():
    svg = interval_chart(Interval(-0.09, -0.14, -0.06, -0.05, "−tolerance", "slice:weather=fog:accuracy"))
    assert "−tolerance -0.0500" in svg and "[-0.1400, -0.0600]" in _label(svg)
    assert "#b35900" in svg  # not cleared: drawn in the warning colour, and the numbers say why


@pytest.mark.parametrize("estimate, low, high", [
    (math.nan, math.nan, math.nan), (None, None, None), (0.1, None, 0.2), (math.inf, 0.0, 0.1),
])
def test_chart_handles_numbers_that_are_not_finite(estimate, low, high):
    svg = interval_chart(Interval(estimate, low, high, 0.0, "margin", "primary:f1"))
    assert "nan" not in svg.lower() and "interval not available" in svg and svg.endswith("</svg>")
    assert "n/a" in _label(svg)


def test_chart_draws_an_infinite_bound_to_the_edge_and_escapes_its_title():
    svg = interval_chart(Interval(0.02, 0.01, math.inf, 0.0, "margin", 'slice:city=<b>"x"</b>:accuracy'))
    assert "+∞" in svg and "interval not available" not in svg
    assert "<b>" not in svg and "&lt;b&gt;" in svg
