"""patients: the person each appointment is for, several per contact (a family on one phone)

Existing data comes along: every contact with a name or an appointment gets a patient record
for its own owner (relation "self", with the contact's name, date of birth and known-patient
flag), and every existing appointment points at its contact's record.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 15:40:00
"""
import sqlalchemy as sa
from alembic import op

import booking.models

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# appointments.patient_id is added in place: a table rebuild on SQLite (batch mode) drops the
# old table, and with foreign keys on that deletes every slot claim along with it.


def upgrade() -> None:
    op.create_table(
        'patients',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('clinic_id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('relation', sa.String(length=32), nullable=True),
        sa.Column('first_name', sa.String(length=120), nullable=True),
        sa.Column('last_name', sa.String(length=120), nullable=True),
        sa.Column('date_of_birth', sa.Date(), nullable=True),
        sa.Column('is_known_patient', sa.Boolean(), nullable=False),
        sa.Column('created_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_patients_contact_id', 'patients', ['contact_id'])
    if op.get_bind().dialect.name == 'sqlite':  # Alembic adds no constraint there; SQL can
        op.execute("ALTER TABLE appointments ADD COLUMN patient_id INTEGER "
                   "REFERENCES patients (id)")
    else:
        op.add_column('appointments', sa.Column(
            'patient_id', sa.Integer(),
            sa.ForeignKey('patients.id', name='fk_appointments_patient_id'),
            nullable=True))
    op.create_index('ix_appointments_patient_id', 'appointments', ['patient_id'])
    op.execute(
        "INSERT INTO patients (clinic_id, contact_id, relation, first_name, last_name, "
        "date_of_birth, is_known_patient, created_at) "
        "SELECT clinic_id, id, 'self', first_name, last_name, date_of_birth, is_known_patient, "
        "created_at FROM contacts "
        "WHERE first_name IS NOT NULL OR last_name IS NOT NULL "
        "OR id IN (SELECT contact_id FROM appointments)")
    op.execute(
        "UPDATE appointments SET patient_id = (SELECT patients.id FROM patients "
        "WHERE patients.contact_id = appointments.contact_id AND patients.relation = 'self')")


def downgrade() -> None:
    op.drop_index('ix_appointments_patient_id', table_name='appointments')
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite drops no column a foreign key uses, so the table is rebuilt. Migrations run
        # with foreign keys off (env.py's connections skip the app's pragmas), so dropping the
        # old table cascades nothing to the slot claims.
        with op.batch_alter_table('appointments', recreate='always',
                                  copy_from=_appointments_before()) as batch_op:
            batch_op.drop_column('patient_id')
    else:
        op.drop_column('appointments', 'patient_id')
    op.drop_index('ix_patients_contact_id', table_name='patients')
    op.drop_table('patients')


def _appointments_before() -> sa.Table:
    """appointments as 0009 leaves it, for SQLite's rebuild (the migration engine reflects
    nothing: its dialect is never initialised)."""
    return sa.Table(
        'appointments', sa.MetaData(),
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('clinic_id', sa.Integer(), sa.ForeignKey('clinics.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('contact_id', sa.Integer(), sa.ForeignKey('contacts.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('service_id', sa.Integer(), sa.ForeignKey('services.id'), nullable=False),
        sa.Column('provider_id', sa.Integer(), sa.ForeignKey('providers.id')),
        sa.Column('starts_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('ends_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('status', sa.Enum('booked', 'cancelled', 'rescheduled', 'completed', 'no_show',
                                    name='appointment_status', native_enum=False, length=32),
                  nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('external_id', sa.String(length=255)),
        sa.Column('idempotency_key', sa.String(length=128), nullable=False),
        sa.Column('rescheduled_from_id', sa.Integer(), sa.ForeignKey('appointments.id')),
        sa.Column('confirmed_at', booking.models.UTCDateTime(timezone=True)),  # 0007
        sa.Column('created_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('patient_id', sa.Integer(), sa.ForeignKey('patients.id')),
        sa.UniqueConstraint('clinic_id', 'idempotency_key'),
        sa.Index('ix_appointments_clinic_start', 'clinic_id', 'starts_at'),
        sa.Index('ix_appointments_contact_id', 'contact_id'),
        sa.Index('ix_appointments_clinic_created', 'clinic_id', 'created_at'),  # 0008
    )
