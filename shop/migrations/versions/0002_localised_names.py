"""Chinese product names beside the English ones (optional: a shop without them shows English).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot alter tables in place
    with op.batch_alter_table("order_items") as batch:
        batch.add_column(sa.Column("name_zh", sa.String(200), nullable=True))
    with op.batch_alter_table("card_codes") as batch:
        batch.add_column(sa.Column("product_zh", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("card_codes") as batch:
        batch.drop_column("product_zh")
    with op.batch_alter_table("order_items") as batch:
        batch.drop_column("name_zh")
