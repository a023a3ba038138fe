"""arrivals: patient messages as Twilio posted them, stored before the webhook answers and
kept only until the intake takes them into the inbox

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 18:50:00
"""
import sqlalchemy as sa
from alembic import op

import booking.models

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'arrivals',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('message_sid', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.Enum('sms', 'whatsapp', name='arrival_channel',
                                     native_enum=False, length=32), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('received_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('message_sid'),
    )


def downgrade() -> None:
    op.drop_table('arrivals')
