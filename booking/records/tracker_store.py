"""Rasa's SQL tracker store, seen from outside Rasa: its `events` table (one row per event of a
conversation, `data` the event as JSON, `timestamp` Unix seconds), as retention and a
patient's export and erasure need it. Rasa creates the table; where it is comes from
`Settings.rasa_tracker_store_url`, the same place `ringback run` tells Rasa.

A conversation's sender id is "<clinic slug>:<phone>" (`messaging.conversations`), so a
clinic's conversations are the sender ids that start with its slug and a colon.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    inspect,
    select,
)
from sqlalchemy.engine import Engine, make_url

EVENTS = Table(
    "events", MetaData(),
    Column("id", Integer, primary_key=True),
    Column("sender_id", String(255), nullable=False),
    Column("type_name", String(255), nullable=False),
    Column("timestamp", Float),
    Column("intent_name", String(255)),
    Column("action_name", String(255)),
    Column("data", Text),
)
# Kept past retention: they hold no words, and without them a thread staff still hold would
# wake the bot up again.
KEPT_PAST_RETENTION = ("pause", "resume")


def _secure_delete(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA secure_delete=ON")


class TrackerStore:
    """The events table at `url`; a store Rasa never wrote to simply holds nothing."""

    def __init__(self, url: str):
        parsed = make_url(url)
        self._missing_file = (parsed.drivername.startswith("sqlite")
                              and not Path(parsed.database or "").exists())
        self._engine: Engine | None = None if self._missing_file else create_engine(
            url, future=True)
        if self._engine is not None and parsed.drivername.startswith("sqlite"):
            # Deleted events are overwritten on disk, not left in SQLite's free pages.
            event.listen(self._engine, "connect", _secure_delete)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def _has_events(self) -> bool:
        return self._engine is not None and inspect(self._engine).has_table("events")

    def events_of(self, sender_ids: list[str]) -> list[dict]:
        """Every event of these conversations, oldest first, decoded."""
        if not sender_ids or not self._has_events():
            return []
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(EVENTS).where(EVENTS.c.sender_id.in_(sender_ids))
                .order_by(EVENTS.c.sender_id, EVENTS.c.id)).mappings().all()
        return [{**row, "data": json.loads(row["data"]) if row["data"] else None}
                for row in rows]

    def delete_conversations(self, sender_ids: list[str]) -> int:
        """Every event of these conversations (a patient's erasure)."""
        if not sender_ids or not self._has_events():
            return 0
        with self._engine.begin() as connection:
            return connection.execute(
                delete(EVENTS).where(EVENTS.c.sender_id.in_(sender_ids))).rowcount

    def purge_clinic_before(self, clinic_slug: str, cutoff: datetime) -> int:
        """A clinic's events older than `cutoff` (retention), but for pause and resume."""
        if not self._has_events():
            return 0
        with self._engine.begin() as connection:
            return connection.execute(
                delete(EVENTS).where(
                    EVENTS.c.sender_id.startswith(f"{clinic_slug}:", autoescape=True),
                    EVENTS.c.timestamp < cutoff.timestamp(),
                    EVENTS.c.type_name.not_in(KEPT_PAST_RETENTION))).rowcount
