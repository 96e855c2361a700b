"""The gate's side of verification: find the answer, or ask for one and start a verifier.

``ensure`` is what the gated store calls for every promotion that needs a verification. Once a
signed answer exists it costs one indexed SELECT and an HMAC. Otherwise it inserts the request
and, unless ``GATEKEEPER_VERIFIER=external`` (a ``gatekeeper verify-worker`` polls instead),
starts ``python -m projects.verify --request ID`` as a detached process: the server worker never
imports torch nor spends its time scoring, and the child inherits the server's environment, so it
sees the same stores and secret. A request whose verifier never started, died or hit an error is
started again on a later call, at most ``MAX_TRIES`` times in all; then it stays down with the
reason. The caller gets a fact, never an exception, and only "passed" is trusted.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from registry_hooks import verification
from registry_hooks.contract import VERIFIER_ENV, VERIFIER_MODULE
from registry_hooks.transactions import retrying
from registry_hooks.verification import DOWN, ERROR, FORGED, MAX_TRIES, PENDING, VerificationFact, VerificationKey

SPAWN, EXTERNAL = "spawn", "external"
_RESTARTABLE = (DOWN, ERROR, FORGED)  # a failed verification is an answer: never re-run


def _now_ms() -> int:
    return int(time.time() * 1000)


def verifier_mode() -> str:
    """``GATEKEEPER_VERIFIER``: spawn (default) or external; anything else is refused by name."""
    mode = os.environ.get(VERIFIER_ENV, "").strip().lower() or SPAWN
    if mode not in (SPAWN, EXTERNAL):
        raise ValueError(f"{VERIFIER_ENV} must be {SPAWN!r} or {EXTERNAL!r}, got {mode!r}")
    return mode


def log_path(db_uri: str, request_id: int) -> Path:
    """Where a spawned verifier of ``request_id`` writes its stderr (one folder per database)."""
    folder = hashlib.sha256(db_uri.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "gatekeeper-verifier" / folder / f"request-{request_id}.log"


def ensure(engine: Engine, db_uri: str, key: VerificationKey, secret: bytes, *, spawn: bool = True) -> VerificationFact:
    """The verification of ``key``: the answer when there is one, else requested (and a verifier
    started when ``spawn`` and the mode allows); usually "pending" right after asking."""
    try:
        mode = verifier_mode()
    except ValueError as exc:
        return VerificationFact(DOWN, None, f"verifier down: {exc}")
    spawning = spawn and mode == SPAWN
    with Session(engine) as session:
        fact = verification.lookup(session, key, secret, _now_ms())
    if fact is not None and (fact.status not in _RESTARTABLE or not spawning):
        return fact
    if fact is not None and fact.numbers.get("tries", 0) >= MAX_TRIES and fact.status != FORGED:
        return _with_log(fact, db_uri)
    request_id, tries = retrying(lambda: _request(engine, key, count_start=spawning))
    if spawning:
        problem = _spawn(db_uri, request_id)
        if problem:
            return VerificationFact(DOWN, request_id, f"verifier down: {problem}", {"tries": tries})
    if fact is not None:  # the gate reports what it found this time; the next call sees the new try
        return replace(fact, message=f"{fact.message}; a verifier was started again (start {tries} of {MAX_TRIES})")
    with Session(engine) as session:
        fresh = verification.lookup(session, key, secret, _now_ms())
    return fresh or VerificationFact(PENDING, request_id, f"verification pending: request #{request_id} was just made")


def _request(engine: Engine, key: VerificationKey, *, count_start: bool) -> tuple[int, int]:
    """One transaction: the request row (new or re-keyed), reset to pending and counted as a verifier
    start when one is about to be spawned; returns its id and its starts so far."""
    with Session(engine) as session, session.begin():
        request_id = verification.request(session, key, _now_ms())
        if not count_start:
            return request_id, 0
        return request_id, verification.restart(session, request_id, _now_ms())


def _spawn(db_uri: str, request_id: int) -> str | None:
    """Start the verifier for one request, detached; the reason it could not start, else None."""
    path = log_path(db_uri, request_id)
    command = [sys.executable, "-m", VERIFIER_MODULE, "--db-uri", db_uri, "--request", str(request_id)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                       start_new_session=True, close_fds=True)
    except OSError as exc:
        return f"cannot start `{' '.join(command[:3])}` for request #{request_id} ({exc}); see {path}"
    threading.Thread(target=process.wait, daemon=True, name=f"verifier-{request_id}-reaper").start()
    return None


def _with_log(fact: VerificationFact, db_uri: str) -> VerificationFact:
    """A fact that gave up, pointing at the last verifier's log."""
    if fact.request_id is None:
        return fact
    return replace(fact, message=f"{fact.message} (verifier log: {log_path(db_uri, fact.request_id)})")
