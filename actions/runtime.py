"""What every action shares in the action server process: database sessions and the outbox."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy.orm import sessionmaker

from booking.db import get_engine, session_factory
from booking.messaging.conversations import find_thread
from booking.messaging.outbox import Outbox
from booking.models import Clinic
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


@contextmanager
def thread_session(sender_id: str):
    """A transaction plus the thread this conversation belongs to."""
    with sessions()() as session, session.begin():
        thread = find_thread(session, sender_id=sender_id)
        if thread is None:
            raise LookupError(f"no thread for conversation {sender_id}")
        yield session, thread


