"""indexes for the outbox's per-recipient ordering and for a contact's latest message

Revision ID: 0003
Revises: 0005
Create Date: 2026-11-22 06:45:00
"""
from alembic import op

revision = '0003'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The outbox claims a row only when no older row to the same address is still live.
    op.create_index('ix_messages_recipient', 'messages', ['to_number', 'from_number', 'status'],
                    unique=False)
    # Channel choice looks up the channel a contact last wrote to the clinic on.
    op.create_index('ix_messages_sender', 'messages', ['from_number', 'clinic_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_messages_sender', table_name='messages')
    op.drop_index('ix_messages_recipient', table_name='messages')
