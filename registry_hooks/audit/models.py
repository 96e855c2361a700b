"""Declarative tables of the audit log."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Text
from sqlalchemy.orm import declarative_base

from registry_hooks.contract import DECISIONS_TABLE

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

    __table_args__ = (Index("idx_gatekeeper_decisions_model", "model_name", "id"),)
