"""console accounts apart from clinic memberships: one log-in per person (console_accounts), and
each staff row is that person's membership of one clinic, with a role and an enabled flag

Every staff row that had a username becomes an account with the same id, password and name, and
an admin membership of its clinic: before this revision every log-in could do everything the
console offered, so nobody loses access. Console sessions end (everyone signs in again).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 21:15:00
"""
import sqlalchemy as sa
from alembic import op

import booking.models

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'console_accounts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('username', sa.String(length=120), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=True),
        sa.Column('file_password_hash', sa.String(length=255), nullable=True),
        sa.Column('invite_token_hash', sa.String(length=64), nullable=True),
        sa.Column('invite_expires_at', booking.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', booking.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('username'),
        sa.UniqueConstraint('invite_token_hash'),
    )
    op.execute(
        "INSERT INTO console_accounts (id, username, name, password_hash, file_password_hash, "
        "created_at) SELECT id, username, name, password_hash, password_hash, CURRENT_TIMESTAMP "
        "FROM staff_members WHERE username IS NOT NULL")
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("SELECT setval(pg_get_serial_sequence('console_accounts', 'id'), "
                   "COALESCE((SELECT MAX(id) FROM console_accounts), 0) + 1, false)")
    op.execute('DELETE FROM console_sessions')
    # SQLite rebuilds staff_members for this (a UNIQUE column cannot be dropped in place);
    # migrations run with its foreign keys off, so rows pointing at staff stay as they are.
    with op.batch_alter_table('staff_members') as batch:
        batch.add_column(sa.Column('account_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('console_role', sa.Enum(
            'staff', 'admin', name='console_role', native_enum=False, length=32),
            nullable=True))
        batch.add_column(sa.Column('console_enabled', sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
        batch.add_column(sa.Column('from_file', sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
        batch.create_foreign_key('fk_staff_members_account_id', 'console_accounts',
                                 ['account_id'], ['id'])
        batch.drop_column('username')
        batch.drop_column('password_hash')
    op.execute("UPDATE staff_members SET account_id = id, console_role = 'admin' "
               "WHERE id IN (SELECT id FROM console_accounts)")
    op.create_index('ix_staff_members_account_id', 'staff_members', ['account_id'])
    op.create_index('uq_staff_members_clinic_account', 'staff_members',
                    ['clinic_id', 'account_id'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_staff_members_clinic_account', table_name='staff_members')
    op.drop_index('ix_staff_members_account_id', table_name='staff_members')
    op.execute('DELETE FROM console_sessions')
    op.add_column('staff_members', sa.Column('username', sa.String(length=120), nullable=True))
    op.add_column('staff_members', sa.Column('password_hash', sa.String(length=255),
                                             nullable=True))
    # One username per row before this revision: a person with several clinics keeps their
    # log-in at the first of them (their oldest membership), and loses the others.
    op.execute(
        "UPDATE staff_members SET "
        "username = (SELECT username FROM console_accounts a WHERE a.id = account_id), "
        "password_hash = (SELECT password_hash FROM console_accounts a WHERE a.id = account_id) "
        "WHERE console_enabled AND id IN (SELECT MIN(id) FROM staff_members "
        "WHERE account_id IS NOT NULL AND console_enabled GROUP BY account_id)")
    with op.batch_alter_table('staff_members') as batch:
        batch.drop_constraint('fk_staff_members_account_id', type_='foreignkey')
        batch.drop_column('account_id')
        batch.drop_column('console_role')
        batch.drop_column('console_enabled')
        batch.drop_column('from_file')
        batch.create_unique_constraint('staff_members_username_key', ['username'])
    op.drop_table('console_accounts')

