"""Every gate decision notified: a POST to each configured URL, signed as MLflow signs its webhooks.

The store enqueues one outbox row per URL in the decision's own transaction (``enqueue``; why an
outbox: ``registry_hooks.outbox``); a daemon thread in each server worker sends them (``start``).
This module holds only what is not the outbox's: the configuration, the payload, the signature,
HTTP and the thread.

Configuration, from the server's environment only (no route reads or changes it, so a request can
neither redirect nor silence a notification):

- ``GATEKEEPER_WEBHOOK_URLS``: comma-separated http(s) URLs; absent or empty turns notifications off
  (and no outbox row is written).
- ``GATEKEEPER_WEBHOOK_SECRET``: the HMAC key, required with URLs, at least 16 characters, and not
  ``GATEKEEPER_SECRET`` (a receiver must not hold the key of the audit chain).
- ``GATEKEEPER_WEBHOOK_MAX_ATTEMPTS`` (default 10) and ``GATEKEEPER_WEBHOOK_FIRST_RETRY_S`` (default
  2 s, doubled per failed attempt up to 300 s).

The server checks all of it when ``plugins.server_app`` is imported: a bad value stops the start-up
with one clear error. A process that records decisions in process (the CLI on a database URI)
enqueues with its own environment, and any gated server on that database sends the rows — only to
URLs that server is configured with.

What a receiver gets, as MLflow's webhooks send it: a JSON body ``{"entity": "gatekeeper_decision",
"action": promote|refuse|rollback|override, "timestamp": the decision's time (ISO 8601, UTC),
"data": {...}}`` and the headers ``X-MLflow-Delivery-Id`` (the same on every attempt),
``X-MLflow-Timestamp`` (unix seconds of this attempt) and ``X-MLflow-Signature`` (``v1,`` + base64
HMAC-SHA256 of ``delivery_id.timestamp.body``), so a receiver written for MLflow verifies ours.
A 2xx answer delivers; anything else (another status, a redirect — never followed —, a refused
connection, a timeout) is a failed attempt, retried later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, TypeVar
from urllib.parse import urlsplit

import requests
from mlflow.webhooks.constants import (
    WEBHOOK_DELIVERY_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_SIGNATURE_VERSION,
    WEBHOOK_TIMESTAMP_HEADER,
)
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from plugins.decision_note import decision_url
from registry_hooks import outbox
from registry_hooks.audit.log import DecisionRecord
from registry_hooks.contract import SECRET_ENV as GATE_SECRET_ENV
from registry_hooks.transactions import retrying

URLS_ENV = "GATEKEEPER_WEBHOOK_URLS"
SECRET_ENV = "GATEKEEPER_WEBHOOK_SECRET"
MAX_ATTEMPTS_ENV = "GATEKEEPER_WEBHOOK_MAX_ATTEMPTS"
FIRST_RETRY_ENV = "GATEKEEPER_WEBHOOK_FIRST_RETRY_S"
DEFAULT_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS = 10, 100
DEFAULT_FIRST_RETRY_S = 2.0
MIN_SECRET_CHARS = 16
MAX_URL_CHARS = 2048
ENTITY = "gatekeeper_decision"
TIMEOUT_S = 10.0  # connect, and each read: a slow receiver must not hold the sender for long
LEASE_MS = 60_000  # a claim outlives any attempt (timeouts included) by far
POLL_S = 0.5
BATCH = 20  # rows per poll; a full batch is followed by the next one at once
MAX_TROUBLE_PAUSE_S = 30.0
_INT = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    urls: tuple[str, ...]
    secret: str
    max_attempts: int
    first_retry_s: float


def settings() -> Settings | None:
    """The configuration, read strictly; None when notifications are off. Raises ValueError naming
    the variable and what it must hold."""
    urls = _urls(os.environ.get(URLS_ENV, ""))
    if not urls:
        return None
    return Settings(urls, _secret(), _number(MAX_ATTEMPTS_ENV, DEFAULT_MAX_ATTEMPTS, _INT, int, 1, MAX_MAX_ATTEMPTS),
                    _number(FIRST_RETRY_ENV, DEFAULT_FIRST_RETRY_S, _DECIMAL, float, 0.001, outbox.MAX_PAUSE_S))


def _urls(text: str) -> tuple[str, ...]:
    if not text.strip():
        return ()
    urls = tuple(_url(item.strip()) for item in text.split(","))
    if len(set(urls)) < len(urls):
        raise ValueError(f"{URLS_ENV} names a URL twice: each receiver would get every decision twice")
    return urls


def _url(url: str) -> str:
    """One receiver's URL: http(s), a host, no credentials (they would be logged and stored in the outbox)."""
    problem = None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problem = "give an absolute http:// or https:// URL with a host"
        elif parts.username is not None or parts.password is not None:
            problem = "credentials in the URL would be logged and stored: receivers authenticate the signature"
        elif len(url) > MAX_URL_CHARS or any(c.isspace() or not c.isprintable() for c in url):
            problem = f"at most {MAX_URL_CHARS} printable characters, no spaces"
    if problem:
        raise ValueError(f"{URLS_ENV}: {url!r} is not a receiver URL ({problem})")
    return url


def _secret() -> str:
    secret = os.environ.get(SECRET_ENV, "")
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(f"{URLS_ENV} is set, so {SECRET_ENV} must hold the key receivers verify signatures with "
                         f"(at least {MIN_SECRET_CHARS} characters; got {len(secret)}): generate one with "
                         "python -c 'import secrets; print(secrets.token_hex(32))'")
    if secret == os.environ.get(GATE_SECRET_ENV):
        raise ValueError(f"{SECRET_ENV} must differ from {GATE_SECRET_ENV}: receivers hold the webhook secret, and "
                         "the gate's secret keys the audit chain")
    return secret


def _number(name: str, default: T, pattern: re.Pattern, parse: Callable[[str], T], low: T, high: T) -> T:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not pattern.fullmatch(text) or not low <= parse(text) <= high:
        raise ValueError(f"{name}={text!r}: give a number from {low} to {high}")
    return parse(text)


# -- what is sent ---------------------------------------------------------------------------------

def decision_event(record: DecisionRecord) -> tuple[str, str]:
    """(event, JSON body) of one recorded decision, in the shape of MLflow's webhook payloads. The
    timestamp is the decision's, not the send's: the body is stored once and sent unchanged."""
    body = {
        "entity": ENTITY,
        "action": record.action,
        "timestamp": datetime.fromtimestamp(record.created_at / 1000, tz=timezone.utc).isoformat(),
        "data": {
            "decision_id": record.id,
            "model_name": record.model_name,
            "candidate_version": record.candidate_version,
            "baseline_version": record.baseline_version,
            "verdict": record.verdict,
            "target": record.target,
            "actor": record.actor,
            "reasons": record.reasons,
            "decision_url": decision_url(record.id),  # a path on this server: receivers know its address
        },
    }
    return f"{ENTITY}.{record.action}", json.dumps(body)


def enqueue(session: Session, record: DecisionRecord, gate_secret: bytes) -> None:
    """The store's call, inside the transaction that appended ``record``: one outbox row per URL."""
    config = settings()
    if config is not None:
        event, payload = decision_event(record)
        outbox.enqueue(session, config.urls, event, payload, gate_secret, _now_ms())


def signature(secret: str, delivery_id: str, timestamp: str, payload: str) -> str:
    """``v1,`` + base64 HMAC-SHA256 of ``delivery_id.timestamp.payload``: MLflow's webhook signature
    (``mlflow.webhooks.delivery._generate_hmac_signature``, private, hence spelled here)."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{payload}".encode(), hashlib.sha256).digest()
    return f"{WEBHOOK_SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def headers(secret: str, message: outbox.Message, timestamp: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "mlflow-gatekeeper",
        WEBHOOK_DELIVERY_ID_HEADER: message.delivery_id,
        WEBHOOK_TIMESTAMP_HEADER: timestamp,
        WEBHOOK_SIGNATURE_HEADER: signature(secret, message.delivery_id, timestamp, message.payload),
    }


def _post(http: requests.Session, secret: str, message: outbox.Message) -> str | None:
    """One attempt; None when the receiver took it, else why not. The answer's body is never read."""
    try:
        sent = headers(secret, message, str(int(time.time())))
        with http.post(message.url, data=message.payload.encode(), headers=sent, timeout=TIMEOUT_S,
                       allow_redirects=False, stream=True) as response:
            if 200 <= response.status_code < 300:
                return None
            return f"HTTP {response.status_code} {response.reason or ''}".strip()
    except requests.RequestException as exc:
        return f"{type(exc).__name__}: {exc}"


# -- the sender -----------------------------------------------------------------------------------

def _now_ms() -> int:
    return int(time.time() * 1000)


def _transaction(engine: Engine, work: Callable[[Session], T]) -> T:
    """``work`` in one committed transaction, run again on a lost race (``registry_hooks.transactions``)."""
    def once() -> T:
        with Session(engine) as session, session.begin():
            return work(session)

    return retrying(once)


def deliver_due(engine: Engine, gate_secret: bytes, config: Settings, http: requests.Session) -> bool:
    """One round: claim and send the rows due now; True when a full batch suggests more are due."""
    ids = _transaction(engine, lambda s: outbox.due(s, config.urls, _now_ms(), config.max_attempts, BATCH))
    for row_id in ids:
        _deliver(engine, gate_secret, config, http, row_id)
    return len(ids) == BATCH


def _deliver(engine: Engine, gate_secret: bytes, config: Settings, http: requests.Session, row_id: int) -> None:
    message = _transaction(engine, lambda s: outbox.claim(s, row_id, _now_ms(), LEASE_MS, config.max_attempts))
    if message is None:
        return  # another worker won it, or it changed since the poll
    if not outbox.authentic(gate_secret, message):
        _logger.error("gatekeeper outbox row #%s to %s is not sealed by this gate: refused, never sent", row_id,
                      message.url)
        _transaction(engine, lambda s: outbox.refused(s, message, "seal does not match: not written by the gate"))
        return
    error = _post(http, config.secret, message)
    if error is None:
        _transaction(engine, lambda s: outbox.delivered(s, message, _now_ms()))
        return
    _transaction(engine, lambda s: outbox.failed(s, message, error, _now_ms(), config.first_retry_s))
    if message.attempts >= config.max_attempts:
        _logger.error("gatekeeper notification %s (%s) to %s gave up after %d attempts: %s", message.delivery_id,
                      message.event, message.url, message.attempts, error)
    else:
        pause = outbox.pause_s(message.attempts, config.first_retry_s)
        _logger.warning("gatekeeper notification %s to %s, attempt %d failed (%s): retried in %.1f s",
                        message.delivery_id, message.url, message.attempts, error, pause)


def _run(engine: Engine, gate_secret: bytes, config: Settings) -> None:
    """Poll forever. Nothing it meets stops it or the server: a database it cannot reach or lock
    (``OperationalError``, after ``retrying``'s own attempts) or any other failure is logged, and
    it polls again after a growing pause."""
    http = requests.Session()
    trouble = 0
    while True:
        more = False
        try:
            more = deliver_due(engine, gate_secret, config, http)
            trouble = 0
        except OperationalError as exc:
            trouble += 1
            _logger.warning("gatekeeper notifier: the database is unavailable (%s); polling again", exc.orig)
        except Exception:  # noqa: BLE001 - the sender must never take the server down
            trouble += 1
            _logger.exception("gatekeeper notifier: a round failed; polling again")
        if not more:
            time.sleep(min(MAX_TROUBLE_PAUSE_S, POLL_S * 2**trouble))


_sender: tuple[int, threading.Thread] | None = None
_sender_lock = threading.Lock()


def start(engine: Engine, gate_secret: bytes) -> bool:
    """Start this process's sender unless it runs (or notifications are off); True when one runs.

    Keyed by process id: a worker forked from a process that had a sender inherits the record of
    it but not the thread, and starts its own. Several senders on one database share the work
    through the outbox's claims.
    """
    global _sender
    config = settings()
    if config is None:
        return False
    with _sender_lock:
        if _sender is None or _sender[0] != os.getpid() or not _sender[1].is_alive():
            thread = threading.Thread(target=_run, args=(engine, gate_secret, config), name="gatekeeper-notifier",
                                      daemon=True)
            thread.start()
            _sender = (os.getpid(), thread)
    return True
