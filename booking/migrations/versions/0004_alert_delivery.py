"""escalation alerts sent by email and webhook carry their own delivery state

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-23 10:00:00
"""
from alembic import op
import sqlalchemy as sa
import booking.models


revision = '0004'
down_revision = '0001'
branch_labels = None
depends_on = None

# Plain ADD/DROP COLUMN (SQLite >= 3.35 and PostgreSQL both have them); no table rebuild.


def upgrade() -> None:
    op.add_column('escalation_alerts', sa.Column('recipient', sa.String(length=320),
                                                 nullable=True))
    op.add_column('escalation_alerts', sa.Column('delivery_status', sa.String(length=16),
                                                 nullable=True))
    op.add_column('escalation_alerts', sa.Column('attempts', sa.Integer(),
                                                 server_default=sa.text('0'), nullable=False))
    op.add_column('escalation_alerts', sa.Column(
        'next_attempt_at', booking.models.UTCDateTime(timezone=True), nullable=True))
    op.add_column('escalation_alerts', sa.Column(
        'sent_at', booking.models.UTCDateTime(timezone=True), nullable=True))
    op.create_index('ix_escalation_alerts_delivery', 'escalation_alerts',
                    ['delivery_status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_escalation_alerts_delivery', table_name='escalation_alerts')
    for column in ('sent_at', 'next_attempt_at', 'attempts', 'delivery_status', 'recipient'):
        op.drop_column('escalation_alerts', column)
