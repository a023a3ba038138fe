"""The audit trail is append-only in the database itself, on SQLite and PostgreSQL, and the
migration that makes it round-trips."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DatabaseError

from booking.db import session_factory
from booking.migrate import alembic_config, upgrade
from booking.records import audit
from tests.postgres import throwaway_database


def _one_event(url: str) -> None:
    engine = create_engine(url, future=True)
    with session_factory(engine)() as session, session.begin():
        audit.record(session, clinic_id=1, action=audit.ERASE, channel="cli",
                     address="host", actor="cli:someone", contact_id=7, detail="test")
    engine.dispose()


def _refusals(url: str, statements: list[str]) -> list[str]:
    """Each statement, in its own transaction: what the database said."""
    engine = create_engine(url, future=True)
    said = []
    for statement in statements:
        with pytest.raises(DatabaseError) as refused, engine.begin() as connection:
            connection.execute(text(statement))
        said.append(str(refused.value.orig))
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT action, detail FROM audit_events")).all()
    engine.dispose()
    assert rows == [("erase", "test")]
    return said


def test_sqlite_refuses_to_change_or_delete_an_audit_event(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    _one_event(url)
    said = _refusals(url, ["UPDATE audit_events SET detail = 'changed'",
                           "DELETE FROM audit_events"])
    assert all("append-only" in message for message in said)


def test_postgresql_refuses_update_delete_and_truncate():
    with throwaway_database("audit") as url:
        upgrade(url)
        _one_event(url)
        said = _refusals(url, ["UPDATE audit_events SET detail = 'changed'",
                               "DELETE FROM audit_events", "TRUNCATE audit_events"])
        assert all("append-only" in message for message in said)


def test_the_migration_round_trips_on_postgresql():
    with throwaway_database("audit_migration") as url:
        config = alembic_config(url)
        command.upgrade(config, "head")
        command.downgrade(config, "0009")
        engine = create_engine(url)
        assert "audit_events" not in inspect(engine).get_table_names()
        with engine.connect() as connection:
            assert connection.execute(text(
                "SELECT count(*) FROM pg_proc WHERE proname = 'audit_events_append_only'"
            )).scalar() == 0
        engine.dispose()
        command.upgrade(config, "head")
        _one_event(url)
