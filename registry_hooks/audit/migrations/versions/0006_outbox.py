"""The outbox of decision notifications: one row per (decision, URL), sent and retried by the server.

Not append-only: the sender updates a row as it claims, tries and delivers it. The partial index
holds only the rows still to deliver, so the sender's poll stays one small index scan however many
delivered rows the table keeps. A migration is history: it names the table literally.

Revision ID: 0006_outbox
Revises: 0005_feedback
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_outbox"
down_revision = "0005_feedback"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gatekeeper_outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("seal", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("claimed_until", sa.BigInteger(), nullable=True),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("delivery_id", name="uq_gatekeeper_outbox_delivery"),
    )
    undelivered = sa.text("delivered_at IS NULL")
    op.create_index("idx_gatekeeper_outbox_due", "gatekeeper_outbox", ["next_attempt_at"],
                    sqlite_where=undelivered, postgresql_where=undelivered)


def downgrade() -> None:
    op.drop_index("idx_gatekeeper_outbox_due", table_name="gatekeeper_outbox")
    op.drop_table("gatekeeper_outbox")
