"""Create the append-only decisions table.

A migration is history: it names the table as it was created, not through
``registry_hooks.contract`` (renaming the table there would need a new migration).

Revision ID: 0001_decisions
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_decisions"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gatekeeper_decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("candidate_version", sa.String(32), nullable=True),
        sa.Column("baseline_version", sa.String(32), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(40), nullable=False),
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(256), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("checks", sa.Text(), nullable=False),
        sa.Column("evidence_run_ids", sa.Text(), nullable=False),
        sa.Column("replaced", sa.Text(), nullable=False),
        sa.Column("policy_hash", sa.String(64), nullable=False),
    )
    op.create_index("idx_gatekeeper_decisions_model", "gatekeeper_decisions", ["model_name", "id"])
    if op.get_bind().dialect.name == "postgresql":
        # Append-only in the database itself, not only by convention in the code.
        op.execute(
            """
            CREATE FUNCTION gatekeeper_decisions_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'gatekeeper_decisions is append-only';
            END;
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER gatekeeper_decisions_no_change BEFORE UPDATE OR DELETE
                ON gatekeeper_decisions FOR EACH ROW EXECUTE FUNCTION gatekeeper_decisions_append_only();
            """
        )
    elif op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER gatekeeper_decisions_no_update BEFORE UPDATE ON gatekeeper_decisions "
            "BEGIN SELECT RAISE(ABORT, 'gatekeeper_decisions is append-only'); END"
        )
        op.execute(
            "CREATE TRIGGER gatekeeper_decisions_no_delete BEFORE DELETE ON gatekeeper_decisions "
            "BEGIN SELECT RAISE(ABORT, 'gatekeeper_decisions is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS gatekeeper_decisions_no_change ON gatekeeper_decisions")
        op.execute("DROP FUNCTION IF EXISTS gatekeeper_decisions_append_only()")
    op.drop_index("idx_gatekeeper_decisions_model", table_name="gatekeeper_decisions")
    op.drop_table("gatekeeper_decisions")
