"""Ways around the gate that an outside battery found, closed — on SQLite and on PostgreSQL.

- Prompt laundering: flipping ``mlflow.prompt.is_prompt`` on an existing model would exempt it
  from the gate (or drop a prompt's champion into an ordinary model with no decision).
- Imitated names: a ``gatekeeper.`` tag spelled with a space, full-width letters or a Cyrillic
  ``а``; an alias that only looks like ``champion``.
Every route is tried over raw HTTP on ``/api/`` and ``/ajax-api/`` as well as ``MlflowClient``.
"""

from __future__ import annotations

import mlflow
import pytest
import requests
import sqlalchemy
from mlflow.exceptions import MlflowException

from benchmarks.evidence import Scenario

PREFIXES = ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"]
PROMPT_TAG = "mlflow.prompt.is_prompt"


@pytest.fixture
def scenario(backend_server, model_name) -> Scenario:
    return Scenario(backend_server.url, model_name)


def call(server, prefix: str, method: str, path: str, body: dict) -> requests.Response:
    response = requests.request(method, f"{server.url}{prefix}{path}", json=body, timeout=60)
    assert response.status_code < 500, response.text
    return response


def assert_error(response: requests.Response, status: int, code: str, *fragments: str) -> str:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error_code"] == code, payload
    for fragment in fragments:
        assert fragment in payload["message"], payload["message"]
    return payload["message"]


def model_tags(server, name: str) -> dict[str, str]:
    response = call(server, PREFIXES[0], "GET", "/registered-models/get", {"name": name})
    return {t["key"]: t["value"] for t in response.json()["registered_model"].get("tags", [])}


# ------------------------------------------------------------------------------ prompt laundering


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("key", [PROMPT_TAG, "MLflow.Prompt.Is_Prompt"])
def test_flagging_a_model_as_prompt_is_refused_and_production_stays_gated(backend_server, scenario, prefix, key):
    v1 = scenario.first_release()
    v2 = scenario.version()
    response = call(backend_server, prefix, "POST", "/registered-models/set-tag",
                    {"name": scenario.name, "key": key, "value": "true"})
    assert_error(response, 403, "PERMISSION_DENIED", "fixed when it is created")
    assert key not in model_tags(backend_server, scenario.name)
    response = call(backend_server, prefix, "POST", "/registered-models/alias",
                    {"name": scenario.name, "alias": "champion", "version": v2})
    assert_error(response, 403, "PERMISSION_DENIED", "no evidence")
    assert scenario.production() == (v1, [v1])


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_prompt_keeps_working_but_cannot_shed_its_flag(backend_server, model_name, prefix):
    mlflow.set_tracking_uri(backend_server.url)
    prompt = mlflow.genai.register_prompt(name=model_name, template="Answer {{question}}")
    mlflow.genai.register_prompt(name=model_name, template="Answer briefly: {{question}}")
    mlflow.genai.set_prompt_alias(model_name, alias="champion", version=prompt.version)
    for method, path, body in [
        ("DELETE", "/registered-models/delete-tag", {"name": model_name, "key": PROMPT_TAG}),
        ("POST", "/registered-models/set-tag", {"name": model_name, "key": PROMPT_TAG, "value": "false"}),
    ]:
        assert_error(call(backend_server, prefix, method, path, body), 403, "PERMISSION_DENIED", "fixed when it is created")
    assert model_tags(backend_server, model_name)[PROMPT_TAG] == "true"
    mlflow.genai.set_prompt_alias(model_name, alias="champion", version=2)  # prompt aliases stay ungated
    assert mlflow.genai.load_prompt(f"prompts:/{model_name}@champion").version == 2
    mlflow.genai.delete_prompt_alias(model_name, alias="champion")


def _plant_prompt_flag(server, name: str, production_stage_version: str | None = None) -> None:
    """What a database laundered before flag changes were refused looks like."""
    engine = sqlalchemy.create_engine(server.backend_uri)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("INSERT INTO registered_model_tags (name, key, value) VALUES (:n, :k, 'true')"),
                           {"n": name, "k": PROMPT_TAG})
        if production_stage_version:
            connection.execute(
                sqlalchemy.text("UPDATE model_versions SET current_stage = 'Production' WHERE name = :n AND version = :v"),
                {"n": name, "v": int(production_stage_version)},
            )
    engine.dispose()


def test_a_planted_prompt_flag_does_not_exempt_a_model_that_went_through_the_gate(backend_server, scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    _plant_prompt_flag(backend_server, scenario.name)
    for prefix in PREFIXES:
        response = call(backend_server, prefix, "POST", "/registered-models/alias",
                        {"name": scenario.name, "alias": "champion", "version": v2})
        assert_error(response, 403, "PERMISSION_DENIED", "no evidence")
        response = call(backend_server, prefix, "DELETE", "/registered-models/alias", {"name": scenario.name, "alias": "champion"})
        assert_error(response, 403, "PERMISSION_DENIED", "protected alias")
    assert model_tags(backend_server, scenario.name)[PROMPT_TAG] == "true"  # the plant took: the gate ignores it
    assert len([d for d in scenario.gate.history(scenario.name) if d["action"] == "promote"]) == 1


def test_a_planted_prompt_flag_does_not_exempt_a_model_in_a_protected_stage(backend_server, scenario):
    v1, v2 = scenario.version(), scenario.version()
    _plant_prompt_flag(backend_server, scenario.name, production_stage_version=v1)
    response = call(backend_server, PREFIXES[1], "POST", "/registered-models/alias",
                    {"name": scenario.name, "alias": "champion", "version": v2})
    assert_error(response, 403, "PERMISSION_DENIED", "no evidence")
    response = call(backend_server, PREFIXES[0], "POST", "/model-versions/transition-stage",
                    {"name": scenario.name, "version": v1, "stage": "Archived", "archive_existing_versions": False})
    assert_error(response, 403, "PERMISSION_DENIED", "production version")


# -------------------------------------------------------------------------------- imitated names

RESERVED_LOOK_ALIKES = [
    " gatekeeper.verdict",
    "gatekeeper.verdict ",
    "\uff47\uff41\uff54\uff45\uff4b\uff45\uff45\uff50\uff45\uff52.verdict",  # full-width
    "gate\u200bkeeper.verdict",  # a zero-width space inside
    "g\u0430tekeeper.verdict",  # Cyrillic а
    "GATEKEEPER.Verdict",
]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("key", RESERVED_LOOK_ALIKES)
def test_gate_tags_cannot_be_imitated(backend_server, scenario, prefix, key):
    v1 = scenario.first_release()
    name = scenario.name
    for method, path, body in [
        ("POST", "/model-versions/set-tag", {"name": name, "version": v1, "key": key, "value": "promote"}),
        ("POST", "/registered-models/set-tag", {"name": name, "key": key, "value": "promote"}),
        ("POST", "/model-versions/create", {"name": name, "source": "s3://bucket/forged/model", "tags": [{"key": key, "value": "promote"}]}),
    ]:
        assert_error(call(backend_server, prefix, method, path, body), 403, "PERMISSION_DENIED", "written by the gate only")
    tags = scenario.client.get_model_version(name, v1).tags
    assert key not in tags and tags["gatekeeper.verdict"] == "promote"
    assert len(scenario.client.search_model_versions(f"name='{name}'")) == 1


LOOK_ALIKE_ALIASES = [
    "ch\u0430mpion",  # Cyrillic а
    "\uff43\uff48\uff41\uff4d\uff50\uff49\uff4f\uff4e",  # full-width
    "champ\u0131on",  # dotless ı
    "charnpion",  # rn for m
]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("alias", LOOK_ALIKE_ALIASES)
def test_an_alias_that_imitates_champion_is_refused_by_name(backend_server, scenario, prefix, alias):
    v1 = scenario.first_release()
    v2 = scenario.version()
    response = call(backend_server, prefix, "POST", "/registered-models/alias",
                    {"name": scenario.name, "alias": alias, "version": v2})
    message = assert_error(response, 400, "INVALID_PARAMETER_VALUE", "imitates the protected alias 'champion'")
    assert alias in message
    assert scenario.client.get_registered_model(scenario.name).aliases == {"champion": v1}


def test_look_alike_aliases_are_refused_through_the_python_client_too(scenario):
    v1 = scenario.version()
    with pytest.raises(MlflowException, match="imitates the protected alias 'champion'"):
        scenario.client.set_registered_model_alias(scenario.name, "ch\u0430mpion", v1)
    scenario.client.set_registered_model_alias(scenario.name, "challenger", v1)  # a different name is fine
    assert scenario.client.get_registered_model(scenario.name).aliases == {"challenger": v1}
