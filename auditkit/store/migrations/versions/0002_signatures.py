"""Ed25519 decision signatures: a chair's public key and each decision's signature.

Revision ID: 0002
Revises: 0001

Both columns are nullable, so every row of 0001 is kept unchanged; the trail treats a
column that an event's snapshot lacks and the row holds as NULL as "added later".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("public_key", sa.Text, nullable=True))
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("signature", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("signature")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("public_key")
