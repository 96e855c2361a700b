"""Who is asking: the authenticated user of the current request, for the audit log.

Store methods are called from MLflow's Flask handlers without the request; Flask's context is
still there (also under uvicorn, which runs the Flask app in a worker thread). MLflow's
basic-auth puts the user it authenticated on ``flask.g``; without basic-auth nobody is
authenticated and the audit log says so rather than trusting an unverified header.
"""

from __future__ import annotations


def current_actor() -> str | None:
    """The basic-auth user of the current request, or None (no auth, or called outside a request)."""
    try:
        from flask import g, has_request_context
    except ImportError:  # pragma: no cover - flask ships with mlflow
        return None
    if not has_request_context():
        return None
    return g.get("mlflow_authenticated_user")


def current_route(default: str) -> str:
    """``METHOD /path`` of the current request, or ``default`` for in-process calls."""
    try:
        from flask import has_request_context, request
    except ImportError:  # pragma: no cover
        return default
    if not has_request_context():
        return default
    return f"{request.method} {request.path}"[:64]
