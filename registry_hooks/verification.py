"""Verified outcomes: which rows a verifier re-scores, its signed answer, and the request rows.

Evidence is a file the evaluator wrote; nothing in it proves the predictions are the models'. So
before approving, the gate asks a process outside the server worker (``projects.verify``) to load
the candidate and baseline versions from the registry, re-score a sample of the registered set's
rows and compare with the logged outcomes. Three things make that worth trusting:

- the sample is drawn *after* the evidence exists, from the server secret and the evidence run id
  (``sample_rows``): an evaluator cannot know which rows will be checked, so falsifying a fraction
  ``f`` of rows escapes a sample of ``n`` with probability about ``(1 - f) ** n`` (5 %, 256 rows:
  2e-6);
- the answer is signed with the server secret over the request's whole key, its status and its
  result (``sign``): a row a client inserts, edits or copies from another evidence run is
  "forged", never trusted;
- a request nobody takes or that goes silent is "down", with the reason: never a pass.

The table ``gatekeeper_verifications`` holds one row per (evidence run, outcomes file). The gate
inserts it (``request``), a verifier takes it atomically (``claim``: an ``UPDATE … WHERE status =
'pending'``, so two verifiers never work on one request), keeps it alive (``heartbeat``) and
``finish``-es it. Every function takes the caller's session; the caller commits.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import update
from sqlalchemy.orm import Session

from registry_hooks.audit.models import SqlVerification
from registry_hooks.contract import VERIFIER_TIMEOUT_ENV
from registry_hooks.secret import keyed_digest, same_digest

# -- statuses ----------------------------------------------------------------------------------------
PASSED, FAILED, ERROR = "passed", "failed", "error"  # finished and signed by the verifier
PENDING, RUNNING = "pending", "running"  # stored while the work waits or runs
DOWN, FORGED = "down", "forged"  # never stored: what ``lookup`` concludes from a stale or unsigned row
FINISHED = (PASSED, FAILED, ERROR)
STATUSES = (PASSED, FAILED, PENDING, RUNNING, DOWN, ERROR, FORGED)

# -- limits --------------------------------------------------------------------------------------------
UNCLAIMED_AFTER_S = 60  # a pending request no verifier took in this long: no verifier is running (default)
SILENT_AFTER_S = 60  # a running request with no heartbeat in this long: its verifier died
HEARTBEAT_EVERY_S = 10  # how often a verifier at work says so (well under SILENT_AFTER_S)
MAX_TRIES = 3  # verifier starts per request (spawns, or a worker taking it over) before giving up
# Probabilities (proba_label, score) must agree within this absolute difference. Re-scoring the
# same model on the same rows in a different batch (256 rows here, 4,096 in evaluate), on another
# machine or another BLAS gives float32 results a few ulps apart (measured below 1e-6, see
# tests/pipeline/test_verify.py); 1e-4 leaves two orders of margin, while a change that small on
# every sampled row moves a mean log loss by less than 1e-4 / p — nothing the gate's margins see.
PROBA_TOLERANCE = 1e-4
VALUE_RTOL = 1e-4  # regression predictions: relative difference, for the same reason
EXAMPLES_KEPT = 5  # disagreeing rows quoted in a failed result
_SIGNATURE_CONTEXT = "verification-result"
_SAMPLE_CONTEXT = "verification-sample"


@dataclass(frozen=True)
class VerificationKey:
    """What one verification is about: a request row answers this key and nothing else."""

    evidence_run_id: str
    outcomes_sha256: str
    model_name: str
    candidate_version: str
    baseline_version: str | None  # None: first release, only the candidate is re-scored
    set_name: str  # as registered (display spelling)
    set_version: int
    set_content_hash: str
    sample_size: int

    def parts(self) -> tuple[str, ...]:
        """Every field as text, in a fixed order: what a signature covers."""
        return (self.evidence_run_id, self.outcomes_sha256, self.model_name, str(self.candidate_version),
                "" if self.baseline_version is None else f"v{self.baseline_version}", self.set_name,
                str(int(self.set_version)), self.set_content_hash, str(int(self.sample_size)))

    @property
    def set_label(self) -> str:
        return f"{self.set_name} v{self.set_version}"

    @classmethod
    def of_row(cls, row: SqlVerification) -> VerificationKey:
        return cls(row.evidence_run_id, row.outcomes_sha256, row.model_name, row.candidate_version,
                   row.baseline_version, row.set_name, int(row.set_version), row.set_content_hash, int(row.sample_size))


@dataclass(frozen=True)
class VerificationFact:
    """What the gate's check reads: the status, the request, one sentence and the numbers."""

    status: str
    request_id: int | None
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)
    signature: str | None = None  # for the audit log's digests

    @property
    def trusted(self) -> bool:
        return self.status == PASSED


@dataclass(frozen=True)
class Claim:
    """A request a verifier took: the key it must verify, and the claim ``heartbeat`` and ``finish``
    check (worker and time), so a verifier that lost its claim cannot overwrite another's answer."""

    request_id: int
    key: VerificationKey
    worker: str
    claimed_at: int
    tries: int


def verification_key(found: Any, candidate: Any, baseline: Any, policy: Any) -> VerificationKey | None:
    """The key of the verification the gate needs for one required set's evidence (a
    ``trust.SetEvidence``, a ``VersionRef``, a ``decision.Baseline``, a ``ModelPolicy``); None
    when there is nothing to verify: no verification asked, no registered version, or no readable
    evidence (the gate refuses those for their own reasons)."""
    sample = policy.evaluation.verify.sample
    finding = found.finding
    if sample <= 0 or found.current is None or finding is None or finding.evidence is None:
        return None
    current = found.current
    return VerificationKey(finding.run_id, finding.evidence.manifest.outcomes_sha256, candidate.name,
                           str(candidate.version), None if baseline.version is None else str(baseline.version),
                           current.name, int(current.version), current.content_hash, int(sample))


# -- the sample and the signature ------------------------------------------------------------------


def sample_rows(secret: bytes, key: VerificationKey, n_rows: int) -> np.ndarray:
    """Sorted distinct positions (0-based, in the registered table's row order) to re-score:
    ``min(sample_size, n_rows)`` of them, fixed once the evidence exists and unpredictable without
    the secret."""
    if n_rows < 0 or key.sample_size < 1:
        raise ValueError(f"need n_rows >= 0 and sample_size >= 1, got {n_rows} and {key.sample_size}")
    seed = int(keyed_digest(secret, _SAMPLE_CONTEXT, key.evidence_run_id, key.outcomes_sha256), 16)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=min(key.sample_size, n_rows), replace=False)).astype(np.int64)


def sign(secret: bytes, key: VerificationKey, status: str, result_json: str, error: str | None = None) -> str:
    """The HMAC of a finished verification: the whole key, the status, the result and the error, so
    a row moved to other evidence (a replay) or edited in any field does not verify."""
    return keyed_digest(secret, _SIGNATURE_CONTEXT, *key.parts(), status, result_json, error or "")


# -- the repository ------------------------------------------------------------------------------


def _row(session: Session, key: VerificationKey) -> SqlVerification | None:
    return (session.query(SqlVerification)
            .filter(SqlVerification.evidence_run_id == key.evidence_run_id,
                    SqlVerification.outcomes_sha256 == key.outcomes_sha256)
            .one_or_none())


def _reset(row: SqlVerification, now_ms: int) -> None:
    row.status, row.requested_at = PENDING, now_ms
    row.claimed_at = row.heartbeat_at = row.finished_at = None
    row.worker = row.result = row.error = row.signature = None


def request(session: Session, key: VerificationKey, now_ms: int) -> int:
    """The request for ``key``: the existing row of this evidence, or a new pending one.

    A row of the same evidence under another key (the policy's sample size changed, the set was
    registered anew) is re-keyed and starts over: a verification answers one key. A concurrent
    insert of the same evidence raises ``IntegrityError`` at the flush; run the caller's
    transaction again (``transactions.retrying``) and it finds the winner's row.
    """
    row = _row(session, key)
    if row is None:
        row = SqlVerification(evidence_run_id=key.evidence_run_id, outcomes_sha256=key.outcomes_sha256, tries=0)
        session.add(row)
    elif VerificationKey.of_row(row) == key:
        return row.id
    else:
        row.tries = 0
    row.model_name, row.candidate_version, row.baseline_version = key.model_name, key.candidate_version, key.baseline_version
    row.set_name, row.set_version, row.set_content_hash = key.set_name, key.set_version, key.set_content_hash
    row.sample_size = key.sample_size
    _reset(row, now_ms)
    session.flush()
    return row.id


def restart(session: Session, request_id: int, now_ms: int) -> int:
    """Put a request back to pending for a fresh verifier start and count the start; returns the
    number of starts so far (``tries``)."""
    row = session.get(SqlVerification, request_id)
    if row is None:
        raise LookupError(f"verification request #{request_id} does not exist")
    _reset(row, now_ms)
    row.tries = (row.tries or 0) + 1
    session.flush()
    return row.tries


def claim(session: Session, worker: str, now_ms: int, request_id: int | None = None, *,
          count_try: bool = False) -> Claim | None:
    """Take a pending request (``request_id``, else the oldest one with starts left) for ``worker``;
    None when there is none to take. ``count_try``: this claim is a verifier start of its own (a
    worker polling); without it and without ``request_id``, only a request the gate already counted
    a start for (its daemon's claim: the gate counts, so a request nobody started stays untouched)."""
    if request_id is not None:
        candidates = [request_id]
    else:
        query = session.query(SqlVerification.id).filter(SqlVerification.status == PENDING)
        eligible = SqlVerification.tries < MAX_TRIES if count_try else SqlVerification.tries > 0
        candidates = [i for (i,) in query.filter(eligible).order_by(SqlVerification.id).limit(10)]
    values = dict(status=RUNNING, worker=worker, claimed_at=now_ms, heartbeat_at=now_ms)
    if count_try:
        values["tries"] = SqlVerification.tries + 1
    for candidate in candidates:
        taken = session.execute(update(SqlVerification)
                                .where(SqlVerification.id == candidate, SqlVerification.status == PENDING)
                                .values(**values).execution_options(synchronize_session=False))
        if taken.rowcount == 1:
            row = session.get(SqlVerification, candidate, populate_existing=True)
            return Claim(row.id, VerificationKey.of_row(row), worker, now_ms, row.tries)
    return None


def _held(claim_: Claim):
    return (SqlVerification.id == claim_.request_id, SqlVerification.status == RUNNING,
            SqlVerification.worker == claim_.worker, SqlVerification.claimed_at == claim_.claimed_at)


def heartbeat(session: Session, claim_: Claim, now_ms: int) -> bool:
    """Say the verifier is still at work; False when it no longer holds the claim (stop working)."""
    done = session.execute(update(SqlVerification).where(*_held(claim_)).values(heartbeat_at=now_ms)
                           .execution_options(synchronize_session=False))
    return done.rowcount == 1


def finish(session: Session, claim_: Claim, status: str, result: dict[str, Any], error: str | None,
           secret: bytes, now_ms: int) -> bool:
    """Record the signed answer; False (nothing written) when the claim was lost meanwhile."""
    if status not in FINISHED:
        raise ValueError(f"a verification finishes as one of {FINISHED}, not {status!r}")
    result_json = json.dumps(result, sort_keys=True, default=str)
    signature = sign(secret, claim_.key, status, result_json, error)
    done = session.execute(update(SqlVerification).where(*_held(claim_))
                           .values(status=status, result=result_json, error=error, signature=signature,
                                   finished_at=now_ms, heartbeat_at=now_ms)
                           .execution_options(synchronize_session=False))
    return done.rowcount == 1


def release_silent(session: Session, now_ms: int) -> list[int]:
    """Put running requests whose verifier went silent back to pending (those with starts left),
    for a polling worker to take over; returns their ids."""
    stale = now_ms - SILENT_AFTER_S * 1000
    rows = (session.query(SqlVerification)
            .filter(SqlVerification.status == RUNNING, SqlVerification.tries < MAX_TRIES,
                    SqlVerification.heartbeat_at < stale)
            .order_by(SqlVerification.id).all())
    released = []
    for row in rows:
        done = session.execute(update(SqlVerification)
                               .where(SqlVerification.id == row.id, SqlVerification.status == RUNNING,
                                      SqlVerification.heartbeat_at == row.heartbeat_at)
                               .values(status=PENDING, worker=None, claimed_at=None, heartbeat_at=None)
                               .execution_options(synchronize_session=False))
        if done.rowcount == 1:
            released.append(row.id)
    return released


def lookup(session: Session, key: VerificationKey, secret: bytes, now_ms: int) -> VerificationFact | None:
    """The verification of ``key`` as the gate may read it; None when none was requested (or the
    evidence's row answers another key, which ``request`` re-keys). One indexed SELECT and an HMAC."""
    row = _row(session, key)
    if row is None or VerificationKey.of_row(row) != key:
        return None
    return _describe(row, key, secret, now_ms)


def unclaimed_after_s() -> float:
    """How long a request may wait for a verifier before the gate reports it down:
    ``GATEKEEPER_VERIFIER_TIMEOUT`` seconds (a worker that starts slowly needs more), else 60.
    A value that is not a positive number is ignored rather than turned into "never down"."""
    try:
        value = float(os.environ.get(VERIFIER_TIMEOUT_ENV, ""))
    except ValueError:
        return UNCLAIMED_AFTER_S
    return value if math.isfinite(value) and value > 0 else UNCLAIMED_AFTER_S


def _describe(row: SqlVerification, key: VerificationKey, secret: bytes, now_ms: int) -> VerificationFact:
    """The fact a request row stands for at ``now_ms`` (see ``lookup``)."""
    if row.status in FINISHED:
        return _finished(row, key, secret)
    base = {"tries": row.tries, "requested_at": row.requested_at, "worker": row.worker}
    if row.status == PENDING:
        waited = (now_ms - row.requested_at) / 1000
        if waited > unclaimed_after_s():
            return VerificationFact(DOWN, row.id, _down_unclaimed(row, waited), base | {"waited_s": round(waited, 1)})
        return VerificationFact(PENDING, row.id, f"verification pending: request #{row.id} waits for a verifier "
                                f"(requested {waited:.0f} s ago)", base | {"waited_s": round(waited, 1)})
    if row.status == RUNNING:
        silent = (now_ms - (row.heartbeat_at or row.claimed_at or row.requested_at)) / 1000
        if silent > SILENT_AFTER_S:
            return VerificationFact(DOWN, row.id, _down_silent(row, silent), base | {"silent_s": round(silent, 1)})
        return VerificationFact(RUNNING, row.id, f"verification running: request #{row.id} is being re-scored by "
                                f"{row.worker} (claimed {(now_ms - row.claimed_at) / 1000:.0f} s ago)", base)
    return VerificationFact(FORGED, row.id, f"verification record #{row.id} has the unknown status "
                            f"{row.status!r}, which no verifier writes: ignored", base)


def _down_unclaimed(row: SqlVerification, waited: float) -> str:
    gave_up = f" after {row.tries} verifier starts" if row.tries >= MAX_TRIES else ""
    return (f"verifier down: request #{row.id} has not been claimed for {waited:.0f} s{gave_up}; no verifier "
            f"is running (or all are busy): start one with `gatekeeper verify-worker`, or check the server's "
            f"verifier log")


def _down_silent(row: SqlVerification, silent: float) -> str:
    gave_up = f"; gave up after {row.tries} verifier starts" if row.tries >= MAX_TRIES else ""
    return (f"verifier down: request #{row.id} was claimed by {row.worker}, which has been silent for "
            f"{silent:.0f} s (it crashed or was killed){gave_up}; check its log, then ask again")


def _finished(row: SqlVerification, key: VerificationKey, secret: bytes) -> VerificationFact:
    expected = sign(secret, key, row.status, row.result or "", row.error)
    if not same_digest(row.signature, expected):
        return VerificationFact(FORGED, row.id, f"verification record #{row.id} is not signed by this server: ignored",
                                {"claimed_status": row.status}, row.signature)
    try:
        numbers = json.loads(row.result or "{}")
    except ValueError:
        numbers = {}
    numbers = (numbers if isinstance(numbers, dict) else {}) | {"tries": row.tries}
    return VerificationFact(row.status, row.id, result_message(row.id, row.status, key, numbers, row.error),
                            numbers, row.signature)


def result_message(request_id: int, status: str, key: VerificationKey, numbers: dict[str, Any],
                   error: str | None) -> str:
    """The one sentence of a finished verification, from its signed numbers."""
    if status == ERROR:
        return f"verification #{request_id} could not be done: {error}"
    if "reason" in numbers:  # failed before re-scoring: the evidence itself does not hold up
        return f"verification #{request_id} {status}: {numbers['reason']}"
    checked, n_rows = numbers.get("rows_checked", 0), numbers.get("n_rows", 0)
    scope = f"re-scored {checked:,} of {n_rows:,} rows of {key.set_label}"
    if status == PASSED:
        return (f"verification #{request_id} passed: {scope}, every label and prediction matched "
                f"(probabilities within {PROBA_TOLERANCE:g})")
    examples = "; ".join(f"{e['field']} on row {e['row_id']!r}: logged {e['logged']}, re-scored {e['rescored']}"
                         for e in numbers.get("examples", [])[:3])
    return (f"verification #{request_id} failed: {numbers.get('rows_disagreeing', 0)} of {checked:,} re-scored rows "
            f"disagree with the logged outcomes ({examples}{'; …' if numbers.get('rows_disagreeing', 0) > 3 else ''})")
