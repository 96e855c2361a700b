"""The server secret: what makes a verification sample unpredictable and its result unforgeable.

Three things are keyed with it (HMAC-SHA256): which rows a verifier re-scores (so an evaluator
cannot know in advance which predictions will be checked), the signature of a verification result
(so a row written into the table by anyone else is not trusted), and the audit chain (so an edited
decision cannot be re-hashed to look untouched).

Where it comes from, strongest first:

- ``GATEKEEPER_SECRET`` (at least 32 characters), set for the server and its verifier only. Then
  someone who can write the database still cannot forge a verification or re-chain the audit log.
- Otherwise a random secret generated on first use and kept in the ``gatekeeper_secret`` table, so
  the embedded SQLite default works with no set-up. Anyone who can read that table can then forge
  what the secret protects: the README calls this the convenience mode.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from registry_hooks.audit.models import SqlSecret
from registry_hooks.contract import SECRET_ENV
from registry_hooks.transactions import retrying

MIN_LENGTH = 32
_ROW_ID = 1


class SecretError(ValueError):
    """``GATEKEEPER_SECRET`` is set but unusable."""


def _configured() -> bytes | None:
    value = os.environ.get(SECRET_ENV, "")
    if not value:
        return None
    if len(value) < MIN_LENGTH:
        raise SecretError(f"{SECRET_ENV} must hold at least {MIN_LENGTH} characters (got {len(value)}); "
                          "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'")
    return value.encode()


def _stored(engine: Engine) -> bytes:
    """The generated secret, created by whichever process asks first (an insert race is re-read)."""

    def once() -> bytes:
        with Session(engine) as session, session.begin():
            row = session.get(SqlSecret, _ROW_ID)
            if row is None:
                row = SqlSecret(id=_ROW_ID, value=secrets.token_hex(32), created_at=int(time.time() * 1000))
                session.add(row)
            return row.value.encode()

    return retrying(once)


def server_secret(engine: Engine) -> bytes:
    """The configured secret, else the one generated in this database."""
    return _configured() or _stored(engine)


def keyed_digest(secret: bytes, *parts: str) -> str:
    """HMAC-SHA256 of ``parts`` (joined unambiguously) as 64 hex characters."""
    message = "\x1f".join(f"{len(p)}:{p}" for p in parts).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def same_digest(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two digests (either may be missing)."""
    return a is not None and b is not None and hmac.compare_digest(a, b)
