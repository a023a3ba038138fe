"""Migration 0004 (alert delivery state) sits on the single head and round-trips."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from booking.migrate import alembic_config
from booking.models import Base


def test_one_head_and_the_alert_columns_round_trip(tmp_path):
    url = f"sqlite:///{tmp_path / 'migrate.db'}"
    config = alembic_config(url)
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1
    command.upgrade(config, "head")
    engine = create_engine(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    command.downgrade(config, "0004-1")
    assert "delivery_status" not in {c["name"] for c in
                                     inspect(create_engine(url)).get_columns("escalation_alerts")}
    command.upgrade(config, "head")
    assert "delivery_status" in {c["name"] for c in
                                 inspect(create_engine(url)).get_columns("escalation_alerts")}
    engine.dispose()
