"""The autopilot's lease: one row per model, changed only by compare-and-set on its generation.

A migration is history: it names the table literally.

Revision ID: 0007_autopilot_lease
Revises: 0006_outbox
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_autopilot_lease"
down_revision = "0006_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gatekeeper_autopilot_lease",
        sa.Column("model_name", sa.String(256), primary_key=True),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gatekeeper_autopilot_lease")
