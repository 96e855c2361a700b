"""The admin forms: rollback and override, through the same gated calls as the JSON API and the CLI.

A browser sends a signed-in user's credentials with any form post, also one another site makes it
send, so every form carries a token that only this server can make: an HMAC with the server secret
(``registry_hooks.secret``) over the user it was made for and when. A post without a valid token
for its own user, or older than ``TOKEN_MAX_AGE``, is a 403 before anything is read or moved.

Who may use the forms: under basic-auth, admins only (the same rule as the JSON API's overrides;
a validator refuses other users' posts before the view runs, and the view checks again); without
basic-auth, anyone who reaches the server, as on the JSON API, still only with a valid token.
"""

from __future__ import annotations

import time

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

from plugins.params import parse_name, parse_text, parse_version
from plugins.request_context import current_actor
from registry_hooks.decision import RecordedDecision
from registry_hooks.secret import keyed_digest, same_digest

TOKEN_MAX_AGE = 4 * 3600  # seconds a page's form stays usable
_CLOCK_SKEW = 60  # a token from a few seconds "in the future" (another worker's clock) is still good
_PURPOSE = "gatekeeper-pages-form/1"  # keys these tokens apart from every other use of the secret


def basic_auth_enabled() -> bool:
    from plugins.server_app import basic_auth_enabled as enabled

    return enabled()


def may_administer() -> bool:
    """Whether the current user may see and use the forms."""
    if not basic_auth_enabled():
        return True
    from mlflow.server import auth

    return bool(auth.sender_is_admin())


def _user() -> str:
    return current_actor() or ""


def make_token(secret: bytes, now: float | None = None) -> str:
    """``<unix seconds>.<hmac>`` for the current user."""
    stamp = str(int(time.time() if now is None else now))
    return f"{stamp}.{keyed_digest(secret, _PURPOSE, _user(), stamp)}"


def token_ok(secret: bytes, token: str | None, now: float | None = None) -> bool:
    """Whether ``token`` was made by this server, for this user, within ``TOKEN_MAX_AGE``."""
    if not token or token.count(".") != 1:
        return False
    stamp, digest = token.split(".")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        return False
    age = (time.time() if now is None else now) - int(stamp)
    if not -_CLOCK_SKEW <= age <= TOKEN_MAX_AGE:
        return False
    return same_digest(keyed_digest(secret, _PURPOSE, _user(), stamp), digest)


def _forbidden(message: str) -> MlflowException:
    return MlflowException(message, PERMISSION_DENIED)


def check_post(secret: bytes, form) -> None:
    """The two gates every form post passes before it reads anything else."""
    if not may_administer():
        raise _forbidden("permission denied: rollback and override are for admins only")
    if not token_ok(secret, form.get("csrf_token")):
        raise _forbidden("the form's security token is missing, forged or expired: reload the page and try again")


def rollback(store, form) -> RecordedDecision:
    """``store.rollback`` with the reason the form demands (the CLI may omit it; a person may not)."""
    name = parse_name(form.get("name"))
    reason = parse_text(form.get("reason"), "reason", required=True)
    return store.rollback(name, reason=reason)


def override(store, form) -> RecordedDecision | None:
    """A forced promotion (``store.promote(force=True)``): audited with the user and the reason."""
    name = parse_name(form.get("name"))
    version = parse_version(form.get("version"))
    reason = parse_text(form.get("reason"), "reason", required=True)
    return store.promote(name, version, force=True, reason=reason)
