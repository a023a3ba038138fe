"""the dashboard: a per-service value for the recovered-revenue estimate, and the indexes its
period queries read by (clinic and time)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 15:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


# Without them, two years of history made the dashboard read every call and message of the
# clinic for each period (see bench/dashboard.py).
INDEXES = [
    ('ix_missed_calls_clinic_time', 'missed_calls', ['clinic_id', 'occurred_at']),
    ('ix_messages_clinic_time', 'messages', ['clinic_id', 'created_at']),
    ('ix_appointments_clinic_created', 'appointments', ['clinic_id', 'created_at']),
]


def upgrade() -> None:
    op.add_column('services', sa.Column('value', sa.Integer(), nullable=True))
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_column('services', 'value')
