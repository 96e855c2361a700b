"""Where the pages live: one spelling of every path, for the routes, the auth validators, the
templates' links and the decision tag the store writes on each version.

Basic-auth matches validators by exact ``(path, method)``, so every page has a fixed path and takes
what it shows from the query string (``/gatekeeper/model?name=…``), never from the path.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from registry_hooks.contract import DECISION_PAGE

PREFIX = "/gatekeeper"
OVERVIEW = f"{PREFIX}/"
MODEL = f"{PREFIX}/model"
DECISION = DECISION_PAGE  # spelled in the contract: the store writes it on every decided version
EXPLAIN = f"{PREFIX}/explain"
ROLLBACK = f"{PREFIX}/rollback"
OVERRIDE = f"{PREFIX}/override"
STATIC = f"{PREFIX}/static"


def decision_path(decision_id: int) -> str:
    """The decision page of audit row ``decision_id``: what the MLflow UI links to from a version."""
    return f"{DECISION}?{urlencode({'id': decision_id})}"


def model_path(name: str, verdict: str | None = None, *, before: int | None = None, after: int | None = None) -> str:
    """A model's decisions: the newest page, or the page just older than ``before`` / newer than ``after``."""
    query = {"name": name, "verdict": verdict, "before": before, "after": after}
    return f"{MODEL}?{urlencode({k: v for k, v in query.items() if v})}"


def explain_path(name: str, version: str) -> str:
    return f"{EXPLAIN}?{urlencode({'name': name, 'version': version})}"


def run_ui_path(experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI (its client-side router lives after ``#``)."""
    return f"/#/experiments/{quote(str(experiment_id), safe='')}/runs/{quote(str(run_id), safe='')}"


def model_ui_path(name: str, version: str | None = None) -> str:
    """A registered model's (or one version's) page in the MLflow UI."""
    path = f"/#/models/{quote(name, safe='')}"
    return path if version is None else f"{path}/versions/{quote(str(version), safe='')}"
