"""Declarative tables of the gate: the audit log, registered evaluation sets, verifications, the
secret, the evidence runs seen, feedback on logged predictions."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import declarative_base

from registry_hooks.contract import (
    AUDIT_HEADS_TABLE,
    AUTOPILOT_LEASE_TABLE,
    DECISIONS_TABLE,
    EVAL_SETS_TABLE,
    EVIDENCE_SEEN_TABLE,
    FEEDBACK_TABLE,
    OUTBOX_TABLE,
    SECRET_TABLE,
    VERIFICATIONS_TABLE,
)

Base = declarative_base()


class SqlDecision(Base):
    """One gate decision: who asked for what, against which baseline, and why it was decided so.

    ``checks`` holds the full, JSON-encoded numbers of every check so ``gatekeeper history`` can
    show them years later without re-running anything; ``policy_hash`` ties the row to the exact
    policy text in force.
    """

    __tablename__ = DECISIONS_TABLE

    id = Column(Integer, primary_key=True, autoincrement=True)
    created_at = Column(BigInteger, nullable=False)  # milliseconds since the epoch, like MLflow
    model_name = Column(String(256), nullable=False)
    candidate_version = Column(String(32), nullable=True)
    baseline_version = Column(String(32), nullable=True)
    action = Column(String(16), nullable=False)  # promote | refuse | rollback | override
    verdict = Column(String(40), nullable=False)
    target = Column(String(256), nullable=False)
    route = Column(String(64), nullable=False)  # which registry call or gatekeeper command asked
    actor = Column(String(256), nullable=True)
    reasons = Column(Text, nullable=False)  # JSON list of sentences
    checks = Column(Text, nullable=False)  # JSON list of check dicts
    evidence_run_ids = Column(Text, nullable=False)  # JSON list
    replaced = Column(Text, nullable=False)  # JSON: what the write displaced (old holders)
    policy_hash = Column(String(64), nullable=False)
    # The audit chain (registry_hooks/audit/chain.py); NULL on rows written before it existed.
    digests = Column(Text, nullable=True)  # JSON object: evidence name -> hex digest it was judged on
    prev_hash = Column(String(64), nullable=True)  # row_hash of the model's previous decision
    row_hash = Column(String(64), nullable=True)  # HMAC of prev_hash and this row

    __table_args__ = (Index("idx_gatekeeper_decisions_model", "model_name", "id"),)


class SqlAuditHead(Base):
    """The end of one model's audit chain: its last row, that row's hash and how many rows it has.

    Overwritten on every decision (no append-only trigger) and signed with the server secret, so a
    deleted last row or a deleted history is visible: the rows alone cannot tell. The head named
    ``""`` counts the rows of every model, for a history deleted together with its own head.
    """

    __tablename__ = AUDIT_HEADS_TABLE

    model_name = Column(String(256), primary_key=True)
    last_id = Column(Integer, nullable=True)
    last_hash = Column(String(64), nullable=True)
    count = Column(Integer, nullable=False, default=0)
    signature = Column(String(64), nullable=True)


class SqlEvalSet(Base):
    """One registered version of an evaluation set: where its data lives and exactly what it holds.

    Append-only like the decisions: a new version is a new row, never an edit, so the content hash
    an old decision relied on stays readable. ``name`` is the normalised key (NFKC, case,
    whitespace: ``Golden`` and ``ｇｏｌｄｅｎ`` are one set); ``display_name`` the spelling it was
    registered with. ``keys_digest`` fingerprints the (row id, label) pairs so the gate can tell
    evidence that covers the set from evidence on a subset without reading the data.
    """

    __tablename__ = EVAL_SETS_TABLE

    id = Column(Integer, primary_key=True, autoincrement=True)
    name = Column(String(256), nullable=False)
    display_name = Column(String(256), nullable=False)
    version = Column(Integer, nullable=False)
    source = Column(Text, nullable=False)
    content_hash = Column(String(64), nullable=False)
    n_rows = Column(BigInteger, nullable=False)
    columns = Column(Text, nullable=False)  # JSON list of [name, dtype]
    label_column = Column(String(256), nullable=False)
    keys_digest = Column(String(64), nullable=False)
    description = Column(Text, nullable=True)
    created_by = Column(String(256), nullable=True)
    created_at = Column(BigInteger, nullable=False)

    __table_args__ = (UniqueConstraint("name", "version", name="uq_gatekeeper_eval_sets_version"),)


class SqlVerification(Base):
    """A request to re-score a sample of an evidence run, and the verifier's signed answer.

    One row per (evidence run, outcomes file): a request is inserted by the gate (never by a
    client route), claimed by a verifier process, and finished with a result whose ``signature``
    (HMAC with the server secret over the key and the result) the gate checks before trusting it.
    """

    __tablename__ = VERIFICATIONS_TABLE

    id = Column(Integer, primary_key=True, autoincrement=True)
    evidence_run_id = Column(String(64), nullable=False)
    outcomes_sha256 = Column(String(64), nullable=False)
    model_name = Column(String(256), nullable=False)
    candidate_version = Column(String(32), nullable=False)
    baseline_version = Column(String(32), nullable=True)
    set_name = Column(String(256), nullable=False)
    set_version = Column(Integer, nullable=False)
    set_content_hash = Column(String(64), nullable=False)
    sample_size = Column(Integer, nullable=False)
    status = Column(String(16), nullable=False)  # pending | running | passed | failed | error
    requested_at = Column(BigInteger, nullable=False)
    claimed_at = Column(BigInteger, nullable=True)
    heartbeat_at = Column(BigInteger, nullable=True)
    finished_at = Column(BigInteger, nullable=True)
    tries = Column(Integer, nullable=False, default=0)
    worker = Column(String(256), nullable=True)  # host:pid of the verifier that claimed it
    result = Column(Text, nullable=True)  # JSON: rows checked, mismatches, tolerance, timings
    error = Column(Text, nullable=True)
    signature = Column(String(64), nullable=True)

    __table_args__ = (
        UniqueConstraint("evidence_run_id", "outcomes_sha256", name="uq_gatekeeper_verifications_evidence"),
        Index("idx_gatekeeper_verifications_status", "status", "id"),
    )


class SqlSecret(Base):
    """The server secret generated on first use when ``GATEKEEPER_SECRET`` is not set (one row)."""

    __tablename__ = SECRET_TABLE

    id = Column(Integer, primary_key=True)
    value = Column(String(128), nullable=False)
    created_at = Column(BigInteger, nullable=False)


class SqlEvidenceSeen(Base):
    """An evidence run as the gate first saw it: which candidate, against which baseline, on which
    data. Every attempt counts, so an attempt the gate has seen stays one after its run is
    retagged, marked failed or deleted (``registry_hooks.evidence_seen``)."""

    __tablename__ = EVIDENCE_SEEN_TABLE

    id = Column(Integer, primary_key=True, autoincrement=True)
    run_id = Column(String(64), nullable=False)
    model_name = Column(String(256), nullable=False)
    candidate_version = Column(String(32), nullable=False)
    baseline_version = Column(String(32), nullable=False)
    data_hash = Column(String(64), nullable=False)
    first_seen_at = Column(BigInteger, nullable=False)

    __table_args__ = (
        UniqueConstraint("run_id", name="uq_gatekeeper_evidence_seen_run"),
        Index("idx_gatekeeper_evidence_seen_candidate", "model_name", "candidate_version"),
    )


class SqlAutopilotLease(Base):
    """The autopilot lease of one model (``registry_hooks.autopilot_lease``): overwritten by
    compare-and-set on ``generation``, never deleted (an expired lease is a free one)."""

    __tablename__ = AUTOPILOT_LEASE_TABLE

    model_name = Column(String(256), primary_key=True)
    holder = Column(String(256), nullable=False)
    generation = Column(Integer, nullable=False)
    expires_at = Column(BigInteger, nullable=False)  # milliseconds since the epoch, the server's clock


class SqlFeedback(Base):
    """One revision of the feedback on one logged prediction of one model (``registry_hooks.feedback``).

    Append-only: a correction is the next revision, never an edit, so what the miner or a training
    set read at the time stays readable. Each revision holds the whole state (label, flag, note),
    so the newest revision alone says what counts. ``logged_at`` and ``model_run_id`` are copied
    from the inference-log record the server found for the id: a reader filters by prediction
    time without reading the log.
    """

    __tablename__ = FEEDBACK_TABLE

    id = Column(Integer, primary_key=True, autoincrement=True)
    model_name = Column(String(256), nullable=False)
    request_id = Column(String(128), nullable=False)
    revision = Column(Integer, nullable=False)
    label = Column(String(256), nullable=True)
    flag = Column(String(16), nullable=True)
    note = Column(Text, nullable=True)
    actor = Column(String(256), nullable=True)
    created_at = Column(BigInteger, nullable=False)  # milliseconds since the epoch
    logged_at = Column(BigInteger, nullable=False)  # the prediction's time in the inference log
    model_run_id = Column(String(64), nullable=False)

    __table_args__ = (
        UniqueConstraint("model_name", "request_id", "revision", name="uq_gatekeeper_feedback_revision"),
        Index("idx_gatekeeper_feedback_logged", "model_name", "logged_at"),
        Index("idx_gatekeeper_feedback_created", "model_name", "created_at"),
    )


class SqlOutbox(Base):
    """One notification of one decision to one URL (``registry_hooks.outbox``), inserted in the
    decision's own transaction and updated only by the sender (claim, attempt, delivery).

    ``payload`` is the exact JSON text every attempt sends; ``delivery_id`` stays the same across
    attempts; ``seal`` (HMAC with the server secret) tells a row the gate wrote from one written
    into the table by anyone else. Times are milliseconds since the epoch, the sender's clock.
    """

    __tablename__ = OUTBOX_TABLE

    id = Column(Integer, primary_key=True, autoincrement=True)
    url = Column(Text, nullable=False)
    event = Column(String(64), nullable=False)  # gatekeeper_decision.<action>
    payload = Column(Text, nullable=False)
    delivery_id = Column(String(36), nullable=False)
    seal = Column(String(64), nullable=False)
    created_at = Column(BigInteger, nullable=False)
    attempts = Column(Integer, nullable=False, default=0)  # sends started, the one in flight included
    next_attempt_at = Column(BigInteger, nullable=False)
    claimed_until = Column(BigInteger, nullable=True)  # a sender's lease on the row
    delivered_at = Column(BigInteger, nullable=True)
    last_error = Column(Text, nullable=True)

    __table_args__ = (
        UniqueConstraint("delivery_id", name="uq_gatekeeper_outbox_delivery"),
        Index("idx_gatekeeper_outbox_due", "next_attempt_at", sqlite_where=text("delivered_at IS NULL"),
              postgresql_where=text("delivered_at IS NULL")),
    )
