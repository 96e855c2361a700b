"""Registered evaluation sets (append-only), verification requests, the generated server secret.

A migration is history: it names the tables as they were created, not through the contract.

Revision ID: 0002_trusted_evidence
Revises: 0001_decisions
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_trusted_evidence"
down_revision = "0001_decisions"
branch_labels = None
depends_on = None


def _append_only(table: str) -> None:
    """Refuse UPDATE and DELETE in the database itself, as 0001 does for the decisions."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION {table}_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{table} is append-only';
            END;
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE
                ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_append_only();
            """
        )
    elif dialect == "sqlite":
        for verb in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def upgrade() -> None:
    op.create_table(
        "gatekeeper_eval_sets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("n_rows", sa.BigInteger(), nullable=False),
        sa.Column("columns", sa.Text(), nullable=False),
        sa.Column("label_column", sa.String(256), nullable=False),
        sa.Column("keys_digest", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(256), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_gatekeeper_eval_sets_version"),
    )
    _append_only("gatekeeper_eval_sets")
    op.create_table(
        "gatekeeper_verifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("evidence_run_id", sa.String(64), nullable=False),
        sa.Column("outcomes_sha256", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("candidate_version", sa.String(32), nullable=False),
        sa.Column("baseline_version", sa.String(32), nullable=True),
        sa.Column("set_name", sa.String(256), nullable=False),
        sa.Column("set_version", sa.Integer(), nullable=False),
        sa.Column("set_content_hash", sa.String(64), nullable=False),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("claimed_at", sa.BigInteger(), nullable=True),
        sa.Column("heartbeat_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("worker", sa.String(256), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("signature", sa.String(64), nullable=True),
        sa.UniqueConstraint("evidence_run_id", "outcomes_sha256", name="uq_gatekeeper_verifications_evidence"),
    )
    op.create_index("idx_gatekeeper_verifications_status", "gatekeeper_verifications", ["status", "id"])
    op.create_table(
        "gatekeeper_secret",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gatekeeper_secret")
    op.drop_index("idx_gatekeeper_verifications_status", table_name="gatekeeper_verifications")
    op.drop_table("gatekeeper_verifications")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS gatekeeper_eval_sets_no_change ON gatekeeper_eval_sets")
        op.execute("DROP FUNCTION IF EXISTS gatekeeper_eval_sets_append_only()")
    op.drop_table("gatekeeper_eval_sets")
