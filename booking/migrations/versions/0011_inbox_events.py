"""inbox events: the dialogue hears of a missed call through the inbox, before the reply

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 19:15:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Added in place (no batch rebuild): SQLite adds a nullable column without copying the table.
    op.add_column('inbox_items', sa.Column('intent', sa.String(length=64), nullable=True))


def downgrade() -> None:
    # In place too: a batch rebuild reflects the table, which fails on SQLite here (the
    # migration engine's dialect is never initialised); SQLite 3.35+ drops an unindexed column.
    op.execute('ALTER TABLE inbox_items DROP COLUMN intent')
