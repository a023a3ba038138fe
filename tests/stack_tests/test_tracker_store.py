"""The tracker store in Rasa's process: used as it is (no memory fall-back), and a conversation's
earlier sessions dropped in the turn a new one starts (on a real SQLite store; the PostgreSQL
run through the whole stack is tests/integration/test_tracker_store.py)."""

from __future__ import annotations

import inspect

import pytest
import rasa.core.agent
import sqlalchemy
from rasa.core.agent import Agent
from rasa.core.tracker_store import InMemoryTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

import connectors.gateway_channel  # noqa: F401 - installs the guard, as in Rasa's process
from connectors.tracker_store import BoundedSQLTrackerStore, TrackerStoreUnavailable, one_turn

SENDER = "riverside:+447700900123"


def session(start: float, words: str) -> list:
    """One conversation session's events as Rasa writes them, from `start` on."""
    return [SlotSet("session_started_metadata", {"clinic": "riverside"}, timestamp=start),
            ActionExecuted("action_session_start", timestamp=start + 0.2),
            SessionStarted(timestamp=start + 0.1),
            ActionExecuted("action_listen", timestamp=start + 0.3),
            UserUttered(words, timestamp=start + 1),
            ActionExecuted("action_listen", timestamp=start + 2)]


def test_the_method_it_replaces_still_has_the_shape_it_had():
    """A Rasa upgrade that changes how the agent wraps its store must be looked at."""
    source = inspect.getsource(rasa.core.agent)
    assert "return FailSafeTrackerStore(tracker_store)" in source
    assert "self.tracker_store = self._create_tracker_store(tracker_store, self.domain)" in source


def test_an_agent_given_a_store_in_memory_refuses_to_exist():
    """What Rasa makes of a store it could not load: the Rasa process does not start."""
    with pytest.raises(TrackerStoreUnavailable):
        Agent(tracker_store=InMemoryTrackerStore(Domain.empty()))


async def test_an_agent_given_no_store_parses_but_holds_no_conversation():
    """An agent for parsing alone (the NLU report and tests): every turn is refused."""
    agent = Agent()
    with pytest.raises(TrackerStoreUnavailable):
        await agent.tracker_store.retrieve(SENDER)
    with pytest.raises(TrackerStoreUnavailable):
        await agent.tracker_store.save(DialogueStateTracker.from_events(SENDER, []))


def test_an_agent_uses_the_store_itself_so_its_errors_reach_the_message(tmp_path):
    store = BoundedSQLTrackerStore(Domain.empty(), dialect="sqlite",
                                   db=str(tmp_path / "tracker.db"))
    assert Agent(tracker_store=store).tracker_store is store


async def test_a_new_session_drops_the_earlier_ones_and_an_ordinary_turn_drops_nothing(tmp_path):
    store = BoundedSQLTrackerStore(Domain.empty(), dialect="sqlite",
                                   db=str(tmp_path / "tracker.db"))
    def stored() -> int:
        with store.session_scope() as db:
            return db.query(store.SQLEvent).count()

    await store.save(DialogueStateTracker.from_events(SENDER, session(1000.0, "hello")))
    # The session's metadata slot, set before SessionStarted, Rasa never loads again.
    assert stored() == 5
    tracker = await store.retrieve(SENDER)
    tracker.update(UserUttered("and again", timestamp=1003.0))
    await store.save(tracker)
    assert stored() == 6  # an ordinary turn adds its event and drops nothing

    tracker = await store.retrieve(SENDER)
    for event in session(900000.0, "a week later"):
        tracker.update(event)
    await store.save(tracker)

    with store.session_scope() as db:
        kept = [(row.type_name, row.timestamp) for row in
                db.query(store.SQLEvent).order_by(store.SQLEvent.id)]
    assert kept == [("action", 900000.2), ("session_started", 900000.1),
                    ("action", 900000.3), ("user", 900001.0), ("action", 900002.0)]
    # What Rasa loads is what it loaded before the drop: the newest session.
    assert [event.timestamp for event in (await store.retrieve(SENDER)).events] == [
        timestamp for _, timestamp in kept]


async def test_an_earlier_sessions_words_are_gone_from_the_file_itself(tmp_path):
    """Dropped rows are overwritten, not left in SQLite's free pages (Debian's SQLite does that
    by default; other builds only when asked, as the store does)."""
    path = tmp_path / "tracker.db"
    store = BoundedSQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(path))
    await store.save(DialogueStateTracker.from_events(SENDER, session(1000.0, "my gums bleed")))
    tracker = await store.retrieve(SENDER)
    for event in session(900000.0, "a week later"):
        tracker.update(event)
    await store.save(tracker)
    with store.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.engine.dispose()

    assert b"a week later" in path.read_bytes()
    assert b"my gums bleed" not in path.read_bytes()


async def kept_after_one_turn(store: BoundedSQLTrackerStore) -> None:
    """A conversation whose tracker the store keeps, as after any turn Rasa saved."""
    await store.save(DialogueStateTracker.from_events(SENDER, session(1000.0, "hello")))
    tracker = await store.retrieve(SENDER)
    tracker.update(UserUttered("a check up", timestamp=1003.0))
    await store.save(tracker)


def words(tracker: DialogueStateTracker) -> list[str]:
    return [event.text for event in tracker.events if isinstance(event, UserUttered)]


async def test_a_kept_tracker_is_read_afresh_once_another_process_has_written(tmp_path):
    """Two Rasa processes on one store: each sees the other's turns, whatever it kept."""
    here, there = (BoundedSQLTrackerStore(Domain.empty(), dialect="sqlite",
                                          db=str(tmp_path / "tracker.db")) for _ in range(2))
    await kept_after_one_turn(here)
    tracker = await there.retrieve(SENDER)
    tracker.update(UserUttered("how much is it?", timestamp=1005.0))
    await there.save(tracker)

    assert words(await here.retrieve(SENDER)) == ["hello", "a check up", "how much is it?"]


async def test_another_process_writing_during_a_turn_is_seen_after_the_turn(tmp_path):
    """Rows another writer adds while this process's turn runs (no lock shared: the purge, a
    process that lost its lock) are not taken for this turn's own: the next turn reads afresh."""
    here, there = (BoundedSQLTrackerStore(Domain.empty(), dialect="sqlite",
                                          db=str(tmp_path / "tracker.db")) for _ in range(2))
    await kept_after_one_turn(here)
    turn = await here.retrieve(SENDER)
    meanwhile = await there.retrieve(SENDER)
    meanwhile.update(UserUttered("written elsewhere", timestamp=1004.0))
    await there.save(meanwhile)
    turn.update(UserUttered("this turn", timestamp=1005.0))
    turn.update(ActionExecuted("action_listen", timestamp=1006.0))
    await here.save(turn)

    assert words(await here.retrieve(SENDER)) == [
        "hello", "a check up", "written elsewhere", "this turn"]


async def test_a_turn_that_never_saved_leaves_no_trace_in_the_next_one(tmp_path):
    """A turn that failed half-way changed its tracker in memory only: the next turn reads
    what is stored."""
    store = BoundedSQLTrackerStore(Domain.empty(), dialect="sqlite",
                                   db=str(tmp_path / "tracker.db"))
    await kept_after_one_turn(store)
    failed = await store.retrieve(SENDER)
    failed.update(UserUttered("never stored", timestamp=1004.0))

    again = await store.retrieve(SENDER)
    assert again is not failed
    assert words(again) == ["hello", "a check up"]
    again.update(UserUttered("the second one", timestamp=1006.0))
    await store.save(again)
    assert words(await store.retrieve(SENDER)) == ["hello", "a check up", "the second one"]


async def test_a_conversation_erased_from_the_store_is_not_answered_from_memory(tmp_path):
    store = BoundedSQLTrackerStore(Domain.empty(), dialect="sqlite",
                                   db=str(tmp_path / "tracker.db"))
    await kept_after_one_turn(store)
    with store.session_scope() as db:  # what `ringback patient erase` does to Rasa's store
        db.query(store.SQLEvent).filter(store.SQLEvent.sender_id == SENDER).delete()
        db.commit()

    assert await store.retrieve(SENDER) is None


async def test_a_look_at_the_conversation_is_what_is_stored_and_not_a_turn(tmp_path):
    """The channel looks for a replayed message before the turn: a look never shows what a
    turn that did not save changed, and does not stop the next turn from saving."""
    store = BoundedSQLTrackerStore(Domain.empty(), dialect="sqlite",
                                   db=str(tmp_path / "tracker.db"))
    await kept_after_one_turn(store)
    assert words(await store.look(SENDER)) == ["hello", "a check up"]
    turn = await store.retrieve(SENDER)
    turn.update(UserUttered("not saved yet", timestamp=1004.0))
    assert words(await store.look(SENDER)) == ["hello", "a check up"]

    await store.save(turn)
    assert words(await store.look(SENDER)) == ["hello", "a check up", "not saved yet"]
    assert await store.look("riverside:+447700900999") is None


async def test_a_turn_checks_the_stored_rows_once_and_still_sees_other_writers(tmp_path):
    """The channel's look and the turn's read right after it, under the conversation's lock,
    check the stored rows once; the next turn checks them again."""
    here, there = (BoundedSQLTrackerStore(Domain.empty(), dialect="sqlite",
                                          db=str(tmp_path / "tracker.db")) for _ in range(2))
    await kept_after_one_turn(here)
    row_checks = []
    sqlalchemy.event.listen(here.engine, "before_cursor_execute",
                            lambda *args: row_checks.append(args[2]) if "count(" in args[2]
                            else None)

    with one_turn():
        looked = await here.look(SENDER)
        turn = await here.retrieve(SENDER)
        assert turn is looked and len(row_checks) == 1
        turn.update(UserUttered("this turn", timestamp=1005.0))
        await here.save(turn)

    meanwhile = await there.retrieve(SENDER)
    meanwhile.update(UserUttered("written elsewhere", timestamp=1006.0))
    await there.save(meanwhile)
    with one_turn():
        assert words(await here.look(SENDER)) == [
            "hello", "a check up", "this turn", "written elsewhere"]
        assert words(await here.retrieve(SENDER)) == [
            "hello", "a check up", "this turn", "written elsewhere"]


async def test_a_sqlite_store_keeps_its_connections_and_writes_ahead(tmp_path):
    store = BoundedSQLTrackerStore(Domain.empty(), dialect="sqlite",
                                   db=str(tmp_path / "tracker.db"))
    await kept_after_one_turn(store)
    with store.engine.connect() as first:
        connection = first.connection.dbapi_connection
        assert first.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    with store.engine.connect() as again:
        assert again.connection.dbapi_connection is connection
    assert words(await store.retrieve(SENDER)) == ["hello", "a check up"]


async def test_a_new_conversation_is_stored_by_its_first_turn_and_kept(tmp_path):
    """The processor's new tracker is the turn's: nothing is written until the turn saves, the
    turn's events are then stored, and the next turn goes on with the same tracker."""
    store = BoundedSQLTrackerStore(Domain.empty(), dialect="sqlite",
                                   db=str(tmp_path / "tracker.db"))
    new = await store.get_or_create_tracker(SENDER, append_action_listen=False)
    assert not new.events and await store.keys() == []
    for event in session(1000.0, "hello")[1:]:
        new.update(event)
    await store.save(new)

    assert await store.retrieve(SENDER) is new
    with store.session_scope() as db:
        assert db.query(store.SQLEvent).count() == 5
    assert words(await BoundedSQLTrackerStore(
        Domain.empty(), dialect="sqlite", db=str(tmp_path / "tracker.db")).retrieve(SENDER)) == [
        "hello"]
    listening = await store.get_or_create_tracker("riverside:+447700900998")
    assert [event.action_name for event in listening.events] == ["action_listen"]
    assert len(await store.keys()) == 2
