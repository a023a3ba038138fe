"""audit_events: who viewed, answered, took over, acknowledged, exported or erased a patient's
records, append-only (triggers refuse UPDATE and DELETE on SQLite and PostgreSQL alike)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 18:40:00
"""
import sqlalchemy as sa
from alembic import op

import booking.models
from booking.models import AUDIT_APPEND_ONLY_DDL

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'audit_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('clinic_id', sa.Integer(), nullable=False),
        sa.Column('occurred_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=120), nullable=False),
        sa.Column('staff_id', sa.Integer(), nullable=True),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('address', sa.String(length=120), nullable=False),
        sa.Column('thread_id', sa.Integer(), nullable=True),
        sa.Column('escalation_id', sa.Integer(), nullable=True),
        sa.Column('contact_id', sa.Integer(), nullable=True),
        sa.Column('detail', sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_audit_events_clinic_time', 'audit_events', ['clinic_id', 'occurred_at'])
    for statement in AUDIT_APPEND_ONLY_DDL.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TABLE audit_events')
        op.execute('DROP FUNCTION audit_events_append_only()')
        return
    op.drop_index('ix_audit_events_clinic_time', table_name='audit_events')
    op.drop_table('audit_events')
