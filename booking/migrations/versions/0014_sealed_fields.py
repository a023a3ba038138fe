"""dates of birth and emails sealed at rest (booking.field_encryption): each column becomes
text holding "<key id>:<Fernet token>", existing values sealed with the current key

Plain ADD, DROP and RENAME COLUMN (SQLite >= 3.35 and PostgreSQL): rebuilding contacts on
SQLite would cascade-delete every row that points at it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 18:45:00
"""
from datetime import date

import sqlalchemy as sa
from alembic import op

from booking.field_encryption import SEALED_COLUMNS, key_ring

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

PLAIN_TYPES = {("contacts", "date_of_birth"): sa.Date(), ("contacts", "email"): sa.String(320),
               ("patients", "date_of_birth"): sa.Date()}


def _plain_text(value) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _replace(table: str, column: str, new_type, convert) -> None:
    connection = op.get_bind()
    staged = f"{column}_staged"
    op.add_column(table, sa.Column(staged, new_type, nullable=True))
    rows = connection.execute(sa.text(
        f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL")).all()
    for row_id, value in rows:
        connection.execute(sa.text(f"UPDATE {table} SET {staged} = :value WHERE id = :id"),
                           {"value": convert(value), "id": row_id})
    op.drop_column(table, column)
    op.execute(f"ALTER TABLE {table} RENAME COLUMN {staged} TO {column}")


def upgrade() -> None:
    ring = key_ring()
    for table, column in SEALED_COLUMNS:
        _replace(table, column, sa.Text(), lambda value: ring.seal(_plain_text(value)))


def downgrade() -> None:
    ring = key_ring()
    for table, column in SEALED_COLUMNS:
        plain = PLAIN_TYPES[(table, column)]
        convert = ((lambda value: date.fromisoformat(ring.open(value)))
                   if isinstance(plain, sa.Date) else ring.open)
        _replace(table, column, plain, convert)
