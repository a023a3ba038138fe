"""Fixtures for the booking core: a real SQLite file per test, clinics loaded from YAML."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from booking.clinics.config import load_clinics
from booking.db import make_engine, session_factory
from booking.models import Base, Clinic, Contact

EXAMPLE_FILE = Path(__file__).resolve().parents[2] / "clinics" / "example.yml"

# A clinic small enough to reason about: one provider, hours Mon-Fri 09:00-17:00 (London).
MINIMAL_CLINIC = {
    "slug": "mini",
    "name": "Mini Clinic",
    "timezone": "Europe/London",
    "country": "GB",
    "numbers": {"voice": "+441632960501", "sms": "+441632960501"},
    "opening_hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
    "services": [
        {"slug": "consult", "name": "Consultation", "synonyms": ["consultation", "chat"],
         "duration_minutes": 30, "buffer_minutes": 10, "providers": ["dr-a"]},
    ],
    "providers": [{"slug": "dr-a", "name": "Dr A"}],
    "staff": [{"slug": "boss", "name": "Boss", "phone": "+447700900501"}],
    "settings": {"booking": {"min_lead_minutes": 0, "horizon_days": 60,
                             "slot_step_minutes": 15}},
}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


class FixedClock:
    """The time our code reads; tests move it instead of sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'booking.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker:
    return session_factory(engine)


@pytest.fixture
def write_clinics(tmp_path: Path) -> Callable[..., Path]:
    """Write clinic dicts to a YAML file and return its path."""
    counter = iter(range(1000))

    def write(*clinics: dict, name: str | None = None) -> Path:
        path = tmp_path / (name or f"clinics-{next(counter)}.yml")
        path.write_text(yaml.safe_dump({"clinics": list(clinics)}, sort_keys=False))
        return path

    return write


@pytest.fixture
def minimal() -> dict:
    return copy.deepcopy(MINIMAL_CLINIC)


@pytest.fixture
def load_clinic(sessions: sessionmaker, write_clinics) -> Callable[[dict], Clinic]:
    def load(config: dict) -> Clinic:
        with sessions() as session:
            (clinic,) = load_clinics(session, write_clinics(config))
            session.commit()
            return clinic

    return load


@pytest.fixture
def example_clinics(sessions: sessionmaker) -> dict[str, Clinic]:
    with sessions() as session:
        clinics = load_clinics(session, EXAMPLE_FILE)
        session.commit()
        for clinic in clinics:  # loaded for use after the session closes
            clinic.opening_hours, clinic.closures, clinic.services, clinic.providers
        return {clinic.slug: clinic for clinic in clinics}


@pytest.fixture
def make_contact(sessions: sessionmaker) -> Callable[..., Contact]:
    def make(clinic: Clinic, phone: str = "+447700900900", first_name: str = "Ann",
             last_name: str = "Example") -> Contact:
        with sessions() as session:
            contact = Contact(clinic_id=clinic.id, phone=phone, first_name=first_name,
                              last_name=last_name)
            session.add(contact)
            session.commit()
            return contact

    return make
