"""No double booking under concurrency, enforced by the database (SlotClaim primary key).

Every attempt runs in its own thread or process with its own engine and connection, all
released together by a barrier, against PostgreSQL on this machine and against SQLite.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from sqlalchemy import func, select
from sqlalchemy.pool import NullPool

from booking.clinics.config import load_clinics
from booking.db import make_engine, session_factory
from booking.migrate import upgrade
from booking.models import Appointment, Clinic, Contact, Patient, SlotClaim
from booking.scheduling.base import CalendarUnavailable, Slot, SlotUnavailable
from booking.scheduling.registry import get_adapter
from tests.booking.conftest import EXAMPLE_FILE
from tests.postgres import ADMIN, throwaway_database

ATTEMPTS = 24
NOW = datetime(2026, 3, 23, 6, 0, tzinfo=timezone.utc)  # Monday, before opening


def _postgres_available() -> bool:
    try:
        psycopg2.connect(connect_timeout=3, **ADMIN).close()
        return True
    except psycopg2.OperationalError:
        return False


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not _postgres_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    with throwaway_database("ringback_test") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'race.db'}"


def _prepare(url: str) -> tuple[int, list[int]]:
    """Migrate, load the example clinics, make one contact per attempt."""
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        load_clinics(session, EXAMPLE_FILE)
        clinic = session.execute(select(Clinic).where(Clinic.slug == "riverside")).scalar_one()
        contacts = [Contact(clinic_id=clinic.id, phone=f"+4477009{index:05d}",
                            first_name=f"Racer{index}") for index in range(ATTEMPTS)]
        session.add_all(contacts)
        session.commit()
        ids = clinic.id, [contact.id for contact in contacts]
    engine.dispose()
    return ids


def _own_adapter(url: str, clinic_id: int):
    """A fresh engine with one connection, as a separate process would have."""
    engine = make_engine(url)
    # No pooling: each attempt holds exactly one connection of its own.
    engine.pool = NullPool(engine.pool._creator)
    sessions = session_factory(engine)
    with sessions() as session:
        clinic = session.get(Clinic, clinic_id)
        adapter = get_adapter(clinic, sessions, clock=lambda: NOW)
    adapter.calendar  # load the rules before the race starts
    return engine, adapter


def _attempt(url: str, clinic_id: int, contact_id: int, slot: dict, key: str,
             barrier) -> str:
    engine, adapter = _own_adapter(url, clinic_id)
    try:
        with session_factory(engine)() as session:
            contact = session.get(Contact, contact_id)
        patient = Patient(clinic_id=clinic_id, contact_id=contact.id, relation="self",
                          first_name=contact.first_name)
        barrier.wait(timeout=60)
        try:
            appointment = adapter.book(slot=Slot.from_dict(slot), patient=patient,
                                       service=slot["service"], idempotency_key=key)
            return f"booked:{appointment.id}"
        except SlotUnavailable:
            return "unavailable"
        except CalendarUnavailable as exc:  # must not happen; reported, not hidden
            return f"calendar-unavailable:{exc}"
    finally:
        engine.dispose()


def _slot(start_minutes: int = 0) -> dict:
    # Wednesday 25 March 2026, 10:00 GMT, Dr Tom Hughes, a check-up.
    starts_at = datetime(2026, 3, 25, 10, 0, tzinfo=timezone.utc) + timedelta(
        minutes=start_minutes)
    return Slot(starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30),
                provider="dr-tom-hughes", service="check-up").to_dict()


def _race_in_threads(url: str, make_args: Callable[[int], tuple]) -> list[str]:
    clinic_id, contact_ids = _prepare(url)
    barrier = threading.Barrier(ATTEMPTS)
    results: list[str] = [""] * ATTEMPTS

    def run(index: int) -> None:
        slot, key = make_args(index)
        try:
            results[index] = _attempt(url, clinic_id, contact_ids[index], slot, key, barrier)
        except Exception as exc:  # surfaced in the assertion below
            results[index] = f"error:{exc!r}"

    threads = [threading.Thread(target=run, args=(index,)) for index in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _outcome(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        appointments = session.scalar(select(func.count()).select_from(Appointment))
        claims = session.scalar(select(func.count()).select_from(SlotClaim))
    engine.dispose()
    return appointments, claims


def _assert_exactly_one(results: list[str], url: str) -> None:
    kinds = Counter(result.split(":")[0] for result in results)
    assert kinds == {"booked": 1, "unavailable": ATTEMPTS - 1}, results
    # One 30-minute check-up plus its 10-minute buffer: eight 5-minute cells.
    assert _outcome(url) == (1, 8)


@pytest.mark.postgres
def test_postgres_threads_racing_for_one_slot_make_one_appointment(postgres_url):
    results = _race_in_threads(postgres_url, lambda i: (_slot(), f"race-{i}"))
    _assert_exactly_one(results, postgres_url)


@pytest.mark.postgres
def test_postgres_overlapping_slots_racing_make_one_appointment(postgres_url):
    # 10:00, 10:05 ... 10:25 all overlap the others' time or buffer for the same doctor.
    results = _race_in_threads(postgres_url, lambda i: (_slot(15 * (i % 2)), f"race-{i}"))
    _assert_exactly_one(results, postgres_url)


@pytest.mark.postgres
def test_postgres_same_idempotency_key_racing_returns_one_appointment(postgres_url):
    results = _race_in_threads(postgres_url, lambda i: (_slot(), "one-key"))
    assert len(set(results)) == 1 and results[0].startswith("booked:"), results
    assert _outcome(postgres_url) == (1, 8)


def _process_attempt(args: tuple) -> str:
    url, clinic_id, contact_id, slot, key, barrier = args
    return _attempt(url, clinic_id, contact_id, slot, key, barrier)


@pytest.mark.postgres
def test_postgres_processes_racing_for_one_slot_make_one_appointment(postgres_url):
    clinic_id, contact_ids = _prepare(postgres_url)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(ATTEMPTS)
        with context.Pool(ATTEMPTS) as pool:
            results = pool.map(_process_attempt, [
                (postgres_url, clinic_id, contact_ids[i], _slot(), f"proc-{i}", barrier)
                for i in range(ATTEMPTS)])
    _assert_exactly_one(results, postgres_url)


def test_sqlite_threads_racing_for_one_slot_make_one_appointment(sqlite_url):
    results = _race_in_threads(sqlite_url, lambda i: (_slot(), f"race-{i}"))
    _assert_exactly_one(results, sqlite_url)


def test_sqlite_overlapping_slots_racing_make_one_appointment(sqlite_url):
    results = _race_in_threads(sqlite_url, lambda i: (_slot(15 * (i % 2)), f"race-{i}"))
    _assert_exactly_one(results, sqlite_url)
