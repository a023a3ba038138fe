"""contacts carry the details a clinic may require before booking: date of birth and email

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 06:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# Plain ADD/DROP COLUMN (SQLite >= 3.35 and PostgreSQL both have them); no table rebuild.


def upgrade() -> None:
    op.add_column('contacts', sa.Column('date_of_birth', sa.Date(), nullable=True))
    op.add_column('contacts', sa.Column('email', sa.String(length=320), nullable=True))


def downgrade() -> None:
    op.drop_column('contacts', 'email')
    op.drop_column('contacts', 'date_of_birth')
