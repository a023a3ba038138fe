"""fraud limits: why a missed call was not texted back (refused_reason), and the hourly
counts of text-backs the per-clinic and global caps are checked against

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 18:30:00
"""
import sqlalchemy as sa
from alembic import op

import booking.models

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: SQLite adds it in place, no table rebuild.
    op.add_column('missed_calls', sa.Column('refused_reason', sa.String(length=64),
                                            nullable=True))
    op.create_table(
        'text_back_hours',
        sa.Column('scope', sa.String(length=32), nullable=False),
        sa.Column('hour_start', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('texted', sa.Integer(), nullable=False),
        sa.Column('refused', sa.Integer(), nullable=False),
        sa.Column('alerted', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('scope', 'hour_start'),
    )


def downgrade() -> None:
    op.drop_table('text_back_hours')
    # SQLite (3.35+) drops a column no index or key uses in place; Alembic would rebuild.
    op.execute('ALTER TABLE missed_calls DROP COLUMN refused_reason')
