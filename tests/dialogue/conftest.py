"""A patient who rings and texts the real stack, and what the clinic's database holds.

Conversation tests go through the simulator's signed Twilio webhooks to the real Rasa server,
action server and database. Each test uses its own phone number (+4477009003xx, or
+13125550100..197 for Northside), so the one stack of the test session is shared without
conversations mixing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from booking.clinics.lookups import find_clinic_by_slug
from booking.dialogue.family import owner_of
from booking.messaging.conversations import get_or_create_contact, sender_id_for
from booking.models import (
    Appointment,
    AppointmentStatus,
    Contact,
    Escalation,
    FunnelEvent,
    InboxItem,
    InboxState,
    Thread,
)
from booking.scheduling.base import Slot
from booking.scheduling.registry import get_adapter

CLINICS = {
    # slug: (the number patients ring and text, timezone)
    "riverside": ("+441632960001", "Europe/London"),
    "northside": ("+12025550101", "America/New_York"),
}
_numbers = itertools.count(300)
EXAMPLE_CLINICS = Path(__file__).resolve().parents[2] / "clinics" / "example.yml"
# A text from a staff member's phone is a staff reply (ACK ...), never a patient's message.
STAFF_PHONES = {staff["phone"] for clinic in yaml.safe_load(EXAMPLE_CLINICS.read_text())["clinics"]
                for staff in clinic.get("staff", []) if staff.get("phone")}


def new_number(clinic: str = "riverside") -> str:
    """A UK number, or for Northside a US one (NANP's fictional 555-01xx in Chicago): a clinic
    texts back callers of its own country only."""
    while True:
        number = next(_numbers)
        assert number < 398, "the dialogue tests own +447700900300..399 (398, 399: the diary)"
        phone = (f"+447700900{number:03d}" if CLINICS[clinic][1] == "Europe/London"
                 else f"+13125550{number - 200:03d}")
        if phone not in STAFF_PHONES:
            return phone


@dataclass
class Patient:
    """One phone texting one clinic through the Twilio simulator."""

    stack: object
    number: str
    clinic: str = "riverside"
    sessions: sessionmaker | None = field(default=None, repr=False)

    @property
    def clinic_number(self) -> str:
        return CLINICS[self.clinic][0]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(CLINICS[self.clinic][1])

    @property
    def sender_id(self) -> str:
        return sender_id_for(clinic_slug=self.clinic, phone=self.number)

    def received(self) -> list[str]:
        return [m["body"] for m in self.stack.phone.sent_to(self.number)]

    def ring(self) -> str:
        """A missed call: returns the text-back once the dialogue has started the thread."""
        before = len(self.received())
        started = self._missed_call_starts()
        self.stack.phone.ring(caller=self.number, clinic_number=self.clinic_number)
        text_back = self.stack.phone.wait_for(self.number, count=before + 1)[before]["body"]
        # The gateway texts back, then tells Rasa; wait for Rasa so a quick reply is not
        # overtaken by the missed-call event that resets the conversation.
        deadline = time.monotonic() + 30
        while self._missed_call_starts() <= started:
            assert time.monotonic() < deadline, "the dialogue never heard of the missed call"
            time.sleep(0.05)
        return text_back

    def says(self, body: str, *, replies: int = 1) -> str:
        """Text the clinic; return the bot's reply (several joined by a blank line)."""
        before = len(self.received())
        self.stack.phone.text(sender=self.number, clinic_number=self.clinic_number, body=body)
        # The gateway stores the replies once Rasa has answered, and Rasa answers once the
        # turn is in its tracker: a reply sent means the turn is over.
        sent = self.stack.phone.wait_for(self.number, count=before + replies)
        return "\n\n".join(m["body"] for m in sent[before:before + replies])

    # -- the Rasa tracker, read and written through Rasa's HTTP API --------------------------

    def tracker(self) -> dict:
        response = httpx.get(self.stack.rasa_api(f"/conversations/{self.sender_id}/tracker"),
                             timeout=10)
        response.raise_for_status()
        return response.json()

    def slot(self, name: str):
        return self.tracker()["slots"].get(name)

    def offered(self) -> list[Slot]:
        return [Slot.from_dict(s) for s in self.slot("offered_slots") or []]

    def _missed_call_starts(self) -> int:
        response = httpx.get(self.stack.rasa_api(f"/conversations/{self.sender_id}/tracker"),
                             timeout=10)
        if response.status_code != 200:
            return 0
        return sum(1 for e in response.json().get("events", [])
                   if e.get("event") == "action" and e.get("name") ==
                   "action_start_from_missed_call")

    # -- what the clinic's database holds ------------------------------------------------

    def contact(self) -> Contact | None:
        with self.sessions() as session:
            return session.execute(
                select(Contact).where(Contact.phone == self.number)).scalars().first()

    def appointments(self, status: AppointmentStatus | None = None) -> list[Appointment]:
        with self.sessions() as session:
            query = (select(Appointment).join(Contact, Appointment.contact_id == Contact.id)
                     .where(Contact.phone == self.number).order_by(Appointment.id))
            if status is not None:
                query = query.where(Appointment.status == status)
            rows = session.execute(query).scalars().all()
            for row in rows:  # loaded for use after the session closes
                _ = row.service, row.provider
            return list(rows)

    def inbox_states(self) -> list[InboxState]:
        """What became of each of this patient's messages on its way to the dialogue."""
        with self.sessions() as session:
            return list(session.execute(
                select(InboxItem.state).join(Thread, Thread.id == InboxItem.thread_id)
                .where(Thread.sender_id == self.sender_id, InboxItem.intent.is_(None))
                .order_by(InboxItem.id)).scalars())

    def escalations(self) -> list[Escalation]:
        with self.sessions() as session:
            return list(session.execute(
                select(Escalation).join(Contact, Escalation.contact_id == Contact.id)
                .where(Contact.phone == self.number).order_by(Escalation.id)).scalars())

    def funnel(self) -> list[str]:
        with self.sessions() as session:
            return list(session.execute(
                select(FunnelEvent.kind).join(Contact, FunnelEvent.contact_id == Contact.id)
                .where(Contact.phone == self.number).order_by(FunnelEvent.id)).scalars())


@pytest.fixture(scope="session")
def booking_sessions(stack) -> Iterator[sessionmaker]:
    engine = create_engine(stack.database_url, future=True)
    yield sessionmaker(bind=engine, future=True, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def patient(stack, booking_sessions) -> Callable[..., Patient]:
    """patient() or patient(clinic="northside"): a new phone number each time."""

    def make(clinic: str = "riverside") -> Patient:
        return Patient(stack=stack, number=new_number(clinic), clinic=clinic,
                       sessions=booking_sessions)

    return make


@dataclass
class Diary:
    """The clinic's calendar as staff or another patient would change it, outside the chat."""

    sessions: sessionmaker

    def adapter(self, clinic: str):
        with self.sessions() as session:
            found = find_clinic_by_slug(session, clinic)
            return get_adapter(found, self.sessions)

    def book(self, clinic: str, *, phone: str, slot: Slot) -> Appointment:
        """Book `slot` for the contact with this phone (created when new)."""
        with self.sessions() as session, session.begin():
            found = find_clinic_by_slug(session, clinic)
            contact = get_or_create_contact(session, clinic=found, phone=phone)
            patient = owner_of(session, contact)
        return self.adapter(clinic).book(slot=slot, patient=patient, service=slot.service,
                                         idempotency_key=f"diary-{phone}-{slot.starts_at}")

    def book_soonest(self, clinic: str, *, phone: str, service: str,
                     after: timedelta = timedelta(days=2)) -> Appointment:
        adapter = self.adapter(clinic)
        start = datetime.now(timezone.utc) + after
        slot = adapter.find_free_slots(service=service, window_start=start,
                                       window_end=start + timedelta(days=21), limit=1)[0]
        return self.book(clinic, phone=phone, slot=slot)

    def appointment_starting_in(self, clinic: str, *, phone: str, service: str, hours: float,
                                booked_ago: timedelta = timedelta(days=7)) -> Appointment:
        """An appointment soon, whatever the clock says now: written as staff would key it in,
        `booked_ago` (a change just after booking has no late-notice terms)."""
        with self.sessions() as session, session.begin():
            found = find_clinic_by_slug(session, clinic)
            contact = get_or_create_contact(session, clinic=found, phone=phone)
            chosen = next(s for s in found.services if s.slug == service)
            starts = (datetime.now(timezone.utc) + timedelta(hours=hours)).replace(
                second=0, microsecond=0)
            starts -= timedelta(minutes=starts.minute % 5)
            appointment = Appointment(
                clinic_id=found.id, contact_id=contact.id, service_id=chosen.id,
                starts_at=starts, ends_at=starts + timedelta(minutes=chosen.duration_minutes),
                status=AppointmentStatus.booked, source="staff",
                idempotency_key=f"staff-{phone}-{starts.isoformat()}",
                created_at=datetime.now(timezone.utc) - booked_ago)
            session.add(appointment)
            session.flush()
            return appointment


@contextmanager
def clinic_requiring(sessions: sessionmaker, slug: str, fields: list[str]) -> Iterator[None]:
    """The clinic asks for these patient details while the block runs (settings, no restart)."""
    with sessions() as session, session.begin():
        clinic = find_clinic_by_slug(session, slug)
        original = dict(clinic.settings)
        clinic.settings = {**original, "required_patient_fields": fields}
    try:
        yield
    finally:
        with sessions() as session, session.begin():
            find_clinic_by_slug(session, slug).settings = original


@pytest.fixture
def diary(booking_sessions) -> Diary:
    return Diary(booking_sessions)


@pytest.fixture
def db(booking_sessions) -> Iterator[Session]:
    with booking_sessions() as session:
        yield session


# -- for unit tests of the booking rules: a real SQLite diary, no stack ----------------------


@dataclass
class FixedClock:
    """The time the adapter reads; tests set it instead of waiting for a DST weekend."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def diary_clinics(tmp_path) -> Iterator[tuple[sessionmaker, dict]]:
    """The example clinics loaded into a fresh SQLite database: (sessions, {slug: clinic})."""
    from booking.clinics.config import load_clinics
    from booking.db import make_engine, session_factory
    from booking.models import Base

    engine = make_engine(f"sqlite:///{tmp_path / 'diary.db'}")
    Base.metadata.create_all(engine)
    sessions = session_factory(engine)
    with sessions() as session:
        clinics = load_clinics(session, EXAMPLE_CLINICS)
        session.commit()
        for clinic in clinics:  # loaded for use after the session closes
            _ = clinic.opening_hours, clinic.closures, clinic.providers, clinic.settings
            for service in clinic.services:
                _ = service.providers
    yield sessions, {clinic.slug: clinic for clinic in clinics}
    engine.dispose()
