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
from werkzeug.exceptions import HTTPException

from plugins import autopilot_api, feedback_api, notifier
from plugins.params import parse_flag, parse_name, wrong_type
from registry_hooks.contract import API_PREFIX
from registry_hooks.decision import Decision, RecordedDecision
from registry_hooks.outcomes_file import max_rows
from registry_hooks.policy import Policy

BASIC_AUTH_ENV = "GATEKEEPER_BASIC_AUTH"
_logger = logging.getLogger(__name__)

STARTUP_POLICY = Policy.from_environment()  # raises PolicyError: the server does not start
feedback_api.lookback()  # a bad GATEKEEPER_FEEDBACK_LOOKBACK_DAYS stops the start-up too
notifier.settings()  # so do webhook URLs without a secret, a malformed URL, a bad retry setting
max_rows()  # and a GATEKEEPER_EVIDENCE_MAX_ROWS that is not a number of rows


def basic_auth_enabled() -> bool:
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

    if isinstance(exc, MlflowException):  # a batch's per-item answers ride along (``payload``)
        body = {"error_code": exc.error_code, "message": exc.message} | getattr(exc, "payload", {})
        return jsonify(body), exc.get_http_status_code()
    _logger.exception("gatekeeper route failed")
    return jsonify({"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"}), 500


def _params() -> dict[str, Any]:
    """The request's fields: a GET's query string, else the body, which must be one JSON object."""
    from plugins.params import invalid_parameter, json_object

    if request.method == "GET":
        return request.args.to_dict()
    if request.mimetype != "application/json":  # MLflow's rule: not "+json" types, which Flask also takes
        raise invalid_parameter(f"send a JSON object with Content-Type: application/json, got {request.mimetype!r}")
    return json_object(request.get_data())  # cached: basic-auth's validators may read the body too


def _require_admin() -> None:
    """Overrides are for admins when basic-auth is on (read/update checks run in basic-auth itself)."""
    from flask import has_request_context

    if not (basic_auth_enabled() and has_request_context()):
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
                                     ("promote", "POST", update), ("rollback", "POST", update),
                                     ("feedback", "GET", read), ("feedback", "POST", update),
                                     ("autopilot/lease", "GET", read), ("autopilot/lease", "POST", update)):
        auth.BEFORE_REQUEST_VALIDATORS[(f"{API_PREFIX}/{route}", method)] = validator
    auth.BEFORE_REQUEST_VALIDATORS[(f"{API_PREFIX}/audit/verify", "GET")] = _can_verify_audit
    auth.BEFORE_REQUEST_VALIDATORS[(f"{API_PREFIX}/sets", "GET")] = lambda: True  # any signed-in user may read
    auth.BEFORE_REQUEST_VALIDATORS[(f"{API_PREFIX}/sets/register", "POST")] = _can_register_sets
    from plugins.pages.routes import register_auth_validators as register_page_validators

    register_page_validators()  # the /gatekeeper/ pages: model READ, decision's model READ, forms for admins


def _can_register_sets() -> bool:
    """Which data counts as evidence is the gate's trust anchor: admins decide, and the users the
    policy names as ``registrars``."""
    from mlflow.server import auth

    if auth.sender_is_admin():
        return True
    return STARTUP_POLICY.may_register_sets(request.authorization.username if request.authorization else None)


def _can_verify_audit() -> bool:
    """One model's audit chain: whoever may read that model. The whole log names every model, so
    without a name it is for admins only (basic-auth lets admins past before any validator)."""
    from mlflow.server import auth

    if request.args.get("name") is not None:
        return auth.validate_can_read_registered_model()
    return auth.sender_is_admin()


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


def _decision_payload(decision: Decision | RecordedDecision | None) -> dict[str, Any]:
    """A judgement (explain), or a judgement as the store recorded it (promote, rollback), or None:
    the version already held every target."""
    if decision is None:
        return {"verdict": "unchanged", "reasons": ["already holds every target: nothing changed"]}
    return decision.to_dict() | {"summary": decision.summary()}


def _string(params: dict[str, Any], key: str) -> str | None:
    """A field the REST API types as a string (``"version": "3"``, as on MLflow's routes); None if absent.

    The store also takes a Python int for a version (in-process callers); over JSON a number is
    a wrong type, as MLflow answers it.
    """
    value = params.get(key)
    if value is not None and not isinstance(value, str):
        raise wrong_type(key, value)
    return value


def explain(params: dict[str, Any], store) -> dict[str, Any]:
    return _decision_payload(store.explain(parse_name(params.get("name")), _string(params, "version")))


def promote(params: dict[str, Any], store) -> dict[str, Any]:
    force = parse_flag(params.get("force"), "force")
    name = parse_name(params.get("name"))
    if force:
        _require_admin()
    decision = store.promote(name, _string(params, "version"), force=force, reason=params.get("reason"))
    return _decision_payload(decision)


def rollback(params: dict[str, Any], store) -> dict[str, Any]:
    return _decision_payload(store.rollback(parse_name(params.get("name")), reason=params.get("reason")))


def history(params: dict[str, Any], store) -> dict[str, Any]:
    limit = _string(params, "limit")
    records = store.history(parse_name(params.get("name")), 100 if limit is None else limit)
    return {"decisions": [r.to_dict() for r in records]}


def policy(params: dict[str, Any], store) -> dict[str, Any]:
    name = parse_name(params.get("name"))
    store.get_registered_model(name)  # an unknown model is a 404, as on MLflow's own routes
    return {"policy": store.policy.for_model(name).to_dict(),
            "policy_hash": store.policy.content_hash, "source": store.policy.source}


def baseline(params: dict[str, Any], store) -> dict[str, Any]:
    found = store.baseline(parse_name(params.get("name")))
    return {"version": found.version, "source": found.source}


def audit_verify(params: dict[str, Any], store) -> dict[str, Any]:
    """The audit chain recomputed: one model's (``name``), or every model's."""
    name = params.get("name")
    return store.verify_audit(None if name is None else parse_name(name)).to_dict()


def sets(params: dict[str, Any], store) -> dict[str, Any]:
    """Every version of one set (``name``), or the current version of every set."""
    from plugins import set_registry

    return {"sets": [v.to_dict() for v in set_registry.listing(store, params.get("name"))]}


def sets_register(params: dict[str, Any], store) -> dict[str, Any]:
    """Record the next version of a set from the facts ``gatekeeper sets register`` computed."""
    from plugins import set_registry
    from plugins.request_context import current_actor

    return {"set": set_registry.register(store, params, current_actor()).to_dict()}


_HTTP_ERROR_CODES = {404: "ENDPOINT_NOT_FOUND", 413: "RESOURCE_LIMIT_EXCEEDED"}


def feedback(params: dict[str, Any], store) -> dict[str, Any]:
    """Labels and flags on logged predictions (``plugins.feedback_api``): a batch in, a status per item out."""
    from plugins.request_context import current_actor

    return feedback_api.submit(params, store, current_actor())


def feedback_list(params: dict[str, Any], store) -> dict[str, Any]:
    """The newest feedback per prediction of one model, a page at a time."""
    return feedback_api.listing(params, store)


def autopilot_lease(params: dict[str, Any], store) -> dict[str, Any]:
    """Take, keep or give up a model's autopilot lease (``plugins.autopilot_api``)."""
    return autopilot_api.change(params, store)


def autopilot_lease_look(params: dict[str, Any], store) -> dict[str, Any]:
    """Who holds a model's autopilot lease, until when."""
    return autopilot_api.look(params, store)


def _http_error(exc: HTTPException):
    """Routing errors under the gate's prefix (wrong method, unknown route, body too large) as JSON.

    Flask answers these before any view runs, with an HTML page; elsewhere nothing changes.
    """
    if not request.path.startswith(API_PREFIX + "/") or exc.code is None:
        return exc
    return jsonify({"error_code": _HTTP_ERROR_CODES.get(exc.code, "BAD_REQUEST"), "message": exc.description}), exc.code


def blueprint() -> Blueprint:
    routes = Blueprint("gatekeeper", __name__)
    routes.app_errorhandler(HTTPException)(_http_error)
    for view, methods in ((explain, ["GET"]), (history, ["GET"]), (policy, ["GET"]), (baseline, ["GET"]),
                          (promote, ["POST"]), (rollback, ["POST"])):
        routes.add_url_rule(f"{API_PREFIX}/{view.__name__}", view_func=_route(view), methods=methods)
    routes.add_url_rule(f"{API_PREFIX}/audit/verify", view_func=_route(audit_verify), methods=["GET"])
    routes.add_url_rule(f"{API_PREFIX}/sets", view_func=_route(sets), methods=["GET"])
    routes.add_url_rule(f"{API_PREFIX}/sets/register", view_func=_route(sets_register), methods=["POST"])
    routes.add_url_rule(f"{API_PREFIX}/feedback", view_func=_route(feedback), methods=["POST"])
    routes.add_url_rule(f"{API_PREFIX}/feedback", view_func=_route(feedback_list), methods=["GET"], endpoint="feedback_list")
    routes.add_url_rule(f"{API_PREFIX}/autopilot/lease", view_func=_route(autopilot_lease), methods=["POST"])
    routes.add_url_rule(f"{API_PREFIX}/autopilot/lease", view_func=_route(autopilot_lease_look), methods=["GET"],
                        endpoint="autopilot_lease_look")
    return routes


def create_app(app: Flask | None = None):
    """The ``mlflow.app`` factory: MLflow's Flask app with the gate's routes, optionally behind basic-auth."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as mlflow_app

    app = app or mlflow_app
    if "gatekeeper" not in app.blueprints:
        app.register_blueprint(blueprint())
    if "gatekeeper_pages" not in app.blueprints:
        from plugins.pages.routes import blueprint as pages_blueprint

        app.register_blueprint(pages_blueprint())
    store = _store()  # fail at start-up, not at the first promotion, when the registry is not gated
    notifier.start(store.engine, store.secret)  # this worker's sender of decision notifications
    if basic_auth_enabled():
        from mlflow.server import auth

        auth.bootstrap_admin_user()
        _register_auth_validators()
        return auth.create_app(app)
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app
