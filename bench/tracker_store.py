"""What a conversation's history costs each turn in Rasa's tracker store (read the tracker, add
the message, write it back) on PostgreSQL: a long conversation as one session that never ends
(domain.yml's `session_expiration_time: 0`, before trackers were bounded) against the same
conversation kept as its newest session by `BoundedSQLTrackerStore`."""

from __future__ import annotations

import asyncio
import time

from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    BotUttered,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy.engine import make_url

from connectors.tracker_store import BoundedSQLTrackerStore
from tests.postgres import throwaway_database

SESSIONS = 100
MESSAGES_PER_SESSION = 4
OTHER_PATIENTS = 200
TURNS = 100
A_WEEK_AND_MORE = 10**6


def _session(start: float) -> list:
    """A session's events as Rasa writes them: its start, then four messages answered."""
    events = [SlotSet("session_started_metadata", {"clinic": "riverside"}, timestamp=start),
              ActionExecuted("action_session_start", timestamp=start + 0.2),
              SessionStarted(timestamp=start + 0.1),
              ActionExecuted("action_listen", timestamp=start + 0.3)]
    for index in range(MESSAGES_PER_SESSION):
        at = start + 1 + index
        events += [UserUttered(f"message {index}", timestamp=at),
                   ActionExecuted("action_booking_turn", timestamp=at + 0.1),
                   BotUttered("an answer", timestamp=at + 0.2),
                   ActionExecuted("action_listen", timestamp=at + 0.3)]
    return events


async def _per_turn(store: BoundedSQLTrackerStore, sender: str) -> dict:
    cpu, wall = time.process_time(), time.perf_counter()
    for turn in range(TURNS):
        tracker = await store.retrieve(sender)
        tracker.update(UserUttered("one more", timestamp=2 * 10**9 + turn))
        await store.save(tracker)
    return {"cpu_ms": round((time.process_time() - cpu) / TURNS * 1000, 2),
            "wall_ms": round((time.perf_counter() - wall) / TURNS * 1000, 2)}


async def _measure(url: str) -> dict:
    parts = make_url(url)
    store = BoundedSQLTrackerStore(Domain.empty(), dialect="postgresql", host=parts.host,
                                   port=parts.port, db=parts.database,
                                   username=parts.username)
    try:
        # Other patients' rows beside, so the sender index does its work as in a real store.
        for patient in range(OTHER_PATIENTS):
            await store.save(DialogueStateTracker.from_events(f"other:{patient}",
                                                              _session(1000.0)))
        endless = _session(1000.0)
        for number in range(1, SESSIONS):
            endless += _session(1000.0 + number * A_WEEK_AND_MORE)[4:]  # no new session
        await store.save(DialogueStateTracker.from_events("endless", endless))
        bounded = DialogueStateTracker.from_events("bounded", _session(1000.0))
        await store.save(bounded)
        for number in range(1, SESSIONS):  # each session start drops the one before
            tracker = await store.retrieve("bounded")
            for event in _session(1000.0 + number * A_WEEK_AND_MORE):
                tracker.update(event)
            await store.save(tracker)
        return {"conversation_messages": SESSIONS * MESSAGES_PER_SESSION,
                "one_endless_session": await _per_turn(store, "endless"),
                "newest_session_only": await _per_turn(store, "bounded")}
    finally:
        store.engine.dispose()


def run() -> dict:
    with throwaway_database("ringback_bench_tracker") as url:
        return asyncio.run(_measure(url))
