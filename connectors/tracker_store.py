"""Rasa's SQL tracker store, bounded and never replaced by memory.

Rasa 3.6 stores every event of a conversation forever (it loads the latest conversation
session, and with sessions that never ended that was the whole history, every turn), and it
hides a tracker store outage: the agent wraps the store in `FailSafeTrackerStore`, which
answers a failed read with an empty conversation and keeps a failed write in memory, and a
store that cannot be loaded becomes an `InMemoryTrackerStore` with a warning. Messages then
get answered out of context and the conversation is lost when the process ends. Here instead:

- `BoundedSQLTrackerStore` (endpoints.yml names it) drops a conversation's earlier sessions
  when a new session starts (domain.yml's `session_config` ends a session after a week of
  silence), so a tracker holds one session. The booking database keeps the full history.
- It waits a bounded time for its database at start (TRACKER_STORE_START_TIMEOUT_SECONDS),
  then refuses to start, where Rasa's store would retry forever.
- `install()` makes the agent use the store as it is: a failed read or write is an error of
  that message (the channel answers 503 and the gateway delivers it again later); an agent
  given a store in memory (what Rasa makes of a store it could not load) refuses to start,
  and one given none can parse messages but refuses every turn (`NoConversations`).
- It keeps the trackers it saved (the most recent `KEPT_TRACKERS`), so the next turn of a
  conversation costs one indexed query that checks the stored rows are still the ones it
  saved, instead of reading and rebuilding every event: rebuilding was about a third of Rasa's
  CPU per message (issue 19). Any other writer (another Rasa process, the retention purge, an
  erasure) changes the count or the newest id, and the tracker is read afresh. A tracker
  handed out belongs to that turn: it is kept again only when the turn saves it.
- Within one turn (`one_turn`, the channel's, under the conversation's lock) the rows are
  checked once: the channel's look for a replayed message checks them, and the turn's read of
  the tracker right after takes that check instead of querying again. The turn's save still
  counts the rows, so a writer that takes no lock is seen as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, NamedTuple

import sqlalchemy as sa
from rasa.core.agent import Agent
from rasa.core.tracker_store import InMemoryTrackerStore, SQLTrackerStore, TrackerStore
from rasa.shared.core.constants import ACTION_SESSION_START_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker

from booking.db import make_engine
from booking.settings import get_settings

logger = logging.getLogger(__name__)

_RETRY_SECONDS = 1.0
# Conversations whose tracker stays in memory between turns, per Rasa process.
KEPT_TRACKERS = 2000


# The rows of each conversation checked in the turn being taken (None outside a turn).
_checked_in_turn: contextvars.ContextVar[dict[str, tuple[int, int | None]] | None] = (
    contextvars.ContextVar("checked_in_turn", default=None))


@contextlib.contextmanager
def one_turn() -> Iterator[None]:
    """A conversation's turn, under its lock: its stored rows are checked once in it."""
    token = _checked_in_turn.set({})
    try:
        yield
    finally:
        _checked_in_turn.reset(token)


class TrackerStoreUnavailable(RuntimeError):
    """The tracker store cannot be used; Rasa must not answer without it."""


class _Kept(NamedTuple):
    tracker: DialogueStateTracker
    stored: int  # how many of its events are rows
    rows: tuple[int, int | None]  # the sender's row count and newest row id when it was kept


class BoundedSQLTrackerStore(SQLTrackerStore):
    def __init__(self, domain: Domain | None = None, dialect: str = "sqlite",
                 host: str | None = None, port: int | None = None, db: str = "rasa.db",
                 username: str | None = None, password: str | None = None,
                 login_db: str | None = None, query: dict | None = None,
                 **kwargs: Any) -> None:
        url = self.get_db_url(dialect, host, port, db, username, password, login_db, query)
        _wait_for_database(url, get_settings().tracker_store_start_timeout_seconds)
        super().__init__(domain, dialect, host, port, db, username, password,
                         login_db=login_db, query=query, **kwargs)
        if self.engine.dialect.name == "sqlite":
            # Rasa's engine for a SQLite file opens a connection per query, in rollback-journal
            # mode: each turn's commit created, synced and deleted a journal file while Rasa's
            # event loop waited (most of a turn's time on a busy machine, issue 19). The booking
            # database's engine instead: pooled, WAL, and deleted words overwritten on disk.
            self.engine.dispose()
            self.engine = make_engine(str(self.engine.url))
            self.sessionmaker = sa.orm.sessionmaker(bind=self.engine)
        events = self.SQLEvent.__table__
        self._rows_query = sa.select(sa.func.count(events.c.id), sa.func.max(events.c.id)).where(
            events.c.sender_id == sa.bindparam("sender_id"))
        self._kept: OrderedDict[str, _Kept] = OrderedDict()  # at rest, as stored
        self._handed_out: OrderedDict[str, _Kept] = OrderedDict()  # in a turn now

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        kept = await self._as_stored(sender_id, self._kept.pop(sender_id, None))
        if kept is None:
            return None
        _remember(self._handed_out, sender_id, kept)
        return kept.tracker

    async def look(self, sender_id: str) -> DialogueStateTracker | None:
        """The conversation as stored, to read and never change: it stays kept, so the turn
        that follows (the channel looks for a replayed message first) does not read it again."""
        kept = await self._as_stored(sender_id, self._kept.get(sender_id))
        if kept is None:
            return None
        _remember(self._kept, sender_id, kept)
        return kept.tracker

    async def _as_stored(self, sender_id: str, kept: _Kept | None) -> _Kept | None:
        """`kept` if the sender's rows are still the ones it was kept with, else read afresh
        (Rasa's own read of the newest session)."""
        checked = _checked_in_turn.get()
        if kept is not None and checked is not None and checked.get(sender_id) == kept.rows:
            return kept
        with _unavailable_on_database_errors(), self.engine.connect() as connection:
            rows = self._rows_of(connection, sender_id)
        if checked is not None:
            checked[sender_id] = rows
        if kept is not None and kept.rows == rows:
            return kept
        tracker = await self._retrieve(sender_id, fetch_events_from_all_sessions=False)
        return None if tracker is None else _Kept(tracker, stored=len(tracker.events), rows=rows)

    async def _retrieve(self, sender_id: str, fetch_events_from_all_sessions: bool
                        ) -> DialogueStateTracker | None:
        with _unavailable_on_database_errors():
            return await super()._retrieve(sender_id, fetch_events_from_all_sessions)

    async def create_tracker(self, sender_id: str, append_action_listen: bool = True
                             ) -> DialogueStateTracker:
        """A new conversation's tracker (the processor's, for a sender with no rows), handed out
        to the turn like a retrieved one: its save appends the turn's events and keeps it.
        Rasa's saved the empty tracker (a count and a commit of nothing) and was not ours, so
        the turn's save went row by row through Rasa's and the next turn read it afresh."""
        if append_action_listen:
            return await super().create_tracker(sender_id, append_action_listen)
        tracker = self.init_tracker(sender_id)
        with _unavailable_on_database_errors(), self.engine.connect() as connection:
            rows = self._rows_of(connection, sender_id)
        if rows[0] == 0:  # else another writer was quicker: Rasa's save takes what it wrote
            _remember(self._handed_out, sender_id, _Kept(tracker, stored=0, rows=rows))
        return tracker

    async def save(self, tracker: DialogueStateTracker) -> None:
        handed_out = self._handed_out.pop(tracker.sender_id, None)
        with _unavailable_on_database_errors():
            if handed_out is None or handed_out.tracker is not tracker:
                await super().save(tracker)  # not one of ours: Rasa counts the stored rows
                kept = None
            else:
                # In a thread: the commit waits for the disk (and, on SQLite, for the write
                # lock), and Rasa's event loop has other conversations' turns to run meanwhile.
                kept = await asyncio.to_thread(self._append, handed_out)
            session_start = _session_started_this_turn(tracker)
            if session_start is not None:
                # Read afresh next turn: a new session's tracker starts at its SessionStarted.
                self._drop_sessions_before(tracker.sender_id, session_start)
            elif kept is not None:
                _remember(self._kept, tracker.sender_id, kept)

    def _rows_of(self, connection: sa.engine.Connection, sender_id: str
                 ) -> tuple[int, int | None]:
        # A statement built once, run on a plain connection: building an ORM query and its
        # cache key each turn cost more than the indexed query itself (issue 19's profile).
        count, newest = connection.execute(self._rows_query, {"sender_id": sender_id}).one()
        return count, newest

    def _append(self, handed_out: _Kept) -> _Kept | None:
        """Store the turn's new events (what Rasa's save does, without counting the stored rows
        first: the turn read them, under the conversation's lock), and keep the tracker; None
        when another writer's rows showed up meanwhile (read afresh next turn).

        One executemany for the turn's events (about ten), where the ORM's add_all inserts them
        one statement at a time to learn each id: only the newest id is kept, read back with the
        count in the same transaction."""
        tracker = handed_out.tracker
        rows = [{"sender_id": tracker.sender_id, "type_name": event.type_name,
                 "timestamp": data.get("timestamp"),
                 "intent_name": data.get("parse_data", {}).get("intent", {}).get("name"),
                 "action_name": data.get("name"), "data": json.dumps(data)}
                for event in itertools.islice(tracker.events, handed_out.stored, None)
                for data in (event.as_dict(),)]
        stored = handed_out.rows
        if rows:
            with self.engine.begin() as connection:
                connection.execute(self.SQLEvent.__table__.insert(), rows)
                stored = self._rows_of(connection, tracker.sender_id)
            if stored[0] != handed_out.rows[0] + len(rows):
                return None
        return _Kept(tracker, stored=len(tracker.events), rows=stored)

    def reachable(self) -> bool:
        """Whether the database answers now (the health check's question)."""
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def _drop_sessions_before(self, sender_id: str, session_start: float) -> None:
        # The rows Rasa itself would no longer load (it reads from the newest SessionStarted's
        # timestamp on), found through the sender_id index.
        events = self.SQLEvent.__table__
        with self.engine.begin() as connection:
            dropped = connection.execute(
                events.delete().where(events.c.sender_id == sender_id,
                                      events.c.timestamp < session_start)).rowcount
        logger.debug("new session: dropped %s events of earlier sessions", dropped)


def _remember(trackers: OrderedDict[str, _Kept], sender_id: str, kept: _Kept) -> None:
    trackers[sender_id] = kept
    trackers.move_to_end(sender_id)
    while len(trackers) > KEPT_TRACKERS:
        trackers.popitem(last=False)


@contextlib.contextmanager
def _unavailable_on_database_errors() -> Iterator[None]:
    """A database error as TrackerStoreUnavailable, without SQLAlchemy's statement and
    parameters: those hold sender ids (phone numbers) and events (what patients wrote), and
    the error ends up in Rasa's log."""
    try:
        yield
    except sa.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or type(error).__name__).splitlines()[0]
        raise TrackerStoreUnavailable(f"the tracker store failed: {reason}") from None


def _session_started_this_turn(tracker: DialogueStateTracker) -> float | None:
    """The timestamp of a session that began in this turn, if one did.

    A tracker retrieved from the store begins at its newest session: `action_session_start`
    and the SessionStarted it made. Any other event before the newest SessionStarted belongs
    to an earlier session, so that session ended in this turn.
    """
    events = list(tracker.events)
    for index in range(len(events) - 1, -1, -1):
        if isinstance(events[index], SessionStarted):
            earlier = [event for event in events[:index]
                       if not (isinstance(event, ActionExecuted)
                               and event.action_name == ACTION_SESSION_START_NAME)]
            return events[index].timestamp if earlier else None
    return None


def _wait_for_database(url: sa.engine.URL | str, timeout: float) -> None:
    engine = sa.create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with engine.connect() as connection:
                    connection.execute(sa.text("SELECT 1"))
                return
            except sa.exc.OperationalError as error:
                if time.monotonic() >= deadline:
                    raise TrackerStoreUnavailable(
                        f"the tracker store at {engine.url!r} did not answer within "
                        f"{timeout:g} s: {error.orig}") from error
                logger.warning("waiting for the tracker store at %r", engine.url)
                time.sleep(_RETRY_SECONDS)
    finally:
        engine.dispose()


class NoConversations(TrackerStore):
    """The store of an agent made without one, to parse messages alone (`make nlu-report`, the
    NLU tests): it holds no conversation, and a turn asked of it is an error, never memory."""

    def _refuse(self, *_: Any) -> Any:
        raise TrackerStoreUnavailable(
            "this agent was made without a tracker store: it parses messages, it does not hold "
            "conversations (Ringback's Rasa never keeps them in memory; see endpoints.yml)")

    retrieve = save = keys = retrieve_full_tracker = _refuse


def _store_without_fallback(store: TrackerStore | None, domain: Domain) -> TrackerStore:
    """Agent._create_tracker_store without FailSafeTrackerStore and without memory."""
    if isinstance(store, InMemoryTrackerStore):
        raise TrackerStoreUnavailable(
            "the tracker store is in memory (not configured, or it could not be loaded): "
            "Ringback's Rasa never keeps conversations in memory; see endpoints.yml")
    store = store or NoConversations(domain)
    store.domain = domain
    return store


def install() -> None:
    Agent._create_tracker_store = staticmethod(_store_without_fallback)
