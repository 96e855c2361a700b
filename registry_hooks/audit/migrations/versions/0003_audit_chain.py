"""The audit chain: each decision's evidence digests and its link to the model's previous decision,
and a signed head per model (plus one for all models) so a deleted tail or history is noticed.

The new decision columns are nullable: rows written before this revision keep NULL hashes and are
hashed on the fly by the verifier (``registry_hooks.audit.chain``). The heads table has no
append-only triggers: a head is overwritten on every decision, and its signature, not the database,
is what makes an edited head visible. A migration is history: it names the tables literally.

Revision ID: 0003_audit_chain
Revises: 0002_trusted_evidence
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_audit_chain"
down_revision = "0002_trusted_evidence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Adding nullable columns is a plain ALTER TABLE ADD COLUMN on SQLite too: the table is not
    # rebuilt, so its append-only triggers stay in place.
    op.add_column("gatekeeper_decisions", sa.Column("digests", sa.Text(), nullable=True))
    op.add_column("gatekeeper_decisions", sa.Column("prev_hash", sa.String(64), nullable=True))
    op.add_column("gatekeeper_decisions", sa.Column("row_hash", sa.String(64), nullable=True))
    op.create_table(
        "gatekeeper_audit_heads",
        sa.Column("model_name", sa.String(256), primary_key=True),
        sa.Column("last_id", sa.Integer(), nullable=True),
        sa.Column("last_hash", sa.String(64), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("signature", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("gatekeeper_audit_heads")
    # Not batch mode: rebuilding the table on SQLite would drop its append-only triggers
    # (SQLite 3.35+, which MLflow requires anyway, drops a column in place).
    for column in ("row_hash", "prev_hash", "digests"):
        op.drop_column("gatekeeper_decisions", column)
