"""Feedback on logged predictions: labels and flags, one row per revision, append-only.

A migration is history: it names the table literally.

Revision ID: 0005_feedback
Revises: 0004_evidence_seen
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_feedback"
down_revision = "0004_evidence_seen"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gatekeeper_feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(256), nullable=True),
        sa.Column("flag", sa.String(16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(256), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("logged_at", sa.BigInteger(), nullable=False),
        sa.Column("model_run_id", sa.String(64), nullable=False),
        sa.UniqueConstraint("model_name", "request_id", "revision", name="uq_gatekeeper_feedback_revision"),
    )
    op.create_index("idx_gatekeeper_feedback_logged", "gatekeeper_feedback", ["model_name", "logged_at"])
    op.create_index("idx_gatekeeper_feedback_created", "gatekeeper_feedback", ["model_name", "created_at"])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION gatekeeper_feedback_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'gatekeeper_feedback is append-only';
            END;
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER gatekeeper_feedback_no_change BEFORE UPDATE OR DELETE
                ON gatekeeper_feedback FOR EACH ROW EXECUTE FUNCTION gatekeeper_feedback_append_only();
            """
        )
    elif dialect == "sqlite":
        for verb in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER gatekeeper_feedback_no_{verb} BEFORE {verb.upper()} ON gatekeeper_feedback "
                "BEGIN SELECT RAISE(ABORT, 'gatekeeper_feedback is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS gatekeeper_feedback_no_change ON gatekeeper_feedback")
        op.execute("DROP FUNCTION IF EXISTS gatekeeper_feedback_append_only()")
    op.drop_index("idx_gatekeeper_feedback_created", table_name="gatekeeper_feedback")
    op.drop_index("idx_gatekeeper_feedback_logged", table_name="gatekeeper_feedback")
    op.drop_table("gatekeeper_feedback")
