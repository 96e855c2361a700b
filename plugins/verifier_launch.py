"""The gate's side of verification: find the answer, or ask for one and have a verifier take it.

``ensure`` is what the gated store calls for every promotion that needs a verification. Once a
signed answer exists it costs one indexed SELECT and an HMAC. Otherwise it inserts the request,
counted as a verifier start, and, unless ``GATEKEEPER_VERIFIER=external`` (a ``gatekeeper
verify-worker`` polls instead), makes sure this process's **verifier daemon** runs: one
``python -m projects.verify --worker --parent-pid PID`` child per server process and database,
started at the first ``ensure`` (or by ``prestart`` when the store is built inside ``mlflow
server``). It imports mlflow, pandas and torch once, in the background right after it starts,
keeps the last models it loaded, and takes the requests the gate counted (claims are atomic, so
the daemons of several gunicorn workers share one queue); it exits by itself once its parent is
gone and the queue is empty. The server worker never imports torch nor spends its time scoring,
and the child inherits the server's environment, so it sees the same stores and secret.

A daemon found dead (``Popen.poll``) is started again on the next call. A request whose verifier
never answered, died (silent, then "down") or hit an error is put back and counted again on a
later call, at most ``MAX_TRIES`` starts in all; then it stays down with the reason and the log
of the verifier that last worked on it. The caller gets a fact, never an exception, and only
"passed" is trusted.
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
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from plugins.evidence_source import SERVER_BACKEND_ENV
from registry_hooks import verification
from registry_hooks.contract import VERIFIER_ENV, VERIFIER_MODULE
from registry_hooks.transactions import retrying
from registry_hooks.verification import (DOWN, ERROR, FORGED, MAX_TRIES, PENDING, RUNNING, VerificationFact,
                                         VerificationKey)

SPAWN, EXTERNAL = "spawn", "external"
POLL_S = 0.5  # how often a daemon looks at the queue (and at its parent)
_RESTARTABLE = (DOWN, ERROR, FORGED)  # a failed verification is an answer: never re-run
_WAITING = (PENDING, RUNNING)  # a daemon must be alive for these to end
_daemons: dict[str, subprocess.Popen] = {}  # this process's daemon per database URI
_daemons_lock = threading.Lock()


def _now_ms() -> int:
    return int(time.time() * 1000)


def verifier_mode() -> str:
    """``GATEKEEPER_VERIFIER``: spawn (default) or external; anything else is refused by name."""
    mode = os.environ.get(VERIFIER_ENV, "").strip().lower() or SPAWN
    if mode not in (SPAWN, EXTERNAL):
        raise ValueError(f"{VERIFIER_ENV} must be {SPAWN!r} or {EXTERNAL!r}, got {mode!r}")
    return mode


def log_folder(db_uri: str) -> Path:
    """Where the verifiers of one database log: the daemons' ``daemon.log`` and one file per request."""
    return Path(tempfile.gettempdir()) / "gatekeeper-verifier" / hashlib.sha256(db_uri.encode()).hexdigest()[:12]


def log_path(db_uri: str, request_id: int) -> Path:
    """The stderr of the verifier that worked on ``request_id`` (a daemon writes it there while it does)."""
    return log_folder(db_uri) / f"request-{request_id}.log"


def ensure(engine: Engine, db_uri: str, key: VerificationKey, secret: bytes, *, spawn: bool = True) -> VerificationFact:
    """The verification of ``key``: the answer when there is one, else requested (and the daemon
    kept alive when ``spawn`` and the mode allows); usually "pending" right after asking."""
    try:
        mode = verifier_mode()
    except ValueError as exc:
        return VerificationFact(DOWN, None, f"verifier down: {exc}")
    spawning = spawn and mode == SPAWN
    with Session(engine) as session:
        fact = verification.lookup(session, key, secret, _now_ms())
    if fact is not None and (fact.status not in _RESTARTABLE or not spawning):
        problem = start_daemon(db_uri) if spawning and fact.status in _WAITING else None
        return _down(fact.request_id, problem, fact.numbers.get("tries", 0)) if problem else fact
    if fact is not None and fact.numbers.get("tries", 0) >= MAX_TRIES and fact.status != FORGED:
        return _with_log(fact, db_uri)
    request_id, tries = retrying(lambda: _request(engine, key, count_start=spawning))
    if spawning and (problem := start_daemon(db_uri)):
        return _down(request_id, problem, tries)
    if fact is not None:  # the gate reports what it found this time; the next call sees the new try
        return replace(fact, message=f"{fact.message}; a verifier was started again (start {tries} of {MAX_TRIES})")
    with Session(engine) as session:
        fresh = verification.lookup(session, key, secret, _now_ms())
    return fresh or VerificationFact(PENDING, request_id, f"verification pending: request #{request_id} was just made")


def _request(engine: Engine, key: VerificationKey, *, count_start: bool) -> tuple[int, int]:
    """One transaction: the request row (new or re-keyed), reset to pending and counted as a verifier
    start when a daemon is to take it (daemons take only counted requests); its id and starts so far."""
    with Session(engine) as session, session.begin():
        request_id = verification.request(session, key, _now_ms())
        if not count_start:
            return request_id, 0
        return request_id, verification.restart(session, request_id, _now_ms())


def _down(request_id: int | None, problem: str, tries: int) -> VerificationFact:
    return VerificationFact(DOWN, request_id, f"verifier down: {problem}", {"tries": tries})


# -- the daemon ------------------------------------------------------------------------------------


def prestart(db_uri: str, policy: Any) -> None:
    """Start the daemon as the store is built, when that is inside ``mlflow server`` in spawn mode
    and ``policy`` (a ``Policy``) verifies anything: it has warmed up before the first promotion.
    A CLI or script opening the store leaves it to the first ``ensure``: it may never verify."""
    policies = (policy.default, *(p for _, p in policy.overrides))
    if not os.environ.get(SERVER_BACKEND_ENV) or not any(p.evaluation.verified for p in policies):
        return
    try:
        spawning = verifier_mode() == SPAWN
    except ValueError:  # a bad mode: every ensure says so by name
        return
    if spawning:
        start_daemon(db_uri)  # a failure to start is reported by the first ensure, which tries again


def start_daemon(db_uri: str) -> str | None:
    """Make sure this process's daemon for ``db_uri`` runs, starting it (again) when it is not; the
    reason it cannot, else None. One ``waitpid`` when it runs. A forked worker never reuses its
    parent's: the pid is not its child, so ``poll`` reports it gone and the worker starts its own."""
    with _daemons_lock:
        daemon = _daemons.get(db_uri)
        if daemon is not None and daemon.poll() is None:
            return None
        folder = log_folder(db_uri)
        command = [sys.executable, "-m", VERIFIER_MODULE, "--db-uri", db_uri, "--worker", "--poll", str(POLL_S),
                   "--parent-pid", str(os.getpid())]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "daemon.log", "ab") as log:
                _daemons[db_uri] = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                    stderr=log, start_new_session=True, close_fds=True)
        except OSError as exc:
            return f"cannot start `{' '.join(command[:3])} --worker` ({exc}); see {folder / 'daemon.log'}"
    return None


def daemon_pid(db_uri: str) -> int | None:
    """The pid of this process's daemon for ``db_uri`` while it runs (for tests and diagnostics)."""
    with _daemons_lock:
        daemon = _daemons.get(db_uri)
        return daemon.pid if daemon is not None and daemon.poll() is None else None


def _with_log(fact: VerificationFact, db_uri: str) -> VerificationFact:
    """A fact that gave up, pointing at the last verifier's log."""
    if fact.request_id is None:
        return fact
    return replace(fact, message=f"{fact.message} (verifier log: {log_path(db_uri, fact.request_id)})")
