"""Migration 0016 carries the staff log-ins of 0015 over to accounts and admin memberships,
keeps everything that points at staff rows, and downgrades back, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from booking.migrate import alembic_config
from booking.models import Base
from tests.postgres import throwaway_database

BEFORE = [
    "INSERT INTO clinics (id, slug, name, timezone, country, locale, ring_timeout_seconds, "
    "call_screening, channel_policy, address, emergency_info, out_of_hours_info, "
    "scheduling_adapter, scheduling_config, settings, created_at, updated_at) VALUES "
    "(1, 'riverside', 'Riverside', 'Europe/London', 'GB', 'en-GB', 18, false, 'sms', '', '', "
    "'', 'builtin', '{}', '{}', '2026-12-01 09:00:00', '2026-12-01 09:00:00')",
    "INSERT INTO staff_members (id, clinic_id, slug, name, role, phone, alert_channel, "
    "is_backup, handles_billing, username, password_hash) VALUES "
    "(1, 1, 'front-desk', 'Front desk', 'reception', NULL, 'sms', false, false, "
    "'front-desk-user', '$argon2id$kept'), "
    "(2, 1, 'dr-who', 'Dr Who', 'clinician', '+447700900111', 'sms', false, false, NULL, NULL)",
    "INSERT INTO on_call_shifts (id, clinic_id, staff_id, weekday, starts, ends) VALUES "
    "(1, 1, 2, 0, '08:00:00', '18:00:00')",
    "INSERT INTO contacts (id, clinic_id, phone, is_known_patient, consent, created_at, "
    "whatsapp_unreachable) VALUES "
    "(1, 1, '+447700900999', false, 'implied', '2026-12-01 09:00:00', false)",
    "INSERT INTO threads (id, clinic_id, contact_id, sender_id, channel, state, "
    "handed_off_to_id, opened_at, last_activity_at) VALUES (1, 1, 1, 'riverside:+447700900999', "
    "'sms', 'handed_off', 1, '2026-12-01 09:00:00', '2026-12-01 09:00:00')",
]


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'accounts.db'}"
    else:
        with throwaway_database("accounts_migration") as url:
            yield url


def _rows(url: str, query: str) -> list[tuple]:
    engine = create_engine(url, future=True)
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(text(query))]
    engine.dispose()
    return rows


def test_staff_log_ins_become_admin_accounts_and_come_back_on_downgrade(database_url):
    config = alembic_config(database_url)
    command.upgrade(config, "0015")
    engine = create_engine(database_url, future=True)
    with engine.begin() as connection:
        for statement in BEFORE:
            connection.execute(text(statement))
    engine.dispose()

    command.upgrade(config, "0016")
    assert _rows(database_url, "SELECT id, username, name, password_hash, file_password_hash "
                               "FROM console_accounts") == [
        (1, "front-desk-user", "Front desk", "$argon2id$kept", "$argon2id$kept")]
    assert _rows(database_url, "SELECT id, account_id, console_role, from_file FROM "
                               "staff_members ORDER BY id") == [
        (1, 1, "admin", True), (2, None, None, True)]
    assert _rows(database_url, "SELECT staff_id, weekday FROM on_call_shifts") == [(2, 0)]
    assert _rows(database_url, "SELECT handed_off_to_id FROM threads") == [(1,)]
    engine = create_engine(database_url, future=True)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    with engine.begin() as connection:  # the next account id does not collide
        connection.execute(text("INSERT INTO console_accounts (username, name, created_at) "
                                "VALUES ('new-person', 'New', '2026-12-02 09:00:00')"))
    engine.dispose()

    command.downgrade(config, "0015")
    assert _rows(database_url, "SELECT id, username, password_hash FROM staff_members "
                               "ORDER BY id") == [
        (1, "front-desk-user", "$argon2id$kept"), (2, None, None)]
    assert _rows(database_url, "SELECT staff_id FROM on_call_shifts") == [(2,)]
    command.upgrade(config, "head")
    assert _rows(database_url, "SELECT username FROM console_accounts") == [
        ("front-desk-user",)]
