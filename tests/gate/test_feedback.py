"""Feedback on logged predictions, against a real gated server on SQLite and PostgreSQL.

The predictions are written by the real inference-log writer into the folder the server reads
(``GATEKEEPER_INFERENCE_LOG``), as versions of real registered models, so each test proves what a
labeller meets: a status per item, nothing half-written, revisions instead of overwrites, and
edit rights on one model never labelling another's traffic.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from benchmarks.servers import MlflowServer
from gatekeeper_cli.client import GatekeeperClient
from registry_hooks.contract import API_PREFIX, FEEDBACK_TABLE
from registry_hooks.inference_records import LOG_ENV, new_request_id
from tests.support.traffic import CLASSES, Traffic
from tests.support.traffic import predictions as traffic_of

TIMEOUT = 30


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request, tmp_path_factory, gate_policy):
    workdir = tmp_path_factory.mktemp(f"feedback-{request.param}")
    env = {LOG_ENV: str(workdir / "log")}
    if request.param == "sqlite":
        with MlflowServer(workdir, f"sqlite:///{workdir}/mlflow.db", policy=gate_policy, env=env) as running:
            yield running
        return
    with request.getfixturevalue("postgres_uri_factory")() as uri:
        with MlflowServer(workdir, uri, policy=gate_policy, env=env) as running:
            yield running


def predictions(server: MlflowServer, name: str) -> Traffic:
    return traffic_of(server.url, server.env[LOG_ENV], name)


def post(server: MlflowServer, body, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}{API_PREFIX}/feedback", json=body, timeout=TIMEOUT, **kwargs)


def listed(server: MlflowServer, name: str) -> dict[str, dict]:
    return {f["request_id"]: f for f in GatekeeperClient(server.url).feedback(name)}


@pytest.fixture
def traffic(server, model_name) -> Traffic:
    return predictions(server, model_name)


def test_a_label_then_a_flag_are_revisions_and_the_same_item_again_changes_nothing(server, traffic):
    first, second = traffic.ids[:2]
    answer = post(server, {"name": traffic.name, "items": [{"request_id": first, "label": " Green_Cone "},
                                                           {"request_id": second, "flag": "wrong", "note": "a cone"}]})
    assert answer.status_code == 200, answer.text
    assert [i["status"] for i in answer.json()["items"]] == ["created", "created"]
    assert answer.json()["items"][0]["feedback"]["label"] == "green_cone"  # stored as the model spells it

    again = post(server, {"name": traffic.name, "items": [{"request_id": first, "label": "green_cone"}]})
    assert again.json()["items"][0]["status"] == "unchanged" and again.json()["unchanged"] == 1

    flagged = post(server, {"name": traffic.name, "items": [{"request_id": first, "flag": "unsure"}]}).json()
    assert flagged["items"][0]["status"] == "revised"
    now = listed(server, traffic.name)
    assert now[first]["revision"] == 2 and now[first]["label"] == "green_cone" and now[first]["flag"] == "unsure"
    assert now[second]["flag"] == "wrong" and now[second]["label"] is None and now[second]["note"] == "a cone"

    cleared = post(server, {"name": traffic.name, "items": [{"request_id": first, "flag": None}]}).json()
    assert cleared["items"][0]["status"] == "revised" and listed(server, traffic.name)[first]["flag"] is None
    assert listed(server, traffic.name)[first]["revision"] == 3


def test_one_bad_item_writes_nothing_and_every_item_gets_its_status(server, traffic):
    unknown = new_request_id(dt.datetime.now(dt.timezone.utc))
    body = {"name": traffic.name, "items": [{"request_id": traffic.ids[0], "label": "pedestrian"},
                                            {"request_id": unknown, "label": "pedestrian"}]}
    answer = post(server, body)
    assert answer.status_code == 404, answer.text
    payload = answer.json()
    assert payload["error_code"] == "RESOURCE_DOES_NOT_EXIST" and "nothing written" in payload["message"]
    assert [(i["index"], i["status"]) for i in payload["items"]] == [(0, "not_written"), (1, "rejected")]
    assert payload["items"][1]["http_status"] == 404 and unknown in payload["items"][1]["message"]
    assert listed(server, traffic.name) == {}

    partial = post(server, body | {"partial": True})
    assert partial.status_code == 200 and partial.json()["created"] == 1 and partial.json()["rejected"] == 1
    assert set(listed(server, traffic.name)) == {traffic.ids[0]}


BAD_ITEMS = [
    pytest.param({"label": 3}, "'label' must be a string", id="label-not-text"),
    pytest.param({"label": "bicycle"}, "not a class of the model", id="label-not-a-class"),
    pytest.param({"flag": "maybe"}, "'flag' is one of wrong, unsure", id="flag-unknown"),
    pytest.param({"flag": True}, "'flag' must be a string", id="flag-boolean"),
    pytest.param({"note": "x" * 2001}, "at most 2000", id="note-too-long"),
    pytest.param({"note": "nul\x00byte"}, "without NUL", id="note-nul"),
    pytest.param({"label": ""}, "must not be empty", id="label-empty"),
    pytest.param({}, "nothing to record", id="names-no-field"),
    pytest.param({"label": "nothing", "score": 1}, "unknown field(s) 'score'", id="unknown-field"),
]


@pytest.mark.parametrize(("fields", "words"), BAD_ITEMS)
def test_a_bad_item_is_a_400_that_says_what_is_wrong(server, traffic, fields, words):
    answer = post(server, {"name": traffic.name, "items": [{"request_id": traffic.ids[0], **fields}]})
    assert answer.status_code == 400, answer.text
    item = answer.json()["items"][0]
    assert item["status"] == "rejected" and item["http_status"] == 400 and words in item["message"], item
    assert listed(server, traffic.name) == {}


@pytest.mark.parametrize(("items", "words"), [
    pytest.param(["a string"], "an item is a JSON object", id="item-not-object"),
    pytest.param([{"request_id": 7, "label": "nothing"}], "'request_id' must be a string", id="id-number"),
    pytest.param([{"request_id": "x" * 129, "label": "nothing"}], "at most 128", id="id-too-long"),
    pytest.param([{"request_id": " padded ", "label": "nothing"}], "without surrounding spaces", id="id-padded"),
])
def test_an_item_without_a_usable_request_id_is_a_400(server, traffic, items, words):
    answer = post(server, {"name": traffic.name, "items": items})
    assert answer.status_code == 400 and words in answer.json()["items"][0]["message"], answer.text


def test_the_same_prediction_twice_in_one_batch_is_refused_for_both(server, traffic):
    twice = [{"request_id": traffic.ids[0], "label": "nothing"}, {"request_id": traffic.ids[0], "label": "pedestrian"}]
    answer = post(server, {"name": traffic.name, "items": twice})
    assert answer.status_code == 400
    assert all(i["status"] == "rejected" and "appears 2 times" in i["message"] for i in answer.json()["items"])
    assert listed(server, traffic.name) == {}


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"items": []}, 400, "'name'"),
    ({"name": "no-such-model", "items": [{"request_id": "x", "label": "nothing"}]}, 404, "not found"),
    ({"name": "{model}", "items": "not a list"}, 400, "'items'"),
    ({"name": "{model}", "items": []}, 400, "1 to 1000 items"),
    ({"name": "{model}", "items": [{"request_id": "x", "label": "nothing"}] * 1001}, 400, "1 to 1000 items"),
    ({"name": "{model}", "items": [{"request_id": "x", "label": "nothing"}], "partial": "true"}, 400, "JSON boolean"),
    ({"name": "{model}", "items": [{"request_id": "x", "label": "nothing"}], "labeler": "me"}, 400, "unknown field"),
])
def test_a_bad_batch_is_a_clear_4xx_and_never_a_500(server, traffic, body, status, words):
    body = {key: (traffic.name if value == "{model}" else value) for key, value in body.items()}
    answer = post(server, body)
    assert answer.status_code == status and words in answer.json()["message"], answer.text
    assert listed(server, traffic.name) == {}


def test_a_body_that_is_not_json_is_a_400(server):
    answer = requests.post(f"{server.url}{API_PREFIX}/feedback", data="label=car", timeout=TIMEOUT,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_edit_rights_on_one_model_cannot_label_another_models_predictions(server, traffic):
    other = predictions(server, f"other-{uuid.uuid4().hex[:8]}")
    answer = post(server, {"name": traffic.name, "items": [{"request_id": other.ids[0], "label": "nothing"}]})
    assert answer.status_code == 404 and "not among the predictions of model" in answer.json()["items"][0]["message"]
    assert listed(server, other.name) == {} and listed(server, traffic.name) == {}


def test_a_callers_own_id_is_found_in_the_look_back_window(server, traffic):
    answer = post(server, {"name": traffic.name, "items": [{"request_id": traffic.caller_ids[0], "label": "nothing"}]})
    assert answer.status_code == 200 and answer.json()["created"] == 1, answer.text
    shaped_like_ours = "2020010100-" + uuid.uuid4().hex  # an hour with no log at all
    missing = post(server, {"name": traffic.name, "items": [{"request_id": shaped_like_ours, "label": "nothing"}]})
    assert missing.status_code == 404


def test_a_dry_run_answers_like_the_real_thing_and_writes_nothing(server, traffic):
    body = {"name": traffic.name, "items": [{"request_id": traffic.ids[0], "label": "nothing"}]}
    dry = post(server, body | {"dry_run": True})
    assert dry.status_code == 200 and dry.json()["created"] == 1 and dry.json()["dry_run"] is True
    assert listed(server, traffic.name) == {}


def test_concurrent_labels_on_one_prediction_both_land_as_revisions(server, traffic):
    answers: list[requests.Response] = []
    barrier = threading.Barrier(4)

    def label(value: str) -> None:
        barrier.wait()
        answers.append(post(server, {"name": traffic.name, "items": [{"request_id": traffic.ids[0], "label": value}]}))

    threads = [threading.Thread(target=label, args=(c,)) for c in CLASSES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200] * 4, [a.text for a in answers]
    assert listed(server, traffic.name)[traffic.ids[0]]["revision"] == 4


def test_revisions_are_append_only_in_the_database(server, traffic):
    post(server, {"name": traffic.name, "items": [{"request_id": traffic.ids[0], "label": "nothing"}]})
    engine = sa.create_engine(server.backend_uri)
    try:
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with engine.begin() as connection:
                connection.execute(sa.text(f"UPDATE {FEEDBACK_TABLE} SET label = 'pedestrian' WHERE model_name = :n"),
                                   {"n": traffic.name})
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with engine.begin() as connection:
                connection.execute(sa.text(f"DELETE FROM {FEEDBACK_TABLE} WHERE model_name = :n"), {"n": traffic.name})
    finally:
        engine.dispose()
    assert listed(server, traffic.name)[traffic.ids[0]]["label"] == "nothing"


def test_listing_pages_by_prediction_time_and_filters(server, traffic):
    items = [{"request_id": i, "label": "nothing"} for i in traffic.ids]
    assert post(server, {"name": traffic.name, "items": items}).status_code == 200
    pages, token = [], None
    while True:
        params = {"name": traffic.name, "max_results": "4"} | ({"page_token": token} if token else {})
        page = requests.get(f"{server.url}{API_PREFIX}/feedback", params=params, timeout=TIMEOUT).json()
        pages.append(page["feedback"])
        token = page["next_page_token"]
        if not token:
            break
    assert [len(p) for p in pages] == [4, 2] and {f["request_id"] for p in pages for f in p} == set(traffic.ids)
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    assert GatekeeperClient(server.url).feedback(traffic.name, since=future) == []
    for params, words in (({"page_token": "bogus"}, "page_token"), ({"max_results": "0"}, "max_results"),
                          ({"since": "yesterday"}, "since")):
        bad = requests.get(f"{server.url}{API_PREFIX}/feedback", params={"name": traffic.name, **params}, timeout=TIMEOUT)
        assert bad.status_code == 400 and words in bad.json()["message"], bad.text


def _cli(server: MlflowServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gatekeeper_cli.main", "--tracking-uri", server.url, "feedback", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_cli_adds_imports_all_or_nothing_and_lists(server, traffic, tmp_path: Path):
    added = _cli(server, "add", traffic.name, traffic.ids[0], "--label", "pedestrian")
    assert added.returncode == 0 and "1 created" in added.stdout, added.stderr
    table = tmp_path / "labels.csv"
    table.write_text("request_id,label,flag\n"
                     f"{traffic.ids[1]},nothing,\n{traffic.ids[2]},,wrong\n{traffic.ids[3]},bicycle,\n")
    refused = _cli(server, "import", traffic.name, str(table))
    assert refused.returncode == 2 and "item 2" in refused.stderr and "bicycle" in refused.stderr, refused.stderr
    assert set(listed(server, traffic.name)) == {traffic.ids[0]}
    partial = _cli(server, "import", traffic.name, str(table), "--partial")
    assert partial.returncode == 2 and "2 created" in partial.stdout and "1 rejected" in partial.stdout
    assert listed(server, traffic.name)[traffic.ids[2]]["flag"] == "wrong"
    shown = _cli(server, "list", traffic.name)
    assert shown.returncode == 0 and traffic.ids[1] in shown.stdout and "label=nothing" in shown.stdout


def test_under_basic_auth_feedback_needs_edit_rights_on_that_model(tmp_path, gate_policy):
    admin, alice = ("admin", "admin-password-123"), ("alice", "alice-password-123")
    env = {"GATEKEEPER_BASIC_AUTH": "true", "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret", LOG_ENV: str(tmp_path / "log")}
    with MlflowServer(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", policy=gate_policy, env=env) as running:
        requests.post(f"{running.url}/api/2.0/mlflow/users/create", auth=admin, timeout=TIMEOUT,
                      json={"username": alice[0], "password": alice[1]}).raise_for_status()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
            patch.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])
            mine, theirs = predictions(running, "labelled-by-alice"), predictions(running, "not-alices")
        requests.post(f"{running.url}/api/3.0/mlflow/users/permissions/grant", auth=admin, timeout=TIMEOUT,
                      json={"username": alice[0], "resource_type": "registered_model", "resource_id": mine.name,
                            "permission": "EDIT"}).raise_for_status()
        item = {"request_id": mine.ids[0], "label": "nothing"}
        assert post(running, {"name": mine.name, "items": [item]}).status_code == 401
        assert post(running, {"name": theirs.name, "items": [item]}, auth=alice).status_code == 403
        assert post(running, {"name": mine.name, "items": [item]}, auth=alice).status_code == 200
        assert post(running, {"name": mine.name, "items": [{"request_id": theirs.ids[0], "label": "nothing"}]},
                    auth=alice).status_code == 404
        read = requests.get(f"{running.url}{API_PREFIX}/feedback", params={"name": mine.name}, auth=alice, timeout=TIMEOUT)
        assert read.status_code == 200 and read.json()["feedback"][0]["actor"] == "alice"
