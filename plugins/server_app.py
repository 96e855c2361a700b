"""``mlflow server --app-name gatekeeper``: MLflow's server plus the gate's own routes.

The gate itself lives in the registry store (so every MLflow route passes through it); this app
adds what MLflow has no route for — promote with the policy's targets, explain, history,
rollback, an audited override — under ``/gatekeeper/api/``, and turns on MLflow's basic-auth
in front of everything when ``GATEKEEPER_BASIC_AUTH`` is set (``--app-name`` takes one name, so
this app has to wrap basic-auth itself).

The policy is validated when this module is imported: ``mlflow server`` imports the app module in
its own process before it starts any worker, so a bad policy stops the server with one clear
error instead of a server that lets everything through or workers that crash in a loop.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from flask import Blueprint, Flask, Response, jsonify, request

from registry_hooks.policy import Policy

BASIC_AUTH_ENV = "GATEKEEPER_BASIC_AUTH"
API_PREFIX = "/gatekeeper/api"
_logger = logging.getLogger(__name__)

STARTUP_POLICY = Policy.from_environment()  # raises PolicyError: the server does not start


def _basic_auth_enabled() -> bool:
    return os.environ.get(BASIC_AUTH_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _store():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_STATE
    from mlflow.server.handlers import _get_model_registry_store

    from plugins.registry_store import GatekeeperStore

    store = _get_model_registry_store()
    if not isinstance(store, GatekeeperStore):
        raise MlflowException(
            "the registry is not gated: start the server with --registry-store-uri gatekeeper:<database uri>",
            INVALID_STATE,
        )
    return store


def _error(exc: Exception) -> tuple[Response, int]:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return jsonify({"error_code": exc.error_code, "message": exc.message}), exc.get_http_status_code()
    _logger.exception("gatekeeper route failed")
    return jsonify({"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"}), 500


def _params() -> dict[str, Any]:
    if request.method == "GET":
        return request.args.to_dict()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        raise MlflowException("send a JSON object as the request body", INVALID_PARAMETER_VALUE)
    return body


def _required(params: dict[str, Any], key: str) -> str:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    value = params.get(key)
    if value is None or str(value).strip() == "":
        raise MlflowException(f"missing required parameter '{key}'", INVALID_PARAMETER_VALUE)
    if key == "version" and not str(value).isdigit():
        raise MlflowException(f"'version' must be a positive integer, got {value!r}", INVALID_PARAMETER_VALUE)
    return str(value)


def _require_admin() -> None:
    """Overrides are for admins when basic-auth is on (read/update checks run in basic-auth itself)."""
    from flask import has_request_context

    if not (_basic_auth_enabled() and has_request_context()):
        return
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED
    from mlflow.server import auth

    if not auth.sender_is_admin():
        raise MlflowException("permission denied: overrides are for admins only", PERMISSION_DENIED)


def _register_auth_validators() -> None:
    """Make basic-auth check MLflow's registered-model permissions on the gate's routes.

    Basic-auth fails closed on routes it has no validator for; these use the same READ/EDIT
    permissions as MLflow's own registry routes, keyed on the ``name`` parameter.
    """
    from mlflow.server import auth

    read, update = auth.validate_can_read_registered_model, auth.validate_can_update_registered_model
    for route, method, validator in (("explain", "GET", read), ("history", "GET", read), ("policy", "GET", read),
                                     ("baseline", "GET", read),
                                     ("promote", "POST", update), ("rollback", "POST", update)):
        auth.BEFORE_REQUEST_VALIDATORS[(f"{API_PREFIX}/{route}", method)] = validator


def run_view(view: Callable[[dict[str, Any], Any], Any], params: dict[str, Any], store) -> Any:
    """Run one gate operation on ``store``; the in-process client calls this without Flask."""
    return view(params, store)


def _route(view: Callable[[dict[str, Any], Any], Any]) -> Callable[[], tuple[Response, int]]:
    def handler():
        try:
            return jsonify(run_view(view, _params(), _store())), 200
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error with its status
            return _error(exc)

    handler.__name__ = view.__name__
    return handler


def _decision_payload(decision) -> dict[str, Any]:
    if decision is None:
        return {"verdict": "unchanged", "reasons": ["already holds every target: nothing changed"]}
    return decision.to_dict() | {"summary": decision.summary()}


def explain(params: dict[str, Any], store) -> dict[str, Any]:
    return _decision_payload(store.explain(_required(params, "name"), _required(params, "version")))


def promote(params: dict[str, Any], store) -> dict[str, Any]:
    force = bool(params.get("force"))
    if force:
        _require_admin()
    decision = store.promote(
        _required(params, "name"), _required(params, "version"), force=force, reason=params.get("reason")
    )
    return _decision_payload(decision)


def rollback(params: dict[str, Any], store) -> dict[str, Any]:
    return _decision_payload(store.rollback(_required(params, "name"), reason=params.get("reason")))


def history(params: dict[str, Any], store) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    limit = str(params.get("limit", "100"))
    if not limit.isdigit() or not 1 <= int(limit) <= 10_000:
        raise MlflowException(f"'limit' must be an integer in [1, 10000], got {limit!r}", INVALID_PARAMETER_VALUE)
    records = store.history(_required(params, "name"), int(limit))
    return {"decisions": [r.to_dict() for r in records]}


def policy(params: dict[str, Any], store) -> dict[str, Any]:
    return {"policy": store.policy.for_model(_required(params, "name")).to_dict(),
            "policy_hash": store.policy.content_hash, "source": store.policy.source}


def baseline(params: dict[str, Any], store) -> dict[str, Any]:
    found = store.baseline(_required(params, "name"))
    return {"version": found.version, "source": found.source}


def blueprint() -> Blueprint:
    routes = Blueprint("gatekeeper", __name__)
    for view, methods in ((explain, ["GET"]), (history, ["GET"]), (policy, ["GET"]), (baseline, ["GET"]),
                          (promote, ["POST"]), (rollback, ["POST"])):
        routes.add_url_rule(f"{API_PREFIX}/{view.__name__}", view_func=_route(view), methods=methods)
    return routes


def create_app(app: Flask | None = None):
    """The ``mlflow.app`` factory: MLflow's Flask app with the gate's routes, optionally behind basic-auth."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as mlflow_app

    app = app or mlflow_app
    if "gatekeeper" not in app.blueprints:
        app.register_blueprint(blueprint())
    _store()  # fail at start-up, not at the first promotion, when the registry is not gated
    if _basic_auth_enabled():
        from mlflow.server import auth

        auth.bootstrap_admin_user()
        _register_auth_validators()
        return auth.create_app(app)
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app
