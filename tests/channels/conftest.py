"""Fixtures for the channel tests: a real SQLite database with clinics, a real Twilio fake on a
local port, and clinics of our own loaded into the shared stack so open/closed is predictable.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from booking.clinics.config import load_clinics, load_clinics_file
from booking.db import make_engine, session_factory
from booking.messaging.twilio_signature import SIGNATURE_HEADER, sign
from booking.models import (
    Base,
    Clinic,
    Contact,
    Direction,
    Message,
    MissedCall,
    MissedCallStatus,
)
from simulator.client import SimulatedPhone
from simulator.twilio_fake import DEFAULT_CONTENT, FakeConfig, create_app
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, free_port, served_in_thread

EXAMPLE_FILE = Path(__file__).resolve().parents[2] / "clinics" / "example.yml"
CONTENT_SID = "HX00000000000000000000000000000001"
CONTENT_BODY = DEFAULT_CONTENT[CONTENT_SID]  # as approved, and as the fake renders it

# Clinics only these tests use, so their numbers, contacts and opening hours are ours alone.
OPEN_NUMBER, OPEN_WHATSAPP, OPEN_DESK = "+441632960701", "+441632960702", "+441632960710"
CLOSED_NUMBER = "+441632960801"
SCREENED_NUMBER, SCREENED_DESK = "+441632960901", "+441632960910"
# Closed for good, texting back by WhatsApp: the approved "closed" template (issue 14).
SHUT_NUMBER, SHUT_WHATSAPP = "+441632960951", "+441632960952"
CLOSED_CONTENT_SID = "HX00000000000000000000000000000002"
STAFF_PHONE = "+447700900771"

_SERVICE = {"slug": "check-up", "name": "Check-up", "synonyms": ["check up", "checkup"],
            "duration_minutes": 30, "providers": ["dr-a"]}
_PROVIDER = {"slug": "dr-a", "name": "Dr A"}
_ALL_DAY = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}

CHANNEL_CLINICS = [
    {
        "slug": "allday", "name": "Allday Dental", "timezone": "Europe/London",
        "country": "GB",
        "numbers": {"voice": OPEN_NUMBER, "sms": OPEN_NUMBER, "whatsapp": OPEN_WHATSAPP,
                    "front_desk": OPEN_DESK},
        "ring_timeout_seconds": 30,  # longer than voicemail allows: the gateway clamps it
        "channel_policy": "whatsapp_then_sms",
        "address": "1 Test Street, Testville",
        "opening_hours": _ALL_DAY,
        "services": [_SERVICE], "providers": [_PROVIDER],
        "staff": [{"slug": "desk", "name": "Desk", "phone": STAFF_PHONE}],
        "settings": {"whatsapp": {"text_back_content_sid": CONTENT_SID,
                                  "text_back_body": CONTENT_BODY}},
    },
    {
        "slug": "nightowl", "name": "Nightowl Physio", "timezone": "Europe/London",
        "country": "GB",
        "numbers": {"voice": CLOSED_NUMBER, "sms": CLOSED_NUMBER, "front_desk": OPEN_DESK},
        "opening_hours": {"mon": ["09:00-17:00"]},
        # Shut for good: every call is an after-hours call, whatever the clock says.
        "closures": [{"from": "2000-01-01", "to": "2099-12-31", "reason": "tests"}],
        "out_of_hours_info": "We're closed right now. Reply here and we'll pick it up first thing.",
        "services": [_SERVICE], "providers": [_PROVIDER],
        # Someone at Nightowl speaks Spanish: such messages go to staff (issue 14).
        "settings": {"other_language": {"hand_over": True}},
    },
    {
        "slug": "screened", "name": "Screened Clinic", "timezone": "Europe/London",
        "country": "GB",
        "numbers": {"voice": SCREENED_NUMBER, "sms": SCREENED_NUMBER,
                    "front_desk": SCREENED_DESK},
        "ring_timeout_seconds": 25, "call_screening": True,
        "opening_hours": _ALL_DAY,
        "services": [_SERVICE], "providers": [_PROVIDER],
    },
    {
        "slug": "shut", "name": "Shut Smiles", "timezone": "Europe/London", "country": "GB",
        "numbers": {"voice": SHUT_NUMBER, "sms": SHUT_NUMBER, "whatsapp": SHUT_WHATSAPP,
                    "front_desk": OPEN_DESK},
        "channel_policy": "whatsapp_then_sms",
        # Closed from yesterday for ten days, whatever the clock says: it opens again later.
        "opening_hours": _ALL_DAY,
        "closures": [{"from": (date.today() - timedelta(days=1)).isoformat(),
                      "to": (date.today() + timedelta(days=10)).isoformat(), "reason": "tests"}],
        "services": [_SERVICE], "providers": [_PROVIDER],
        "settings": {"whatsapp": {
            "text_back_content_sid": CONTENT_SID, "text_back_body": CONTENT_BODY,
            "text_back_closed_content_sid": CLOSED_CONTENT_SID,
            "text_back_closed_body": DEFAULT_CONTENT[CLOSED_CONTENT_SID]}},
    },
]

_patients = itertools.count(0)


def new_patient() -> str:
    """A fresh caller for one test (the clinics above are ours, so 1000 numbers suffice)."""
    return f"+447700900{next(_patients) % 1000:03d}"


_us_patients = itertools.count(0)


def new_us_patient() -> str:
    """A fresh caller from the US (NANP's fictional 555-01xx in Boston), for Northside: a
    clinic texts back callers of its own country only (booking.calls.destinations)."""
    return f"+16175550{100 + next(_us_patients) % 100:03d}"


def write_clinics(path: Path, clinics: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"clinics": clinics}, sort_keys=False))
    return path


# -- unit level: a database and a fake ------------------------------------------------------


# One database per test module: tests keep apart by using their own patients' numbers.
@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'channels.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def sessions(engine: Engine) -> sessionmaker:
    return session_factory(engine)


@pytest.fixture(scope="module")
def clinics(sessions: sessionmaker, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Clinic]:
    """The example clinics plus ours, loaded into the module's database."""
    path = write_clinics(tmp_path_factory.mktemp("clinics") / "ours.yml", CHANNEL_CLINICS)
    with sessions() as session:
        loaded = load_clinics(session, EXAMPLE_FILE)
        loaded += load_clinics(session, path)
        session.commit()
        for clinic in loaded:  # loaded now, for use after the session closes
            _ = (clinic.opening_hours, clinic.closures, clinic.staff)
        return {clinic.slug: clinic for clinic in loaded}


@dataclass
class RunningFake:
    url: str
    phone: SimulatedPhone
    http: httpx.Client

    def outbound(self, number: str) -> list[dict]:
        return self.phone.sent_to(number)


@pytest.fixture
def fake_twilio() -> Iterator[RunningFake]:
    """The Twilio fake as a real HTTP server on a free port, in a thread of this process."""
    port = free_port()
    config = FakeConfig(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN,
                        gateway_url="http://127.0.0.1:9",
                        auto_status_callbacks=True)
    url = f"http://127.0.0.1:{port}"
    with served_in_thread(create_app(config), port, name="the Twilio fake", lifespan="off",
                          timeout=10):
        running = RunningFake(url=url, phone=SimulatedPhone(url),
                              http=httpx.Client(base_url=url))
        yield running
        running.phone.close()
        running.http.close()


# -- stack level: our clinics in the shared stack ---------------------------------------------


@pytest.fixture(scope="session")
def channel_clinics(stack, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = write_clinics(tmp_path_factory.mktemp("clinics") / "channels.yml", CHANNEL_CLINICS)
    return load_clinics_file(database_url=stack.database_url, path=path)


@pytest.fixture
def db(stack) -> Iterator[Session]:
    engine = create_engine(stack.database_url, future=True)
    with Session(engine) as session:
        yield session
    engine.dispose()


def outbound_rows(db: Session, phone: str) -> list[Message]:
    """Everything stored to send to this phone, by SMS or WhatsApp, oldest first."""
    db.expire_all()
    return list(db.execute(select(Message).where(
        Message.direction == Direction.outbound,
        Message.to_number.in_([phone, f"whatsapp:{phone}"])).order_by(Message.id)).scalars())


def call_statuses(db: Session, phone: str) -> list[MissedCallStatus]:
    """What became of each missed call from this phone, oldest first."""
    db.expire_all()
    return list(db.execute(select(MissedCall.status).join(Contact)
                           .where(Contact.phone == phone).order_by(MissedCall.id)).scalars())


def count(session: Session, model, *where) -> int:
    session.expire_all()
    return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


# Deadlines, not waits: a condition met early returns at once. They are generous because
# `make test-stress` keeps every core busy, and speed is the benchmarks' business.
def wait_until(condition: Callable[[], object], *, timeout: float = 60.0,
               message: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not met after {timeout}s")
        time.sleep(0.1)


def twilio_post(url: str, params: dict[str, str], *, signature: str | None = "sign",
                signed_url: str | None = None, **kwargs) -> httpx.Response:
    """POST a webhook the way Twilio does: form-encoded, signed over the exact URL.

    `signature=None` leaves the header out; any other string than "sign" is sent as is.
    """
    headers = dict(kwargs.pop("headers", {}))
    if signature == "sign":
        signature = sign(auth_token=AUTH_TOKEN, url=signed_url or url, params=params)
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return httpx.post(url, data=params, headers=headers, timeout=30, **kwargs)
