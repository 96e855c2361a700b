"""Fields are read strictly, and unknown models are 404, on SQLite and PostgreSQL (issue 8, points 2 and 4).

Each gated route is asked side by side with a plain MLflow server holding the same model: a bad
version is a 400 ``INVALID_PARAMETER_VALUE`` with MLflow's own message wherever plain MLflow also
says 400, and a 400 (not a 500, not a silent ``int()``) where plain MLflow would read it as a
number or crash. Production never moves.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests
from mlflow.exceptions import MlflowException

from benchmarks.evidence import Scenario
from benchmarks.fuzz_pair import FuzzPair
from plugins.params import json_object, parse_flag, parse_int, parse_text, parse_version

PREFIXES = ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"]
GATE = "/gatekeeper/api"
BAD_VERSIONS = ["abc", "1.0", "²", "١", "１", "٣", "9" * 25, "9" * 5000, "1\x00", " 1", "1 ", "+1", "1_0", "0x1",
                "2147483648", "0", "-1", "\ud800", ""]
INVALID = "INVALID_PARAMETER_VALUE"


def answer(url: str, method: str, path: str, body: dict | None = None, **kwargs) -> tuple[int, str | None, str]:
    """(status, error_code, message) of one request; the body must be JSON whatever the status.

    A GET's fields go in the query string byte for byte (a lone surrogate as its UTF-8-style bytes).
    """
    if method == "GET" and body is not None:
        path += "?" + "&".join(f"{k}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in body.items())
    elif body is not None:
        kwargs["json"] = body
    response = requests.request(method, url + path, timeout=60, **kwargs)
    payload = response.json()  # raises on an HTML page
    return response.status_code, payload.get("error_code"), payload.get("message", "")


def assert_unmoved(pair: FuzzPair, approved_before: int) -> None:
    assert pair.scenario.production() == (pair.target.production, [pair.target.production])
    assert len(pair.approved_decisions()) == approved_before


# -- the parser itself -----------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [("7", "7"), ("007", "7"), (7, "7"), ("1", "1"), ("2147483647", "2147483647")])
def test_versions_that_parse(value, expected):
    assert parse_version(value) == expected


@pytest.mark.parametrize("value", BAD_VERSIONS + [None, True, 1.0, [1], {"v": 1}, 2**31, "9" * 100_000])
def test_versions_that_do_not_parse(value):
    with pytest.raises(MlflowException) as info:
        parse_version(value)
    assert info.value.error_code == INVALID, info.value
    assert len(info.value.message) < 300  # a 100,000-digit input is not echoed back whole


def test_flags_texts_and_bodies_are_strict():
    assert parse_flag(True, "force") is True and parse_flag(None, "force") is False
    for value in ["false", "0", ["x"], 0, 1, {}]:
        with pytest.raises(MlflowException, match="JSON boolean"):
            parse_flag(value, "force")
    assert parse_text("r" * 2000, "reason") == "r" * 2000 and parse_text(None, "reason") is None
    for value in ["", "  ", "r" * 2001, "a\x00b", "\ud800", 12, ["r"]]:
        with pytest.raises(MlflowException, match="reason"):
            parse_text(value, "reason")
    assert parse_int("10000", "limit", 1, 10_000) == 10_000
    assert json_object(b'{"name": "m"}') == {"name": "m"}
    for body in [b"[" * 100_000 + b"]" * 100_000, b"\xff{}", b"[]", b'"x"', b"", b"{"]:
        with pytest.raises(MlflowException, match="JSON"):
            json_object(body)


# -- MLflow's gated routes, side by side with plain MLflow ---------------------------------------------


def _gated_version_requests(target) -> list[tuple[str, str, dict]]:
    """Every MLflow route that reaches a gated store method with a version, as (method, path, body-with-None)."""
    name = target.name
    return [
        ("POST", "/registered-models/alias", {"name": name, "alias": "champion", "version": None}),
        ("POST", "/registered-models/alias", {"name": name, "alias": "challenger", "version": None}),
        ("POST", "/model-versions/transition-stage",
         {"name": name, "version": None, "stage": "Production", "archive_existing_versions": True}),
        ("POST", "/model-versions/transition-stage",
         {"name": name, "version": None, "stage": "Archived", "archive_existing_versions": False}),
        ("DELETE", "/model-versions/delete", {"name": name, "version": None}),
    ]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_bad_versions_are_400_like_plain_mlflow(pair, prefix):
    approved_before = len(pair.approved_decisions())
    differences = []
    for method, path, body in _gated_version_requests(pair.target):
        for version in BAD_VERSIONS:
            request = body | {"version": version}
            gated = answer(pair.gated.url, method, prefix + path, request)
            plain = answer(pair.plain.url, method, prefix + path, request)
            same_complaint = plain[0] == 400 and "'version'" in plain[2] and len(version) < 100
            if gated[:2] != (400, INVALID) or (same_complaint and gated != plain):
                differences.append(f"{method} {path} version={version[:30]!r}: gated {gated}, plain {plain}")
    assert not differences, "\n".join(differences)
    assert_unmoved(pair, approved_before)


def test_plain_mlflow_reads_some_of_these_as_numbers(pair):
    """Why the gate is stricter than MLflow: int() takes other scripts' digits and padding (v2 here)."""
    for version in ["２", " 2", "+2"]:
        status, _, _ = answer(pair.plain.url, "POST", "/api/2.0/mlflow/registered-models/alias",
                              {"name": pair.target.name, "alias": "challenger", "version": version})
        assert status == 200, version


def test_other_spellings_of_the_production_version_cannot_move_it(pair):
    """``"01"`` is v1 to MLflow: the gate must see the production version in it, not a stranger."""
    approved_before, name, url = len(pair.approved_decisions()), pair.target.name, pair.gated.url
    for version in ["01", "0001"]:
        for method, path, body in [
            ("POST", "/model-versions/transition-stage", {"stage": "Archived", "archive_existing_versions": False}),
            ("DELETE", "/model-versions/delete", {}),
            ("POST", "/model-versions/transition-stage", {"stage": "Staging", "archive_existing_versions": False}),
        ]:
            status, code, message = answer(url, method, PREFIXES[0] + path, body | {"name": name, "version": version})
            assert (status, code) == (403, "PERMISSION_DENIED"), message
            assert f"v{pair.target.production}" in message
    status, code, _ = answer(url, "POST", PREFIXES[1] + "/registered-models/alias",
                             {"name": name, "alias": "champion", "version": "0" + pair.target.candidate})
    assert (status, code) == (403, "PERMISSION_DENIED")  # v2 without evidence, whatever its spelling
    assert_unmoved(pair, approved_before)


# -- the gate's own routes ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", BAD_VERSIONS + [2, 2.0, ["2"], {"v": "2"}, True])
def test_bad_versions_on_explain_and_promote(pair, version):
    approved_before, name = len(pair.approved_decisions()), pair.target.name
    mlflow_says = answer(pair.plain.url, "DELETE", PREFIXES[0] + "/model-versions/delete",
                         {"name": name + "-absent", "version": version})
    promote = answer(pair.gated.url, "POST", f"{GATE}/promote", {"name": name, "version": version, "force": True, "reason": "r"})
    assert promote[:2] == (400, INVALID), promote
    if isinstance(version, str):  # a query string carries only text
        explain = answer(pair.gated.url, "GET", f"{GATE}/explain", {"name": name, "version": version})
        assert explain[:2] == (400, INVALID), explain
        if f"got '{version}'" in mlflow_says[2] and len(version) < 100:  # MLflow saw this value, called it no integer:
            assert promote[2] == explain[2] == mlflow_says[2]  # the gate says it word for word (longer ones: cut short)
    assert_unmoved(pair, approved_before)


@pytest.mark.parametrize("force", ["false", "true", "0", "1", "", ["x"], [], {}, 0, 1, 0.0])
def test_force_must_be_a_json_boolean(pair, force):
    approved_before, t = len(pair.approved_decisions()), pair.target
    status, code, message = answer(pair.gated.url, "POST", f"{GATE}/promote",
                                   {"name": t.name, "version": t.candidate, "force": force, "reason": "incident 42"})
    assert (status, code) == (400, INVALID) and "force" in message
    assert_unmoved(pair, approved_before)


@pytest.mark.parametrize("force", [False, None])
def test_false_or_null_force_is_an_ordinary_gated_promotion(pair, force):
    approved_before, t = len(pair.approved_decisions()), pair.target
    status, code, _ = answer(pair.gated.url, "POST", f"{GATE}/promote", {"name": t.name, "version": t.candidate, "force": force})
    assert (status, code) == (403, "PERMISSION_DENIED")
    assert_unmoved(pair, approved_before)


@pytest.mark.parametrize("reason", [12, 1.5, ["r"], {"why": "x"}, True, "", "   ", "r" * 2001, "a\x00b", "\ud800x"])
@pytest.mark.parametrize("route", ["promote", "rollback"])
def test_reason_must_be_a_bounded_non_empty_string(pair, route, reason):
    approved_before, t = len(pair.approved_decisions()), pair.target
    body = {"name": t.name, "reason": reason} | ({"version": t.candidate, "force": True} if route == "promote" else {})
    status, code, message = answer(pair.gated.url, "POST", f"{GATE}/{route}", body)
    assert (status, code) == (400, INVALID) and "reason" in message
    assert_unmoved(pair, approved_before)


def test_a_reason_of_2000_characters_is_accepted(pair):
    status, code, message = answer(pair.gated.url, "POST", f"{GATE}/rollback", {"name": pair.target.name, "reason": "r" * 2000})
    assert (status, code) == (409, "RESOURCE_CONFLICT") and "nothing to roll back to" in message  # reached the store


@pytest.mark.parametrize("limit", ["0", "-1", "10001", "abc", "²", "١", "1.0", "", "9" * 30, " 5"])
def test_history_limit_is_strict(pair, limit):
    status, code, message = answer(pair.gated.url, "GET", f"{GATE}/history", {"name": pair.target.name, "limit": limit})
    assert (status, code) == (400, INVALID) and "limit" in message


def test_history_limit_in_range(pair):
    status, _, _ = answer(pair.gated.url, "GET", f"{GATE}/history", {"name": pair.target.name, "limit": "10000"})
    decisions = requests.get(f"{pair.gated.url}{GATE}/history", params={"name": pair.target.name, "limit": "1"}, timeout=30)
    assert status == 200 and len(decisions.json()["decisions"]) == 1


BAD_BODIES = [
    ("deep nesting", b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"),
    ("deep nesting, top level", b"[" * 100_000 + b"]" * 100_000, "application/json"),
    ("invalid UTF-8", b'{"name": "\xff\xfe", "reason": "r"}', "application/json"),
    ("not JSON", b"name=fuzzed&reason=r", "application/json"),
    ("truncated JSON", b'{"name": "fuzzed", "reas', "application/json"),
    ("a JSON list", b'[{"name": "fuzzed"}]', "application/json"),
    ("double-encoded JSON", json.dumps(json.dumps({"name": "fuzzed", "reason": "r"})).encode(), "application/json"),
    ("empty body", b"", "application/json"),
    ("text/plain", b'{"name": "fuzzed", "reason": "r"}', "text/plain"),
    ("+json type", b'{"name": "fuzzed", "reason": "r"}', "application/merge-patch+json"),
    ("no content type", b'{"name": "fuzzed", "reason": "r"}', None),
    ("huge integer literal", b'{"name": "fuzzed", "version": ' + b"9" * 5000 + b"}", "application/json"),
]


@pytest.mark.parametrize("route", ["promote", "rollback"])
@pytest.mark.parametrize("label, body, content_type", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_malformed_bodies_are_json_400(pair, route, label, body, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.post(f"{pair.gated.url}{GATE}/{route}", data=body, headers=headers, timeout=60)
    assert response.status_code == 400, (label, response.text[:300])
    assert response.json()["error_code"] == INVALID


@pytest.mark.parametrize("method, path, status", [("GET", "/promote", 405), ("DELETE", "/history", 405), ("PUT", "/rollback", 405),
                                                  ("GET", "/nope", 404), ("POST", "/promote/", 404)])
def test_routing_errors_under_the_gate_are_json(pair, method, path, status):
    response = requests.request(method, f"{pair.gated.url}{GATE}{path}", json={"name": "x"}, timeout=30)
    assert response.status_code == status and response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error_code", "message"}


def test_routing_errors_elsewhere_are_unchanged(pair):
    """MLflow's own pages keep MLflow's answers: only the gate's prefix is turned into JSON."""
    for path in ["/api/2.0/mlflow/no-such-route", "/gatekeeper/apiary"]:
        gated = requests.get(pair.gated.url + path, timeout=30)
        plain = requests.get(pair.plain.url + path, timeout=30)
        assert (gated.status_code, gated.headers.get("content-type")) == (plain.status_code, plain.headers.get("content-type"))


# -- unknown models (point 4) --------------------------------------------------------------------------


@pytest.mark.parametrize("method, route, extra", [
    ("POST", "rollback", {"reason": "r"}), ("POST", "rollback", {}), ("GET", "history", {}), ("GET", "policy", {}),
    ("GET", "explain", {"version": "1"}), ("GET", "baseline", {}), ("POST", "promote", {"version": "1"}),
    ("POST", "promote", {"version": "1", "force": True, "reason": "r"}),
])
def test_unknown_model_is_404(pair, method, route, extra):
    status, code, message = answer(pair.gated.url, method, f"{GATE}/{route}", {"name": "no-such-model"} | extra)
    assert (status, code) == (404, "RESOURCE_DOES_NOT_EXIST"), message
    assert "no-such-model" in message


@pytest.mark.parametrize("name", ["", "   ", "a\x00b", "\ud800", "n" * 257, 7, ["x"], None])
def test_bad_model_names_are_400(pair, name):
    status, code, message = answer(pair.gated.url, "POST", f"{GATE}/rollback", {"name": name})
    assert (status, code) == (400, INVALID), message


@pytest.mark.parametrize("name", ["", "   ", "a\x00b", "n" * 257])
@pytest.mark.parametrize("route", ["history", "policy", "baseline", "explain"])
def test_bad_model_names_in_query_strings_are_400(pair, route, name):
    status, code, message = answer(pair.gated.url, "GET", f"{GATE}/{route}", {"name": name, "version": "1"})
    assert (status, code) == (400, INVALID), message


def test_history_of_a_deleted_model_stays_readable(pair, model_name):
    """The audit log outlives the model: a name it knows is not a 404 (a name it never saw is)."""
    scenario = Scenario(pair.gated.url, model_name)
    version = scenario.version()
    status, _, _ = answer(pair.gated.url, "POST", f"{GATE}/promote", {"name": model_name, "version": version})
    assert status == 403  # refused without evidence: one decision in the log
    scenario.client.delete_registered_model(model_name)
    status, _, _ = answer(pair.gated.url, "GET", f"{GATE}/history", {"name": model_name})
    decisions = scenario.gate.history(model_name)
    assert status == 200 and [d["action"] for d in decisions] == ["refuse"]
    assert answer(pair.gated.url, "GET", f"{GATE}/policy", {"name": model_name})[:2] == (404, "RESOURCE_DOES_NOT_EXIST")


NUL_NAME_REQUESTS = [  # a NUL in the name, and another field MLflow refuses before it reads the name
    ("POST", "/registered-models/rename", {"new_name": "a/b"}),
    ("POST", "/registered-models/alias", {"alias": "a/b", "version": "1"}),
    ("POST", "/model-versions/transition-stage", {"version": "1", "stage": "Nowhere", "archive_existing_versions": False}),
    ("DELETE", "/model-versions/delete", {"version": "abc"}),
]


@pytest.mark.parametrize("method, path, body", NUL_NAME_REQUESTS, ids=[r[1] for r in NUL_NAME_REQUESTS])
def test_a_nul_in_the_name_is_no_plugin_5xx(pair, method, path, body):
    """PostgreSQL cannot take a NUL in a query: the gate must not query the name before MLflow's checks would refuse."""
    request = body | {"name": pair.target.name + "\x00"}
    gated = answer(pair.gated.url, method, PREFIXES[0] + path, request)
    plain = answer(pair.plain.url, method, PREFIXES[0] + path, request)
    assert gated[0] < 500 or plain[0] >= 500, (gated, plain)
