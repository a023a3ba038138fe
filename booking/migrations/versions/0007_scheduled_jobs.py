"""scheduled jobs (follow-ups, reminders, rebooking offers), their decisions, confirmations

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 15:40:00
"""
import sqlalchemy as sa
from alembic import op

import booking.models

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=32)


def upgrade() -> None:
    op.add_column('appointments', sa.Column(
        'confirmed_at', booking.models.UTCDateTime(timezone=True), nullable=True))
    op.create_table(
        'scheduled_jobs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('clinic_id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('thread_id', sa.Integer(), nullable=True),
        sa.Column('appointment_id', sa.Integer(), nullable=True),
        sa.Column('kind', _enum('job_kind', 'follow_up', 'reminder', 'rebooking_offer'),
                  nullable=False),
        sa.Column('subject', sa.String(length=64), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('subject_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('due_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('state', _enum('job_state', 'scheduled', 'sent', 'dropped', 'cancelled'),
                  nullable=False),
        sa.Column('channel', _enum('job_channel', 'sms', 'whatsapp'), nullable=True),
        sa.Column('message_id', sa.Integer(), nullable=True),
        sa.Column('last_reason', sa.String(length=300), nullable=False),
        sa.Column('deferrals', sa.Integer(), nullable=False),
        sa.Column('dialogue_told_at', booking.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('finished_at', booking.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('kind', 'subject', 'step'),
    )
    op.create_index('ix_scheduled_jobs_due', 'scheduled_jobs', ['state', 'due_at'])
    op.create_index('ix_scheduled_jobs_contact', 'scheduled_jobs', ['contact_id', 'state'])
    op.create_index('ix_scheduled_jobs_appointment', 'scheduled_jobs', ['appointment_id', 'kind'])
    op.create_table(
        'job_decisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=300), nullable=False),
        sa.Column('until', booking.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('decided_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['scheduled_jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_job_decisions_job_id', 'job_decisions', ['job_id'])


def downgrade() -> None:
    op.drop_index('ix_job_decisions_job_id', table_name='job_decisions')
    op.drop_table('job_decisions')
    op.drop_index('ix_scheduled_jobs_appointment', table_name='scheduled_jobs')
    op.drop_index('ix_scheduled_jobs_contact', table_name='scheduled_jobs')
    op.drop_index('ix_scheduled_jobs_due', table_name='scheduled_jobs')
    op.drop_table('scheduled_jobs')
    # Plain DROP COLUMN (SQLite >= 3.35 and PostgreSQL both have it); no table rebuild.
    op.drop_column('appointments', 'confirmed_at')
