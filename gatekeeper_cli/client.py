"""A client for the gate's operations: over REST to a gated server, or in-process on a database.

Against a server (``http(s)://``, ``databricks``: ``contract.is_server_uri``) it calls the ``/gatekeeper/api/`` routes with MLflow's own
request helper, so ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN`` and the TLS settings work
as they do for ``MlflowClient``. Against a database URI (the embedded SQLite default) it opens
the gated store directly: the same gate, the same transaction, no server needed.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import Any

from registry_hooks.contract import API_PREFIX, STORE_URI_PREFIX, is_server_uri


class GatekeeperError(RuntimeError):
    """A request the gate could not serve (bad input, unknown model, server trouble)."""

    def __init__(self, message: str, status: int | None = None, payload: dict | None = None):
        super().__init__(message)
        self.status, self.payload = status, payload or {}


class PromotionRefused(GatekeeperError):
    """The gate refused: ``payload`` holds the decision with every check and its numbers."""


# The server_app view behind a route, where it is not the route's path with "/" as "_".
_LOCAL_VIEWS = {("GET", "feedback"): "feedback_list", ("GET", "autopilot/lease"): "autopilot_lease_look"}


def _default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


class GatekeeperClient:
    def __init__(self, tracking_uri: str | None = None):
        self.tracking_uri = tracking_uri or _default_uri()
        self.remote = is_server_uri(self.tracking_uri)
        self._store = None

    # -- transport -----------------------------------------------------------------------------

    def _call(self, method: str, route: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.remote:
            return self._http(method, route, params)
        return self._local(_LOCAL_VIEWS.get((method, route), route.replace("/", "_")), params)

    def _http(self, method: str, route: str, params: dict[str, Any]) -> dict[str, Any]:
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        from mlflow.exceptions import MlflowException

        kwargs = {"params": params} if method == "GET" else {"json": params}
        try:
            response = http_request(get_default_host_creds(self.tracking_uri), f"{API_PREFIX}/{route}", method,
                                    max_retries=0, **kwargs)
        except MlflowException as exc:  # connection refused, retries exhausted: say so plainly
            raise GatekeeperError(f"cannot reach {self.tracking_uri}: {exc.message}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {"message": response.text[:500]}
        if response.status_code == 200:
            return payload
        message = payload.get("message") or f"HTTP {response.status_code}"
        if response.status_code == 403 and payload.get("error_code") == "PERMISSION_DENIED":
            raise PromotionRefused(message, 403, payload)
        raise GatekeeperError(message, response.status_code, payload)

    def _local(self, view_name: str, params: dict[str, Any]) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException

        from plugins import server_app
        from plugins import build_store

        if self._store is None:
            self._store = build_store(f"{STORE_URI_PREFIX}{self.tracking_uri}", tracking_uri=self.tracking_uri)
        view = getattr(server_app, view_name)
        try:
            return json.loads(json.dumps(server_app.run_view(view, params, self._store), default=str))
        except MlflowException as exc:
            if exc.error_code == "PERMISSION_DENIED":
                raise PromotionRefused(exc.message, 403, {"message": exc.message}) from exc
            payload = {"error_code": exc.error_code, "message": exc.message} | getattr(exc, "payload", {})
            raise GatekeeperError(exc.message, exc.get_http_status_code(), payload) from exc

    # -- operations ----------------------------------------------------------------------------

    def explain(self, name: str, version: str | int) -> dict[str, Any]:
        return self._call("GET", "explain", {"name": name, "version": str(version)})

    def promote(self, name: str, version: str | int, *, force: bool = False, reason: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name, "version": str(version)}
        if force:
            params |= {"force": True, "reason": reason}
        return self._call("POST", "promote", params)

    def rollback(self, name: str, reason: str | None = None) -> dict[str, Any]:
        return self._call("POST", "rollback", {"name": name, "reason": reason})

    def history(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "history", {"name": name, "limit": str(limit)})["decisions"]

    def baseline(self, name: str) -> dict[str, Any]:
        """``{"version": ..., "source": ...}``: what a new candidate must beat (version None: first release)."""
        return self._call("GET", "baseline", {"name": name})

    def policy(self, name: str) -> dict[str, Any]:
        return self._call("GET", "policy", {"name": name})

    def audit_verify(self, name: str | None = None) -> dict[str, Any]:
        """The audit chain recomputed by the server: ``{"ok", "models", "rows", "legacy", "problems"}``."""
        return self._call("GET", "audit/verify", {} if name is None else {"name": name})

    def register_set(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Record a set version from facts computed by ``gatekeeper_cli.sets.register``."""
        return self._call("POST", "sets/register", fields)["set"]

    def sets(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every version of ``name``, newest first, or the current version of every set."""
        return self._call("GET", "sets", {} if name is None else {"name": name})["sets"]

    def set_version(self, name: str, version: int | None = None) -> dict[str, Any]:
        """One registered version of a set (the current one when ``version`` is None)."""
        found = self.sets(name)
        match = found[0] if version is None else next((s for s in found if s["version"] == version), None)
        if match is None:
            raise GatekeeperError(f"set {found[0]['name']} has no version {version} (versions 1 to {found[0]['version']})")
        return match

    def submit_feedback(self, name: str, items: list[dict[str, Any]], *, partial: bool = False,
                        dry_run: bool = False) -> dict[str, Any]:
        """One batch of labels/flags (at most ``registry_hooks.feedback.MAX_ITEMS`` items): a
        status per item. A rejected batch raises ``GatekeeperError`` whose ``payload["items"]``
        says which items and why."""
        return self._call("POST", "feedback", {"name": name, "items": items, "partial": partial, "dry_run": dry_run})

    def feedback(self, name: str, since: datetime | None = None, until: datetime | None = None,
                 created_since: datetime | None = None) -> list[dict[str, Any]]:
        """The newest feedback on each prediction of ``name`` made in ``[since, until)``, with
        feedback given since ``created_since`` (aware datetimes; None: unbounded), every page."""
        params = {key: str(int(moment.timestamp() * 1000)) for key, moment in
                  (("since", since), ("until", until), ("created_since", created_since)) if moment is not None}
        found: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", "feedback", {"name": name, **params})
            found += page["feedback"]
            if not page.get("next_page_token"):
                return found
            params["page_token"] = page["next_page_token"]

    def lease(self, name: str, holder: str, action: str, *, ttl_s: int | None = None,
              generation: int | None = None) -> dict[str, Any]:
        """Acquire, renew or release the autopilot lease of ``name``: the lease's state, ``held``
        saying whether ``holder`` has it (a lost race is an answer, not an error)."""
        params = {"name": name, "holder": holder, "action": action, "ttl_s": ttl_s, "generation": generation}
        return self._call("POST", "autopilot/lease", {k: v for k, v in params.items() if v is not None})["lease"]

    def wait_for_verification(self, name: str, version: str | int, timeout_s: float = 300,
                              poll_s: float = 2.0) -> dict[str, Any]:
        """``explain`` until no verification of the candidate's evidence is still pending or
        running (asking ``explain`` is what requests a verification the first time); the last
        answer, whatever its verdict. Scripts call this between evaluate and promote, so that the
        audit log records one decision instead of a refusal per poll."""
        deadline = time.monotonic() + timeout_s
        while True:
            payload = self.explain(name, version)
            waiting = [c for c in payload.get("checks", []) if _verification_waits(c)]
            if not waiting or time.monotonic() >= deadline:
                return payload
            time.sleep(poll_s)


def _verification_waits(check: dict[str, Any]) -> bool:
    """A verification check that will change by itself: pending or running (not down, failed or forged)."""
    return check["name"].startswith("verification") and check.get("numbers", {}).get("status") in ("pending", "running")
