"""Dates of birth and emails are sealed at rest: unreadable in the raw database, readable
through the app; existing values are sealed by the migration; keys rotate with a command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from alembic import command
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy import create_engine, select, text

from booking.clinics.config import load_clinics_file
from booking.db import session_factory
from booking.field_encryption import FieldKeyError, KeyRing
from booking.migrate import alembic_config, upgrade
from booking.models import Clinic, Contact, Patient
from booking.settings import DEVELOPMENT_FIELD_KEYS, Settings
from tests.escalation.conftest import EXAMPLE_FILE
from tests.postgres import throwaway_database

RINGBACK = str(Path(sys.executable).parent / "ringback")
PHONE = "+447700900871"


def _raw(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url, future=True)
    with engine.connect() as connection:
        rows = connection.execute(text(sql)).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def _ringback(url: str, *args: str, keys: str = DEVELOPMENT_FIELD_KEYS):
    return subprocess.run([RINGBACK, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DATABASE_URL": url,
                               "FIELD_ENCRYPTION_KEYS": keys})


def _patient_on_file(url: str) -> None:
    load_clinics_file(database_url=url, path=EXAMPLE_FILE)
    engine = create_engine(url, future=True)
    with session_factory(engine)() as session, session.begin():
        clinic = session.execute(select(Clinic).where(Clinic.slug == "riverside")).scalar_one()
        contact = Contact(clinic_id=clinic.id, phone=PHONE, first_name="Ida",
                          date_of_birth=date(1985, 3, 14), email="ida.may@example.org")
        session.add(contact)
        session.flush()
        session.add(Patient(clinic_id=clinic.id, contact_id=contact.id, relation="self",
                            first_name="Ida", date_of_birth=date(1985, 3, 14)))
    engine.dispose()


@pytest.mark.postgres
def test_sealed_fields_are_unreadable_raw_and_readable_through_the_app_on_postgresql():
    with throwaway_database("sealed") as url:
        upgrade(url)
        _patient_on_file(url)
        raw = _raw(url, "SELECT c.date_of_birth, c.email, p.date_of_birth FROM contacts c "
                        "JOIN patients p ON p.contact_id = c.id")
        assert len(raw) == 1
        for value in raw[0]:
            assert value.startswith("dev:")  # the key id, then the token
            assert "1985" not in value and "ida" not in value.lower()
        exported = _ringback(url, "patient", "export", "--clinic", "riverside", "--phone", PHONE)
        assert exported.returncode == 0, exported.stderr
        held = json.loads(exported.stdout)["booking_database"]
        assert (held["contact"][0]["date_of_birth"], held["contact"][0]["email"],
                held["patients"][0]["date_of_birth"]) == (
            "1985-03-14", "ida.may@example.org", "1985-03-14")


def test_rotation_reseals_every_value_with_the_new_key(tmp_path):
    url = f"sqlite:///{tmp_path / 'rotate.db'}"
    upgrade(url)
    _patient_on_file(url)
    new = f"new:{Fernet.generate_key().decode()}"
    rotated = _ringback(url, "rotate-field-keys", keys=f"{new},{DEVELOPMENT_FIELD_KEYS}")
    assert rotated.returncode == 0, rotated.stderr
    assert "under key 'new' now: 1 re-sealed in contacts.date_of_birth, 1 re-sealed in " \
           "contacts.email, 1 re-sealed in patients.date_of_birth" in rotated.stdout
    assert all(value.startswith("new:") for row in _raw(
        url, "SELECT date_of_birth, email FROM contacts") for value in row)
    # The old key can go: the new one alone opens everything.
    exported = _ringback(url, "patient", "export", "--clinic", "riverside", "--phone", PHONE,
                         keys=new)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["booking_database"]["contact"][0]["email"] == \
        "ida.may@example.org"
    again = _ringback(url, "rotate-field-keys", keys=new)
    assert again.returncode == 0 and "0 re-sealed in contacts.email" in again.stdout
    unknown = _ringback(url, "rotate-field-keys", keys=f"other:{Fernet.generate_key().decode()}")
    assert unknown.returncode == 2 and "sealed with key 'new'" in unknown.stderr


def test_the_migration_seals_values_stored_before_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'before.db'}"
    config = alembic_config(url)
    # The loader speaks today's schema: clinics in at head, then back to before sealing.
    command.upgrade(config, "head")
    load_clinics_file(database_url=url, path=EXAMPLE_FILE)
    command.downgrade(config, "0013")
    engine = create_engine(url, future=True)
    with engine.begin() as connection:
        clinic_id = connection.execute(text("SELECT id FROM clinics WHERE slug = 'riverside'")
                                       ).scalar()
        connection.execute(text(
            "INSERT INTO contacts (clinic_id, phone, date_of_birth, email, is_known_patient, "
            "consent, whatsapp_unreachable, created_at) VALUES (:clinic, :phone, '1985-03-14', "
            "'ida.may@example.org', 0, 'implied', 0, '2026-12-01 10:00:00')"),
            {"clinic": clinic_id, "phone": PHONE})
    engine.dispose()
    command.upgrade(config, "head")
    ((dob, email),) = _raw(url, "SELECT date_of_birth, email FROM contacts")
    assert dob.startswith("dev:") and email.startswith("dev:") and "@" not in email
    with session_factory(create_engine(url, future=True))() as session:
        contact = session.execute(select(Contact)).scalar_one()
        assert (contact.date_of_birth, contact.email) == (date(1985, 3, 14),
                                                          "ida.may@example.org")
    command.downgrade(config, "0013")
    assert _raw(url, "SELECT date_of_birth, email FROM contacts") == [
        ("1985-03-14", "ida.may@example.org")]


def test_keys_that_cannot_be_used_are_refused():
    with pytest.raises(FieldKeyError, match="not a Fernet key"):
        KeyRing("k1:short")
    with pytest.raises(FieldKeyError, match="unique"):
        KeyRing(f"k1:{Fernet.generate_key().decode()},k1:{Fernet.generate_key().decode()}")
    secret = "s" * 40
    with pytest.raises(ValidationError, match="not the development key"):
        Settings(environment="production", twilio_auth_token=secret,
                 missed_call_hmac_secret=secret, session_secret=secret, rasa_token=secret,
                 action_server_token=secret,
                 database_url="postgresql+psycopg2://ringback@db.internal/ringback")
