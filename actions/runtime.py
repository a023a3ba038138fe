"""What every action shares in the action server process: database sessions and the outbox."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import joinedload, sessionmaker

from booking.db import get_engine, session_factory
from booking.messaging.outbox import Outbox
from booking.models import Clinic, Thread
from booking.scheduling.base import SchedulingAdapter
from booking.scheduling.registry import get_adapter
from booking.settings import get_settings


@lru_cache(maxsize=1)
def sessions() -> sessionmaker:
    return session_factory(get_engine(get_settings().database_url))


@lru_cache(maxsize=1)
def outbox() -> Outbox:
    """Built on first use, inside the action server's event loop."""
    return Outbox.from_settings(get_settings())


_adapters: dict[int, SchedulingAdapter] = {}


def adapter_for(clinic: Clinic) -> SchedulingAdapter:
    """One scheduling adapter per clinic for the life of the process."""
    if clinic.id not in _adapters:
        _adapters[clinic.id] = get_adapter(clinic, session_factory=sessions())
    return _adapters[clinic.id]


# Loaded with the thread, in one joined query and one per collection, instead of a lazy load
# per attribute in every action call: a turn's actions read all of it (profiled, issue 19).
_WHAT_EVERY_ACTION_READS = (joinedload(Thread.contact),
                            joinedload(Thread.clinic).selectinload(Clinic.services),
                            joinedload(Thread.clinic).selectinload(Clinic.providers))


@contextmanager
def thread_session(sender_id: str):
    """A transaction plus the thread this conversation belongs to."""
    with sessions()() as session, session.begin():
        thread = session.execute(select(Thread).where(Thread.sender_id == sender_id)
                                 .options(*_WHAT_EVERY_ACTION_READS)).scalar_one_or_none()
        if thread is None:
            raise LookupError(f"no thread for conversation {sender_id}")
        yield session, thread


