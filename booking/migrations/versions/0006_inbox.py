"""the durable inbox: patient messages waiting for the dialogue

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-01 23:40:00
"""
import sqlalchemy as sa
from alembic import op

import booking.models

revision = '0006'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'inbox_items',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('message_id', sa.Integer(), nullable=False),
        sa.Column('thread_id', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('state', sa.Enum('waiting', 'answered', 'held', 'handed_to_staff',
                                   name='inbox_state', native_enum=False, length=32),
                  nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', booking.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('claim_token', sa.String(length=36), nullable=True),
        sa.Column('claimed_until', booking.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('received_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('finished_at', booking.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('message_id'),
    )
    op.create_index('ix_inbox_items_due', 'inbox_items', ['state', 'next_attempt_at'])
    op.create_index('ix_inbox_items_thread', 'inbox_items', ['thread_id', 'state', 'id'])


def downgrade() -> None:
    op.drop_index('ix_inbox_items_thread', table_name='inbox_items')
    op.drop_index('ix_inbox_items_due', table_name='inbox_items')
    op.drop_table('inbox_items')
