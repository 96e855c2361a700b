"""The ``/gatekeeper/`` pages as Flask routes, and the basic-auth validators that guard them.

Rendered with a Jinja environment of this package's own (autoescaping every ``.html`` template:
model names, reasons and slice values are user input), so the pages never pick up a template of
the same name from MLflow's app. Every failure a request can cause becomes an HTML page with the
status MLflow would give (400 bad input, 403, 404 unknown model or decision); anything else is
logged and shown as a 500 without its details.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from flask import Blueprint, Response, redirect, request, send_from_directory
from jinja2 import Environment, FileSystemLoader, select_autoescape
from mlflow.exceptions import MlflowException

from plugins.decision_note import verdict_label
from plugins.pages import forms, paths, views
from plugins.params import parse_int, parse_name, parse_version
from plugins.request_context import current_actor

_logger = logging.getLogger(__name__)
_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"
_ENV = Environment(loader=FileSystemLoader(str(_HERE / "templates")), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)
_ENV.globals.update(paths=paths, verdict_label=verdict_label, outcome_label=views.outcome_label,
                    when=views.when, VERDICTS=views.VERDICTS)
# No script, no inline style, nothing from another origin: the pages work offline and an injected
# string could not run even if escaping ever failed. Forms post only to this server.
_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")


def _store():
    from plugins.server_app import _store as gated_store

    return gated_store()


def _page(template: str, http_status: int = 200, **context) -> Response:
    html = _ENV.get_template(template).render(user=current_actor(), **context)
    response = Response(html, status=http_status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"  # pages hold form tokens and change with every decision
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _error_page(exc: Exception) -> Response:
    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return _page("error.html", status, status=status, code=exc.error_code, message=exc.message)
    _logger.exception("gatekeeper page failed")
    return _page("error.html", 500, status=500, code="INTERNAL_ERROR",
                 message="the page failed on the server; the server log has the details")


def _handled(view: Callable[[], Response]) -> Callable[[], Response]:
    def handler() -> Response:
        try:
            return view()
        except Exception as exc:  # noqa: BLE001 - every failure becomes an HTML page with its status
            return _error_page(exc)

    handler.__name__ = f"pages_{view.__name__}"
    return handler


def _forms_context(store) -> dict:
    allowed = forms.may_administer()
    return {"may_administer": allowed, "csrf_token": forms.make_token(store.secret) if allowed else None}


def _may_read(name: str) -> bool:
    """Under basic-auth, whether the signed-in user may read registered model ``name``.

    The one use of a private MLflow function: basic-auth's public validators read the model name
    from the request, but the overview checks many names in one request, and only this function
    applies MLflow's whole rule (user and role grants, workspaces, the default permission).
    ``tests/unit/test_mlflow_internals.py`` pins its signature so an MLflow upgrade fails there first.
    """
    if not forms.basic_auth_enabled():
        return True
    from mlflow.server import auth

    return bool(auth.sender_is_admin() or auth._get_registered_model_permission(name).can_read)


def overview() -> Response:
    store = _store()
    return _page("overview.html", models=views.overview(store, _may_read))


def model() -> Response:
    store = _store()
    name = parse_name(request.args.get("name"))
    verdict = views.parse_verdict(request.args.get("verdict"))
    before, after = views.parse_cursor(request.args.get("before"), request.args.get("after"))
    state = views.model_state(store, name)  # first: 404 for a name neither registered nor in the log
    found = views.history(store, name, verdict, before, after)
    return _page("model.html", model=name, history=found, state=state, **_forms_context(store))


def _decision_id() -> int:
    return parse_int(request.args.get("id"), "id", 1, views.MAX_ID)


def decision() -> Response:
    store = _store()
    shown = views.recorded_view(store, views.decision_record(store, _decision_id()))
    return _page("decision.html", decision=shown, explain=False, **_forms_context(store))


def explain() -> Response:
    store = _store()
    name, version = parse_name(request.args.get("name")), parse_version(request.args.get("version"))
    return _page("decision.html", decision=views.explained_view(store, name, version), explain=True,
                 **_forms_context(store))


def _done(recorded, name: str) -> Response:
    """After a form: the decision it recorded (post/redirect/get), or why nothing changed."""
    if recorded is None:
        return _page("done.html", model=name, message="that version already holds every target: nothing changed")
    return redirect(paths.decision_path(recorded.decision_id), code=303)


def rollback() -> Response:
    store = _store()
    forms.check_post(store.secret, request.form)
    return _done(forms.rollback(store, request.form), request.form.get("name", ""))


def override() -> Response:
    store = _store()
    forms.check_post(store.secret, request.form)
    return _done(forms.override(store, request.form), request.form.get("name", ""))


def static_file(filename: str) -> Response:
    response = send_from_directory(STATIC_DIR, filename, max_age=300)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


PAGES = ((paths.OVERVIEW, overview, "GET"), (paths.MODEL, model, "GET"), (paths.DECISION, decision, "GET"),
         (paths.EXPLAIN, explain, "GET"), (paths.ROLLBACK, rollback, "POST"), (paths.OVERRIDE, override, "POST"))


def blueprint() -> Blueprint:
    routes = Blueprint("gatekeeper_pages", __name__)
    for path, view, method in PAGES:
        routes.add_url_rule(path, view_func=_handled(view), methods=[method])
    routes.add_url_rule(f"{paths.STATIC}/<path:filename>", view_func=static_file, methods=["GET"])
    return routes


# -- basic-auth ------------------------------------------------------------------------------------


def _can_read_named_model() -> bool:
    """A page about one model (``name``): MLflow's READ on it. A missing or malformed name reads
    nothing, so it is let through to the page's own 400 instead of basic-auth's JSON error."""
    from mlflow.server import auth

    try:
        parse_name(request.args.get("name"))
    except MlflowException:
        return True
    return bool(auth.validate_can_read_registered_model())


def _can_read_decision() -> bool:
    """A decision's page: READ on the model it is about (found by the decision's id)."""
    try:
        model_name = views.decision_model(_store(), _decision_id())
    except MlflowException:
        return True  # not an id: the page answers 400 and shows nothing
    return model_name is None or _may_read(model_name)


def _signed_in() -> bool:
    """Any signed-in user (basic-auth has authenticated them before validators run); the overview
    itself lists only the models they may read."""
    return True


def register_auth_validators() -> None:
    """Give basic-auth a validator for every page's exact (path, method): it fails closed otherwise."""
    from mlflow.server import auth

    validators = {
        (paths.OVERVIEW, "GET"): _signed_in, (paths.PREFIX, "GET"): _signed_in,
        (paths.MODEL, "GET"): _can_read_named_model, (paths.EXPLAIN, "GET"): _can_read_named_model,
        (paths.DECISION, "GET"): _can_read_decision,
        (paths.ROLLBACK, "POST"): auth.sender_is_admin, (paths.OVERRIDE, "POST"): auth.sender_is_admin,
    }
    validators |= {(f"{paths.STATIC}/{f.name}", "GET"): _signed_in for f in STATIC_DIR.iterdir() if f.is_file()}
    auth.BEFORE_REQUEST_VALIDATORS.update(validators)
