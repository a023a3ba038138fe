"""The adapter contract fixtures: one clinic, run against every installed kind of calendar.

`harness` is parametrised over the adapters; each harness knows how to build its adapter and
how to take a time "elsewhere" (another Ringback process for the built-in calendar, an event
typed straight into the calendar for CalDAV), and how to make its calendar unreachable.
A third-party adapter adds a harness here and the whole suite runs against it.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import caldav
import icalendar
import pytest
import requests
import yaml
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from booking.clinics.config import load_clinics
from booking.db import make_engine, session_factory
from booking.models import Base, Clinic, Contact, Patient
from booking.scheduling.base import SchedulingAdapter, Slot
from booking.scheduling.registry import get_adapter
from stack.local_services import free_port

# Monday 23 March 2026, 06:00 UTC (06:00 GMT); London's clocks go forward on Sunday 29 March.
NOW = datetime(2026, 3, 23, 6, 0, tzinfo=timezone.utc)

CONTRACT_CLINIC = {
    "slug": "contract",
    "name": "Contract Clinic",
    "timezone": "Europe/London",
    "country": "GB",
    "numbers": {"voice": "+441632960901", "sms": "+441632960901"},
    "opening_hours": {**{d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
                      "sat": ["09:00-12:00"]},
    "closures": [{"from": "2026-04-03", "to": "2026-04-06", "reason": "Easter"}],
    "services": [
        {"slug": "consult", "name": "Consultation", "duration_minutes": 30,
         "buffer_minutes": 10, "providers": ["dr-a", "dr-b"]},
        {"slug": "scan", "name": "Scan", "duration_minutes": 60, "providers": ["dr-a"]},
    ],
    "providers": [
        {"slug": "dr-a", "name": "Dr A"},
        {"slug": "dr-b", "name": "Dr B",
         "hours": {"mon": ["12:00-17:00"], "tue": ["12:00-17:00"], "wed": ["12:00-17:00"]}},
    ],
    "staff": [{"slug": "boss", "name": "Boss", "phone": "+447700900901"}],
    "settings": {"booking": {"min_lead_minutes": 60, "horizon_days": 21,
                             "slot_step_minutes": 15}},
}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Harness:
    """What the contract needs from one kind of calendar."""

    name: str
    adapter: SchedulingAdapter
    clinic: Clinic
    sessions: sessionmaker
    clock: Clock
    take_elsewhere: Callable[[Slot], None]
    make_unreachable: Callable[[], None]
    extra: dict = field(default_factory=dict)
    # Numbered, not random: two random numbers in 100,000 once met in one test (a unique phone).
    _phones: Iterator[int] = field(default_factory=itertools.count)

    def patient(self, first_name: str = "Ann", last_name: str = "Example",
                phone: str | None = None) -> Patient:
        """A new phone's owner, booking for themselves; `.contact` is loaded."""
        with self.sessions() as session:
            contact = Contact(clinic_id=self.clinic.id, first_name=first_name,
                              last_name=last_name,
                              phone=phone or f"+4477009{next(self._phones):05d}")
            patient = Patient(clinic_id=self.clinic.id, contact=contact, relation="self",
                              first_name=first_name, last_name=last_name)
            session.add(patient)
            session.commit()
            _ = patient.contact.phone
            return patient


# -- Radicale ------------------------------------------------------------------------------


@dataclass
class Radicale:
    url: str
    process: subprocess.Popen

    def client(self) -> caldav.DAVClient:
        return caldav.DAVClient(url=self.url, username="ringback", password="unused", timeout=10)

    def make_calendar(self, name: str) -> str:
        """Create a calendar and return its path on the server."""
        calendar = self.client().principal().make_calendar(name=name, cal_id=name)
        return str(calendar.url).removeprefix(self.url.rstrip("/"))


@pytest.fixture(scope="session")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Radicale]:
    """A real CalDAV server on loopback: random port, temporary storage, no auth."""
    storage = tmp_path_factory.mktemp("radicale")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "radicale",
         "--server-hosts", f"127.0.0.1:{port}",
         "--storage-filesystem-folder", str(storage / "collections"),
         "--auth-type", "none", "--rights-type", "owner_only",
         "--logging-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=open(storage / "radicale.log", "w"),
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(url, timeout=1)
            break
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log = (storage / "radicale.log").read_text()
                raise RuntimeError(f"Radicale did not start: {log}")
            time.sleep(0.1)
    yield Radicale(url=url, process=process)
    process.terminate()
    process.wait(timeout=10)


def put_event(calendar_url: str, *, start: datetime, end: datetime, summary: str = "Blocked",
              transparent: bool = False) -> str:
    """Type an event straight into a CalDAV calendar, as clinic staff would."""
    document = icalendar.Calendar()
    document.add("prodid", "-//Contract tests//EN")
    document.add("version", "2.0")
    event = icalendar.Event()
    uid = f"staff-{uuid.uuid4().hex}"
    event.add("uid", uid)
    event.add("dtstamp", datetime.now(timezone.utc))
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", summary)
    if transparent:
        event.add("transp", "TRANSPARENT")
    document.add_component(event)
    client = caldav.DAVClient(url=calendar_url, username="ringback", password="unused")
    client.calendar(url=calendar_url).save_event(document.to_ical().decode())
    return uid


# -- harnesses -----------------------------------------------------------------------------


def _load_clinic(sessions: sessionmaker, tmp_path: Path, config: dict) -> Clinic:
    path = tmp_path / "clinic.yml"
    path.write_text(yaml.safe_dump({"clinics": [config]}, sort_keys=False))
    with sessions() as session:
        (clinic,) = load_clinics(session, path)
        session.commit()
        return clinic


def _builtin(sessions, tmp_path, clock) -> Harness:
    clinic = _load_clinic(sessions, tmp_path, CONTRACT_CLINIC)
    adapter = get_adapter(clinic, sessions, clock=clock)
    # "Elsewhere" for the built-in calendar is another Ringback process with its own adapter.
    other_process = get_adapter(clinic, sessions, clock=clock)
    harness: Harness

    def take_elsewhere(slot: Slot) -> None:
        other_process.book(slot=slot, patient=harness.patient("Other", "Patient"),
                           service=slot.service, idempotency_key=f"elsewhere-{uuid.uuid4()}")

    def make_unreachable() -> None:
        adapter.calendar  # rules stay cached; the database itself goes away
        broken = create_engine(f"sqlite:///{tmp_path}/missing-dir/nowhere.db", future=True)
        adapter.session_factory = sessionmaker(bind=broken, future=True)

    harness = Harness("builtin", adapter, clinic, sessions, clock, take_elsewhere,
                      make_unreachable)
    return harness


def _caldav(sessions, tmp_path, clock, radicale: Radicale) -> Harness:
    suffix = uuid.uuid4().hex[:8]
    calendars = {"dr-a": radicale.make_calendar(f"dr-a-{suffix}"),
                 "dr-b": radicale.make_calendar(f"dr-b-{suffix}")}
    config = dict(CONTRACT_CLINIC, scheduling={
        "adapter": "caldav",
        "config": {"url": radicale.url, "username": "ringback", "password": "unused",
                   "calendars": calendars, "timeout_seconds": 5}})
    clinic = _load_clinic(sessions, tmp_path, config)
    adapter = get_adapter(clinic, sessions, clock=clock)

    def take_elsewhere(slot: Slot) -> None:
        put_event(radicale.url.rstrip("/") + calendars[slot.provider], start=slot.starts_at,
                  end=slot.ends_at, summary="Walk-in booked at the desk")

    def make_unreachable() -> None:
        adapter.close()
        adapter.config["url"] = f"http://127.0.0.1:{free_port()}/"
        adapter.config["timeout_seconds"] = 2

    return Harness("caldav", adapter, clinic, sessions, clock, take_elsewhere,
                   make_unreachable,
                   extra={"calendars": {slug: radicale.url.rstrip("/") + path
                                        for slug, path in calendars.items()}})


ADAPTERS = ["builtin", "caldav"]


@pytest.fixture(params=ADAPTERS)
def harness(request, tmp_path: Path) -> Iterator[Harness]:
    engine = make_engine(f"sqlite:///{tmp_path / 'contract.db'}")
    Base.metadata.create_all(engine)
    sessions = session_factory(engine)
    clock = Clock(NOW)
    if request.param == "builtin":
        built = _builtin(sessions, tmp_path, clock)
    else:
        built = _caldav(sessions, tmp_path, clock, request.getfixturevalue("radicale"))
    yield built
    built.adapter.close()
    engine.dispose()


def two_weeks() -> tuple[datetime, datetime]:
    return NOW, NOW + timedelta(days=14)
