"""The evidence runs the gate has seen: every attempt counts, even one retagged or deleted later.

Append-only, like the decisions. A migration is history: it names the table literally.

Revision ID: 0004_evidence_seen
Revises: 0003_audit_chain
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_evidence_seen"
down_revision = "0003_audit_chain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gatekeeper_evidence_seen",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("candidate_version", sa.String(32), nullable=False),
        sa.Column("baseline_version", sa.String(32), nullable=False),
        sa.Column("data_hash", sa.String(64), nullable=False),
        sa.Column("first_seen_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("run_id", name="uq_gatekeeper_evidence_seen_run"),
    )
    op.create_index("idx_gatekeeper_evidence_seen_candidate", "gatekeeper_evidence_seen",
                    ["model_name", "candidate_version"])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION gatekeeper_evidence_seen_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'gatekeeper_evidence_seen is append-only';
            END;
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER gatekeeper_evidence_seen_no_change BEFORE UPDATE OR DELETE
                ON gatekeeper_evidence_seen FOR EACH ROW EXECUTE FUNCTION gatekeeper_evidence_seen_append_only();
            """
        )
    elif dialect == "sqlite":
        for verb in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER gatekeeper_evidence_seen_no_{verb} BEFORE {verb.upper()} ON gatekeeper_evidence_seen "
                "BEGIN SELECT RAISE(ABORT, 'gatekeeper_evidence_seen is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS gatekeeper_evidence_seen_no_change ON gatekeeper_evidence_seen")
        op.execute("DROP FUNCTION IF EXISTS gatekeeper_evidence_seen_append_only()")
    op.drop_index("idx_gatekeeper_evidence_seen_candidate", table_name="gatekeeper_evidence_seen")
    op.drop_table("gatekeeper_evidence_seen")
