"""Engine and session factories; nothing connects at import time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from booking.settings import get_settings

# Every id column is INTEGER, which PostgreSQL holds up to 2**31 - 1: a larger id is no row's.
MAX_ROW_ID = 2**31 - 1


def parse_row_id(text: str) -> int | None:
    """An id typed into a URL as the id of one of our rows, or None when it cannot be one.

    Checked before any query: SQLite's driver raises on an id beyond 64 bits instead of finding
    nothing, and int() refuses "²" (which str.isdigit() accepts) and numbers of 4,300+ digits.
    """
    if not text.isascii() or not text.isdigit() or len(text) > len(str(MAX_ROW_ID)):
        return None
    row_id = int(text)
    return row_id if 1 <= row_id <= MAX_ROW_ID else None


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # SQLAlchemy 1.4 opens a new connection per session for file SQLite; a pool keeps
        # them open, which spares a WAL checkpoint and the pragmas on every unit of work.
        engine = create_engine(
            database_url, future=True, poolclass=QueuePool, pool_size=5, max_overflow=10,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # The gateway's webhook and background threads each hold a connection while they work;
    # connections beyond pool_size are closed on return, so a burst would reconnect each time.
    engine = create_engine(database_url, future=True, pool_size=POOL_SIZE, max_overflow=10)
    event.listen(engine, "checkin", _note_idle_since)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


POOL_SIZE = 12


def warm_up(engine: Engine, connections: int = POOL_SIZE) -> None:
    """Open the pool's connections now, so the first burst of calls does not wait for them."""
    with ExitStack() as held:
        for _ in range(connections):
            held.enter_context(engine.connect())


# A connection idle this long may have been cut (a database restart, a firewall's idle timeout):
# it is pinged before use. Busy connections are not, because `pool_pre_ping` would add a round
# trip to every unit of work, a fifth of the database time of a burst of missed calls; if the
# server goes away mid-burst, SQLAlchemy sees the disconnect and replaces the whole pool.
IDLE_BEFORE_PING_SECONDS = 10.0


def _note_idle_since(_dbapi_connection, record) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < IDLE_BEFORE_PING_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
    except Exception as exc:  # the driver's own error types: this pool serves any driver
        # The pool drops this connection and checks out a fresh one.
        raise DisconnectionError(f"idle connection was closed: {exc}") from exc


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the Rasa, action and gateway processes read while one of them writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Words removed by the retention purge or an erasure are overwritten, not left in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


@lru_cache(maxsize=4)
def get_engine(database_url: str | None = None) -> Engine:
    return make_engine(database_url or get_settings().database_url)


def session_factory(engine: Engine | None = None) -> sessionmaker:
    return sessionmaker(bind=engine or get_engine(), future=True, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error."""
    session = session_factory(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def insert_ignoring_duplicates(session: Session, model, unique: tuple[str, ...]):
    """INSERT ... ON CONFLICT DO NOTHING, on PostgreSQL and SQLite alike."""
    dialect = session.get_bind().dialect.name
    build = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}.get(dialect)
    if build is None:
        raise NotImplementedError(f"no ON CONFLICT support for {dialect}")
    return build(model).on_conflict_do_nothing(index_elements=list(unique))
