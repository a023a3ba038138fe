"""What every action shares in the action server process: database sessions, the outbox, and
what each clinic offers (its services and clinicians, and its scheduling adapter)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy import bindparam, select
from sqlalchemy.orm import selectinload, sessionmaker

from booking.clinics.lookups import normalise_phrase, service_phrases
from booking.db import get_engine, session_factory
from booking.messaging.conversations import find_thread
from booking.messaging.outbox import Outbox
from booking.models import Clinic, Provider, Service
from booking.scheduling.base import SchedulingAdapter
from booking.scheduling.registry import AdapterCache
from booking.settings import get_settings


@lru_cache(maxsize=1)
def sessions() -> sessionmaker:
    return session_factory(get_engine(get_settings().database_url))


@lru_cache(maxsize=1)
def outbox() -> Outbox:
    """Built on first use, inside the action server's event loop."""
    return Outbox.from_settings(get_settings())


@lru_cache(maxsize=1)
def _adapters() -> AdapterCache:
    return AdapterCache(sessions())


def adapter_for(clinic: Clinic) -> SchedulingAdapter:
    """One scheduling adapter per clinic, rebuilt (its calendar reread) when the clinic's
    configuration changes."""
    return _adapters().for_clinic(clinic)


@dataclass(frozen=True)
class ClinicCatalogue:
    """A clinic's services (each with its clinicians) and clinicians, as one version of its
    configuration has them. Detached rows, shared by every turn: read them, never change them."""

    version: datetime
    services: tuple[Service, ...]
    providers: tuple[Provider, ...]
    # The words of its treatments' and clinicians' names: never a person's name.
    words: frozenset[str]


_SERVICES = (select(Service).where(Service.clinic_id == bindparam("clinic_id"))
             .options(selectinload(Service.providers)).order_by(Service.id))
_PROVIDERS = select(Provider).where(Provider.clinic_id == bindparam("clinic_id")).order_by(
    Provider.id)
_catalogues: dict[int, ClinicCatalogue] = {}


def catalogue_of(clinic: Clinic) -> ClinicCatalogue:
    """The clinic's catalogue, read again only when its version (updated_at, which a
    configuration load moves) differs from the one read: reading it cost more than a turn's
    other statements."""
    known = _catalogues.get(clinic.id)
    if known is not None and known.version == clinic.updated_at:
        return known
    with sessions()() as session:
        # One session: a service's clinicians are the very objects of the clinicians' list.
        services = tuple(session.execute(_SERVICES, {"clinic_id": clinic.id}).scalars())
        providers = tuple(session.execute(_PROVIDERS, {"clinic_id": clinic.id}).scalars())
    words = frozenset(word for service in services for phrase in service_phrases(service)
                      for word in phrase.split())
    words |= {word for provider in providers for word in normalise_phrase(provider.name).split()}
    _catalogues[clinic.id] = catalogue = ClinicCatalogue(
        version=clinic.updated_at, services=services, providers=providers, words=words)
    return catalogue


@contextmanager
def thread_session(sender_id: str):
    """A transaction plus the thread this conversation belongs to."""
    with sessions()() as session, session.begin():
        thread = find_thread(session, sender_id=sender_id)
        if thread is None:
            raise LookupError(f"no thread for conversation {sender_id}")
        yield session, thread
