"""Every registry path that can change production is gated or refused, on a real server.

Raw HTTP runs on both ``/api/2.0/mlflow`` (clients) and ``/ajax-api/2.0/mlflow`` (the web UI);
``MlflowClient`` covers the Python path. A refusal is always a 403 ``PERMISSION_DENIED`` with a
message a person can act on, never a 500 and never a silent promotion.
"""

from __future__ import annotations

import pytest
import requests
from mlflow.entities.model_registry import ModelVersionTag
from mlflow.exceptions import MlflowException

from benchmarks.evidence import Scenario

PREFIXES = ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"]


@pytest.fixture
def scenario(sqlite_server, model_name) -> Scenario:
    return Scenario(sqlite_server.url, model_name)


def call(server, prefix: str, method: str, path: str, body: dict) -> requests.Response:
    response = requests.request(method, f"{server.url}{prefix}{path}", json=body, timeout=60)
    assert response.status_code != 500, response.text
    return response


def assert_refused(response: requests.Response, *fragments: str) -> dict:
    assert response.status_code == 403, response.text
    payload = response.json()
    assert payload["error_code"] == "PERMISSION_DENIED"
    for fragment in fragments:
        assert fragment in payload["message"], payload["message"]
    return payload


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("alias", ["champion", "CHAMPION", "Champion"])
def test_set_protected_alias_without_evidence_is_refused(sqlite_server, scenario, prefix, alias):
    version = scenario.version()
    response = call(sqlite_server, prefix, "POST", "/registered-models/alias",
                    {"name": scenario.name, "alias": alias, "version": version})
    assert_refused(response, "no evidence", f"models:/{scenario.name}/{version}")
    assert scenario.client.get_registered_model(scenario.name).aliases == {}


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("archive_existing", [True, False])
def test_transition_to_production_without_evidence_is_refused(sqlite_server, scenario, prefix, archive_existing):
    version = scenario.version()
    response = call(sqlite_server, prefix, "POST", "/model-versions/transition-stage",
                    {"name": scenario.name, "version": version, "stage": "production",
                     "archive_existing_versions": archive_existing})
    assert_refused(response, "Promotion refused")
    assert scenario.client.get_model_version(scenario.name, version).current_stage == "None"


def test_case_variant_with_passing_evidence_lands_on_the_canonical_alias(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.evidence(v2, v1)
    scenario.client.set_registered_model_alias(scenario.name, "CHAMPION", v2)
    aliases = scenario.client.get_registered_model(scenario.name).aliases
    assert aliases == {"champion": v2}


@pytest.mark.parametrize("archive_existing", [True, False])
def test_promotion_to_production_archives_the_previous_holder(scenario, archive_existing):
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.evidence(v2, v1)
    scenario.client.transition_model_version_stage(scenario.name, v2, "Production", archive_existing_versions=archive_existing)
    assert scenario.client.get_model_version(scenario.name, v1).current_stage == "Archived"
    assert scenario.production() == ("1", ["2"])  # the alias is untouched by a stage transition
    tags = scenario.client.get_model_version(scenario.name, v2).tags
    assert tags["gatekeeper.verdict"] == "promote" and tags["gatekeeper.baseline_version"] == v1


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("stage", ["Archived", "None", "Staging"])
def test_moving_production_out_of_its_stage_is_refused(sqlite_server, scenario, prefix, stage):
    v1 = scenario.first_release()
    response = call(sqlite_server, prefix, "POST", "/model-versions/transition-stage",
                    {"name": scenario.name, "version": v1, "stage": stage, "archive_existing_versions": False})
    assert_refused(response, "production version", "gatekeeper rollback")
    assert scenario.production() == (v1, [v1])


@pytest.mark.parametrize("prefix", PREFIXES)
def test_deleting_the_protected_alias_is_refused(sqlite_server, scenario, prefix):
    v1 = scenario.first_release()
    response = call(sqlite_server, prefix, "DELETE", "/registered-models/alias", {"name": scenario.name, "alias": "champion"})
    assert_refused(response, "protected alias", "gatekeeper rollback")
    response = call(sqlite_server, prefix, "DELETE", "/registered-models/alias", {"name": scenario.name, "alias": "ChampioN"})
    assert response.status_code == 200  # no such alias: nothing in production changes
    assert scenario.production() == (v1, [v1])


def test_unprotected_aliases_and_stages_are_not_gated(scenario):
    v1 = scenario.version()
    scenario.client.set_registered_model_alias(scenario.name, "challenger", v1)
    scenario.client.transition_model_version_stage(scenario.name, v1, "Staging")
    scenario.client.delete_registered_model_alias(scenario.name, "challenger")
    assert scenario.client.get_model_version(scenario.name, v1).current_stage == "Staging"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_deleting_the_production_version_is_refused(sqlite_server, scenario, prefix):
    v1 = scenario.first_release()
    v2 = scenario.version()
    response = call(sqlite_server, prefix, "DELETE", "/model-versions/delete", {"name": scenario.name, "version": v1})
    assert_refused(response, f"{scenario.name} v{v1} holds")
    assert call(sqlite_server, prefix, "DELETE", "/model-versions/delete", {"name": scenario.name, "version": v2}).status_code == 200
    assert scenario.production() == (v1, [v1])


@pytest.mark.parametrize("prefix", PREFIXES)
def test_deleting_or_renaming_a_model_in_production_is_refused(sqlite_server, scenario, prefix):
    scenario.first_release()
    assert_refused(call(sqlite_server, prefix, "DELETE", "/registered-models/delete", {"name": scenario.name}), "cannot delete")
    assert_refused(
        call(sqlite_server, prefix, "POST", "/registered-models/rename", {"name": scenario.name, "new_name": scenario.name + "-x"}),
        "cannot rename",
    )
    assert scenario.client.get_registered_model(scenario.name).aliases == {"champion": "1"}


def test_models_without_production_can_be_renamed_and_deleted(scenario):
    scenario.version()
    new_name = scenario.name + "-renamed"
    scenario.client.rename_registered_model(scenario.name, new_name)
    assert scenario.client.get_registered_model(new_name).latest_versions[0].version == "1"
    scenario.client.delete_registered_model(new_name)
    with pytest.raises(MlflowException, match="not found"):
        scenario.client.get_registered_model(new_name)


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("key", ["gatekeeper.verdict", "GATEKEEPER.verdict", "gatekeeper.anything"])
def test_clients_cannot_forge_or_erase_gate_tags(sqlite_server, scenario, prefix, key):
    v1 = scenario.first_release()
    name = scenario.name
    assert_refused(call(sqlite_server, prefix, "POST", "/model-versions/set-tag",
                        {"name": name, "version": v1, "key": key, "value": "promote"}), "written by the gate only")
    assert_refused(call(sqlite_server, prefix, "DELETE", "/model-versions/delete-tag",
                        {"name": name, "version": v1, "key": "gatekeeper.verdict"}), "written by the gate only")
    assert_refused(call(sqlite_server, prefix, "POST", "/registered-models/set-tag",
                        {"name": name, "key": key, "value": "x"}), "written by the gate only")
    assert_refused(call(sqlite_server, prefix, "POST", "/model-versions/create",
                        {"name": name, "source": "s3://bucket/forged/model", "tags": [{"key": key, "value": "promote"}]}),
                   "written by the gate only")
    assert scenario.client.get_model_version(name, v1).tags["gatekeeper.verdict"] == "promote"


def test_forged_tag_does_not_promote(scenario):
    v1 = scenario.version()
    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
        scenario.client.set_model_version_tag(scenario.name, v1, "gatekeeper.verdict", "promote")
    with pytest.raises(MlflowException, match="no evidence"):
        scenario.client.set_registered_model_alias(scenario.name, "champion", v1)


def test_a_copied_version_carries_no_gate_tags_and_no_production(scenario):
    v1 = scenario.first_release()
    scenario.client.set_model_version_tag(scenario.name, v1, "team", "vision")
    copy = scenario.client.copy_model_version(f"models:/{scenario.name}/{v1}", scenario.name + "-copy")
    copied = scenario.client.get_model_version(copy.name, copy.version)
    assert copied.tags.get("team") == "vision"
    assert not [k for k in copied.tags if k.startswith("gatekeeper.")]
    assert copied.current_stage == "None" and copied.aliases == []
    with pytest.raises(MlflowException, match="no evidence"):
        scenario.client.set_registered_model_alias(copy.name, "champion", copy.version)


def test_delete_then_promote(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.evidence(v2, v1)
    scenario.client.delete_model_version(scenario.name, v2)
    with pytest.raises(MlflowException, match="not found"):
        scenario.client.set_registered_model_alias(scenario.name, "champion", v2)
    assert scenario.production() == (v1, [v1])


def test_archive_then_promote(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    scenario.client.transition_model_version_stage(scenario.name, v2, "Archived")
    scenario.evidence(v2, v1)
    scenario.gate.promote(scenario.name, v2)
    assert scenario.production() == (v2, [v2])
    assert scenario.client.get_model_version(scenario.name, v1).current_stage == "Archived"


def test_a_version_that_alone_is_production_is_extended_to_the_stage_without_evidence(scenario):
    v1 = scenario.version()
    run_id = scenario.evidence(v1, None)
    scenario.client.set_registered_model_alias(scenario.name, "champion", v1)  # a first release, alias only
    scenario.client.delete_run(run_id)  # no evidence left: only decide()'s rule can extend it
    scenario.client.transition_model_version_stage(scenario.name, v1, "Production", archive_existing_versions=False)
    assert scenario.production() == (v1, [v1])
    latest = scenario.gate.history(scenario.name)[0]
    assert (latest["action"], latest["verdict"], latest["target"]) == ("promote", "promote", "stage Production")
    assert latest["checks"] == [{"name": "evidence", "outcome": "pass", "numbers": {},
                                 "message": "already production through alias 'champion'; extending it to stage Production"}]


def test_a_version_that_shares_production_is_not_extended_without_evidence(scenario):
    v1 = scenario.first_release()
    v2 = scenario.version()
    run_id = scenario.evidence(v2, v1)
    scenario.client.transition_model_version_stage(scenario.name, v2, "Production", archive_existing_versions=True)
    scenario.client.delete_run(run_id)  # v2 holds the stage, v1 still the alias: v2 is not all of production
    with pytest.raises(MlflowException, match="no evidence"):
        scenario.client.set_registered_model_alias(scenario.name, "champion", v2)
    assert scenario.production() == (v1, [v2])


def test_prompts_are_not_gated(sqlite_server, model_name):
    import mlflow

    mlflow.set_tracking_uri(sqlite_server.url)
    prompt = mlflow.genai.register_prompt(name=model_name, template="Answer {{question}}")
    mlflow.genai.set_prompt_alias(model_name, alias="champion", version=prompt.version)
    assert mlflow.genai.load_prompt(f"prompts:/{model_name}@champion").version == prompt.version
    mlflow.genai.delete_prompt_alias(model_name, alias="champion")


def test_missing_model_or_version_is_a_clear_404(sqlite_server, scenario):
    response = call(sqlite_server, PREFIXES[0], "POST", "/registered-models/alias",
                    {"name": "no-such-model", "alias": "champion", "version": "1"})
    assert response.status_code == 404 and "not found" in response.json()["message"]
    scenario.version()
    response = call(sqlite_server, PREFIXES[1], "POST", "/model-versions/transition-stage",
                    {"name": scenario.name, "version": "99", "stage": "Production", "archive_existing_versions": True})
    assert response.status_code == 404
