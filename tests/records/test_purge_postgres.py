"""`ringback purge` on PostgreSQL, where Rasa's tracker store shares the booking database (as
`ringback run` configures it in production): old words go from both, new ones stay. Rasa's
events are written by Rasa's own SQL tracker store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from booking.clinics.config import load_clinics_file
from booking.db import session_factory
from booking.migrate import upgrade
from booking.models import Clinic, Escalation, EscalationReason, Message, utcnow
from tests.escalation.conftest import EXAMPLE_FILE, start_thread
from tests.postgres import throwaway_database

pytestmark = pytest.mark.postgres

RINGBACK = str(Path(sys.executable).parent / "ringback")


def _rasa_conversation(url: str, sender_id: str, said: str, at: float) -> None:
    database = make_url(url)
    store = SQLTrackerStore(domain=Domain.empty(), dialect="postgresql", host=database.host,
                            port=database.port, db=database.database,
                            username=database.username)
    tracker = DialogueStateTracker.from_events(sender_id, [
        UserUttered(said, timestamp=at), BotUttered(f"you said {said}", timestamp=at)])
    asyncio.run(store.save(tracker))
    store.engine.dispose()


def test_ringback_purge_removes_old_words_from_bookings_and_rasa_on_postgresql():
    now = utcnow()
    old, recent = now - timedelta(days=800), now - timedelta(days=700)
    with throwaway_database("purge") as url:
        upgrade(url)
        engine = create_engine(url, future=True)
        load_clinics_file(database_url=url, path=EXAMPLE_FILE)
        sessions = session_factory(engine)
        with sessions() as session, session.begin():
            riverside = session.execute(select(Clinic).where(Clinic.slug == "riverside")
                                        ).scalar_one()
            threads = {}
            for phone, said, at in (("+447700900851", "old words aardvark", old),
                                    ("+447700900852", "newer words bilby", recent)):
                thread = start_thread(session, clinic_id=riverside.id, phone=phone, said=[said],
                                      at=at)
                session.add(Escalation(
                    clinic_id=riverside.id, thread_id=thread.id, contact_id=thread.contact_id,
                    reason=EscalationReason.human, priority=2, summary=f"asked: {said}",
                    transcript=[{"author": "patient", "body": said}], opened_at=at))
                threads[said] = thread.sender_id
        for said, sender_id in threads.items():
            _rasa_conversation(url, sender_id, said,
                               (old if "old" in said else recent).timestamp())

        purged = subprocess.run([RINGBACK, "purge", "--clinic", "riverside"],
                                env={**os.environ, "DATABASE_URL": url}, capture_output=True,
                                text=True, timeout=120)
        assert purged.returncode == 0, purged.stderr
        assert purged.stdout.startswith("riverside: words before ")
        assert "2 Rasa events" in purged.stdout  # the old user and bot events

        with engine.connect() as connection:
            def count(sql: str, word: str) -> int:
                return connection.execute(text(sql), {"w": f"%{word}%"}).scalar()

            for word, left in (("aardvark", 0), ("bilby", 1)):
                assert count("SELECT count(*) FROM messages WHERE body LIKE :w", word) == left
                assert count("SELECT count(*) FROM escalations WHERE CAST(transcript AS TEXT) "
                             "LIKE :w", word) == left
                assert count("SELECT count(*) FROM events WHERE data LIKE :w", word) == 2 * left
        with sessions() as session:
            # The rows stay, for the funnel and the dashboard.
            assert len(session.execute(select(Message)).scalars().all()) == 2
            assert len(session.execute(select(Escalation)).scalars().all()) == 2
        engine.dispose()
