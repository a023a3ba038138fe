"""Console tests run against the real stack: escalations are made by texting the clinic."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from booking.clinics.config import load_clinics_file
from booking.db import get_engine
from booking.migrate import upgrade
from booking.models import Contact, Escalation, Message, Thread
from tests.booking.test_concurrency import postgres_url  # noqa: F401 - a fixture
from tests.channels.conftest import EXAMPLE_FILE
from tests.console.dashboard_history import SeededPeriod, seed
from tests.console.in_process import Clock, Console, csrf_of, gateway

CLINIC_NUMBER = "+441632960001"
URGENT = "my lip is swollen and going white after filler"
# Patients of the console tests: +4477009004xx, a range no other test uses.
_patients = itertools.count(430)


def new_patient() -> str:
    return f"+447700900{next(_patients):03d}"


@pytest.fixture
def db(stack) -> Iterator[Session]:
    engine = create_engine(stack.database_url, future=True)
    with Session(engine) as session:
        yield session
    engine.dispose()


@pytest.fixture(scope="session")
def seeded(stack) -> SeededPeriod:
    """Riverside with synthetic history for the dashboard tests (see dashboard_history)."""
    return seed(stack.database_url)


@pytest.fixture(params=["sqlite", "postgres"])
def console(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Console]:
    """The gateway app in this process on a fresh database with the example clinics."""
    database_url = (f"sqlite:///{tmp_path / 'console.db'}" if request.param == "sqlite"
                    else request.getfixturevalue("postgres_url"))
    upgrade(database_url)
    load_clinics_file(database_url=database_url, path=EXAMPLE_FILE)
    clock = Clock()
    with gateway(database_url, clock) as url:
        yield Console(url=url, database_url=database_url, clock=clock)
    get_engine(database_url).dispose()  # before PostgreSQL drops the database


@dataclass
class Staff:
    """A signed-in console session over plain HTTP."""

    http: httpx.Client
    csrf: str

    def post(self, path: str, data: dict | None = None, **kwargs) -> httpx.Response:
        return self.http.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)


def sign_in(gateway: str, username: str, password: str) -> Staff:
    http = httpx.Client(base_url=gateway, timeout=30)
    form = http.get("/console/login")
    signed_in = http.post("/console/login", data={
        "username": username, "password": password, "csrf_token": csrf_of(form.text)})
    assert signed_in.status_code == 303, signed_in.text
    page = http.get("/console/escalations")
    assert page.status_code == 200
    return Staff(http=http, csrf=csrf_of(page.text))


@pytest.fixture
def riverside_staff(stack) -> Iterator[Staff]:
    staff = sign_in(stack.gateway, "riverside-admin", "riverside-demo")
    yield staff
    staff.http.close()


@pytest.fixture
def northside_staff(stack) -> Iterator[Staff]:
    staff = sign_in(stack.gateway, "northside-admin", "northside-demo")
    yield staff
    staff.http.close()


def escalation_of(db: Session, patient: str, *, timeout: float = 30.0) -> Escalation:
    deadline = time.monotonic() + timeout
    while True:
        db.expire_all()
        found = db.execute(
            select(Escalation).join(Contact, Escalation.contact_id == Contact.id)
            .where(Contact.phone == patient).order_by(Escalation.id.desc())
        ).scalars().first()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"no escalation for {patient}")
        time.sleep(0.1)


def urgent_escalation(stack, db: Session, patient: str) -> Escalation:
    """Ring the clinic, miss the call, then text an emergency: the real path end to end."""
    stack.phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    stack.phone.wait_for(patient, count=1)
    safety = stack.phone.reply_and_wait(sender=patient, clinic_number=CLINIC_NUMBER,
                                        body=URGENT)
    assert "999" in safety
    return escalation_of(db, patient)


def thread_of(db: Session, patient: str) -> Thread:
    db.expire_all()
    return db.execute(select(Thread).join(Contact).where(Contact.phone == patient)).scalar_one()


def rasa_paused(stack, sender_id: str) -> bool:
    # Rasa does not unquote the id in its routes: ':' and '+' go as they are.
    response = httpx.get(stack.rasa_api(f"/conversations/{quote(sender_id, safe=':+')}/tracker"),
                         timeout=30)
    response.raise_for_status()
    return response.json()["paused"]


def bot_answer(stack, db: Session, patient: str, body: str, *, timeout: float = 60.0) -> str:
    """Text the clinic, then wait for the bot's own reply in the thread and on the phone."""
    thread = thread_of(db, patient)
    newest = db.execute(select(Message.id).where(Message.thread_id == thread.id)
                        .order_by(Message.id.desc())).scalars().first() or 0
    stack.phone.text(sender=patient, clinic_number=CLINIC_NUMBER, body=body)
    deadline = time.monotonic() + timeout
    while True:
        db.expire_all()
        reply = db.execute(select(Message).where(
            Message.thread_id == thread.id, Message.id > newest, Message.author == "bot")
            .order_by(Message.id)).scalars().first()
        if reply is not None:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bot did not answer {patient}")
        time.sleep(0.1)
    stack.phone.wait_for(patient, count=1, timeout=timeout,
                         where=lambda message: message["body"] == reply.body)
    return reply.body
