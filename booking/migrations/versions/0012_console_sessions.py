"""console sessions on the server, sign-in failures shared by every gateway, and the random code
a staff member quotes to acknowledge an escalation by text

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 18:40:00
"""
import sqlalchemy as sa
from alembic import op

import booking.models

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'console_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('staff_id', sa.Integer(), nullable=True),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('created_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_active_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['staff_id'], ['staff_members.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index('ix_console_sessions_staff_id', 'console_sessions', ['staff_id'])
    op.create_index('ix_console_sessions_last_active_at', 'console_sessions',
                    ['last_active_at'])
    op.create_table(
        'sign_in_failures',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_failure_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('previous_failure_at', booking.models.UTCDateTime(timezone=True),
                  nullable=True),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_index('ix_sign_in_failures_last_failure_at', 'sign_in_failures',
                    ['last_failure_at'])
    # Escalations opened before this have no code: they are acknowledged in the console.
    op.add_column('escalations', sa.Column('ack_code', sa.String(length=8), nullable=True))


def downgrade() -> None:
    op.drop_column('escalations', 'ack_code')
    op.drop_index('ix_sign_in_failures_last_failure_at', table_name='sign_in_failures')
    op.drop_table('sign_in_failures')
    op.drop_index('ix_console_sessions_last_active_at', table_name='console_sessions')
    op.drop_index('ix_console_sessions_staff_id', table_name='console_sessions')
    op.drop_table('console_sessions')
