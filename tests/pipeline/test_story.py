"""The project's story, end to end against a real gated server, on small sizes:

v1 promoted as first release; the rainy-season window flagged by the drift report; v2 trained with
more rain and green-cone examples promoted, better overall and on weather=rain; a deliberately
worse version refused with a readable reason. Then the pages, as the README's newcomer clicks
through them: the overview shows the fixed version in production, the model page links the stale
version's refusal, and that decision's page shows the drift table (weather drifted) and a chart for
every slice check.

Told once, on PostgreSQL (the database CI insists on, and the only one whose pages no other test
fetches). Nothing in it depends on the database beyond what the gate's tests already run on both:
the audit chain, sets, verification and promotions (tests/gate/test_trusted_evidence.py and the
``backend_server`` modules); on SQLite the same pages are checked by tests/gate/test_pages.py and
tests/browser/, and the retrain cycle through a gated server by tests/pipeline/test_autopilot.py.
"""

from __future__ import annotations

import io
import json

import mlflow
import pytest
import requests

from benchmarks.servers import MlflowServer
from projects.retrain import DEFAULT_POLICY, RetrainConfig, retrain
from gatekeeper_cli.client import GatekeeperClient

SIZES = dict(train_size=4000, eval_size=2000, window_size=2000, epochs=10)


def _story(server_url: str, data_dir) -> None:
    gate = GatekeeperClient(server_url)
    common = dict(tracking_uri=server_url, data_dir=str(data_dir), out=io.StringIO())

    first = retrain(RetrainConfig(mix="summer", current="summer", **SIZES), **common)
    assert first.verdict == "promote", first.reasons
    assert gate.baseline("road-scenes")["version"] == first.version

    # The stale version is refused for the window's drift, which compares the window with its
    # training data, not its model: one epoch trains a model enough to be judged.
    stale = retrain(RetrainConfig(mix="summer", current="rainy_season", seed=1, **(SIZES | {"epochs": 1})), **common)
    assert stale.verdict != "promote"
    drift = json.loads(mlflow.artifacts.load_text(f"runs:/{stale.runs['drift']}/gatekeeper/drift.json"))
    drifted = {c["column"] for c in drift["columns"] if c["drifted"]}
    assert "weather" in drifted and any("critical column(s) drifted: weather" in r for r in stale.reasons)

    fixed = retrain(RetrainConfig(mix="augmented", current="rainy_season", **SIZES), **common)
    assert fixed.verdict == "promote", fixed.reasons
    record = gate.history("road-scenes", limit=1)[0]
    checks = {c["name"]: c for c in record["checks"]}
    assert record["baseline_version"] == first.version
    assert checks["primary:accuracy"]["outcome"] == "pass"
    rain = checks["slice:weather=rain:accuracy"]["numbers"]
    assert rain["improvement"] > 0, rain  # better in the rain, not only overall

    worse = retrain(RetrainConfig(mix="augmented", current="rainy_season", seed=2, train_size=400, eval_size=2000,
                                  window_size=2000, epochs=1), **common)
    assert worse.verdict == "refuse_worse", worse.reasons
    assert any("accuracy: candidate" in r and "does not improve" in r for r in worse.reasons)
    assert gate.baseline("road-scenes")["version"] == fixed.version
    assert mlflow.MlflowClient(server_url).get_registered_model("road-scenes").aliases == {"champion": fixed.version}

    _pages_tell_the_story(server_url, gate, fixed.version, stale.version)

    # Every step ran as a child of its retrain run, tagged by the run-context provider.
    steps = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{fixed.run_id}'")
    assert set(steps["tags.gatekeeper.pipeline.step"]) == {"train", "drift", "evaluate"}
    assert steps["tags.gatekeeper.dataset.version"].nunique() == 1


def _pages_tell_the_story(server_url: str, gate: GatekeeperClient, in_production: str, stale: str) -> None:
    def page(path: str, **params) -> str:
        response = requests.get(f"{server_url}/gatekeeper/{path}", params=params, timeout=60)
        assert response.status_code == 200, (path, response.status_code)
        return response.text

    overview = page("")
    champion_row = overview.split('<th scope="row">alias &#39;champion&#39;</th>')[1].split("</tr>")[0]
    assert f"<strong>v{in_production}</strong>" in champion_row
    refusal = next(d for d in gate.history("road-scenes", limit=100)
                   if d["candidate_version"] == stale and d["action"] == "refuse")
    assert f"/gatekeeper/decision?id={refusal['id']}" in page("model", name="road-scenes")
    decision = page("decision", id=str(refusal["id"]))
    drift_table = decision.split('<table class="drift">')[1].split("</table>")[0]
    weather_row = drift_table.split('<th scope="row">weather</th>')[1].split("</tr>")[0]
    assert "drifted</span>" in weather_row and "no drift" not in weather_row
    slices = [c["name"] for c in refusal["checks"] if c["name"].startswith("slice:")]
    assert slices, refusal["checks"]
    for name in slices:
        section = decision.split(f"<code>{name}</code>")[1].split("</section>")[0]
        assert 'class="interval-chart"' in section, name


@pytest.mark.slow
@pytest.mark.postgres
def test_story_on_a_gated_postgres_server(tmp_path, postgres_uri_factory):
    with postgres_uri_factory() as uri, MlflowServer(tmp_path, uri, policy=DEFAULT_POLICY) as server:
        _story(server.url, tmp_path / "data")
