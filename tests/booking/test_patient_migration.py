"""Migration 0009 gives every existing appointment its person, on SQLite and PostgreSQL, and
its downgrade loses no appointment and no slot claim."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text

from booking.clinics.config import load_clinics_file
from booking.db import make_engine, session_factory
from booking.migrate import alembic_config
from booking.models import Appointment, AppointmentStatus, Base, Contact, SlotClaim
from tests.booking.conftest import EXAMPLE_FILE
from tests.booking.test_concurrency import postgres_url, sqlite_url  # noqa: F401 - fixtures

STARTS = datetime(2026, 12, 2, 10, 15, tzinfo=timezone.utc)


def _seed_before_patients(url: str) -> dict[str, int]:
    """Contacts and appointments as a database at 0008 (before patients) holds them; returns
    contact ids. The clinics are loaded at head (the loader speaks today's schema), then the
    database goes back to 0008."""
    config = alembic_config(url)
    command.upgrade(config, "head")
    load_clinics_file(database_url=url, path=EXAMPLE_FILE)
    command.downgrade(config, "0008")
    engine = make_engine(url)
    with session_factory(engine)() as session:
        clinic_id, service_id = session.execute(text(
            "SELECT clinics.id, services.id FROM clinics JOIN services ON "
            "services.clinic_id = clinics.id WHERE clinics.slug = 'riverside' "
            "ORDER BY services.id LIMIT 1")).one()
        contacts = {
            "named": Contact(clinic_id=clinic_id, phone="+447700900101", first_name="Sam",
                             last_name="Taylor", is_known_patient=True),
            "named, no appointment": Contact(clinic_id=clinic_id, phone="+447700900102",
                                             first_name="Ann"),
            "nameless": Contact(clinic_id=clinic_id, phone="+447700900103"),
            "nameless, no appointment": Contact(clinic_id=clinic_id, phone="+447700900104"),
        }
        session.add_all(contacts.values())
        session.flush()
        for index, key in enumerate(("named", "nameless")):
            starts = STARTS + timedelta(hours=index)
            # Core, and only the columns 0008 has: the model already knows patient_id.
            appointment_id = session.execute(insert(Appointment.__table__).values(
                clinic_id=clinic_id, contact_id=contacts[key].id, service_id=service_id,
                starts_at=starts, ends_at=starts + timedelta(minutes=30),
                status=AppointmentStatus.booked, source="bot", idempotency_key=f"seed-{key}",
                created_at=STARTS, updated_at=STARTS)).inserted_primary_key[0]
            session.execute(insert(SlotClaim.__table__).values(
                clinic_id=clinic_id, resource="clinic", cell_start=starts,
                appointment_id=appointment_id))
        session.commit()
        ids = {key: contact.id for key, contact in contacts.items()}
    engine.dispose()
    return ids


@pytest.mark.parametrize("backend", [
    "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_existing_appointments_get_a_patient_named_as_their_contact(backend, request):
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    config = alembic_config(url)
    contacts = _seed_before_patients(url)

    command.upgrade(config, "head")
    engine = make_engine(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        patients = connection.execute(text(
            "SELECT contact_id, relation, first_name, last_name, is_known_patient, id "
            "FROM patients ORDER BY contact_id")).all()
        assert [tuple(row[:5]) for row in patients] == [
            (contacts["named"], "self", "Sam", "Taylor", True),
            (contacts["named, no appointment"], "self", "Ann", None, False),
            (contacts["nameless"], "self", None, None, False),
        ]
        patient_of = {row[0]: row[5] for row in patients}
        appointments = connection.execute(
            select(Appointment.contact_id, Appointment.patient_id)).all()
        assert sorted(appointments) == sorted(
            (contacts[key], patient_of[contacts[key]]) for key in ("named", "nameless"))

    command.downgrade(config, "0008")
    with engine.connect() as connection:
        assert "patients" not in inspect(connection).get_table_names()
        assert "patient_id" not in {c["name"] for c in
                                    inspect(connection).get_columns("appointments")}
        assert connection.execute(text("SELECT count(*) FROM appointments")).scalar() == 2
        assert connection.execute(text("SELECT count(*) FROM slot_claims")).scalar() == 2
    engine.dispose()
    command.upgrade(config, "head")
