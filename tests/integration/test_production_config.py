"""The production configuration for real: PostgreSQL for bookings and Rasa's tracker store,
Redis as Rasa's lock store, production mode's refusal of placeholders and its quiet logs."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg2
import pytest
import yaml
from argon2 import PasswordHasher
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from booking.models import Appointment, AppointmentStatus, Contact
from tests.stack import start_stack

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CLINIC_NUMBER = "+441632960001"
PATIENT = "+447700900601"
EXAMPLE_CLINICS = Path(__file__).resolve().parents[2] / "clinics" / "example.yml"


@pytest.fixture
def postgres_url():
    name = f"ringback_prod_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def production_clinics(tmp_path: Path) -> Path:
    """The example clinics with hashed passwords: production refuses plaintext ones."""
    document = yaml.safe_load(EXAMPLE_CLINICS.read_text())
    hasher = PasswordHasher()
    for clinic in document["clinics"]:
        for staff in clinic.get("staff", []):
            if "password" in staff:
                staff["password_hash"] = hasher.hash(staff.pop("password"))
    path = tmp_path / "clinics.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_booking_on_postgres_and_redis_keeps_bodies_out_of_logs(
        trained_model, tmp_path, postgres_url, production_clinics):
    stack = start_stack(tmp_path / "stack", model=trained_model, database_url=postgres_url,
                        extra_env={"ENVIRONMENT": "production",
                                   # Production refuses secrets shorter than 32 characters.
                                   "SESSION_SECRET": "production-test-session-secret-0123",
                                   "MISSED_CALL_HMAC_SECRET": "production-test-hmac-secret-01234",
                                   "REDIS_URL": "redis://127.0.0.1:6379/0",
                                   "FIELD_ENCRYPTION_KEYS": f"k1:{Fernet.generate_key().decode()}",
                                   "CLINICS_FILE": str(production_clinics)})
    said = ["yes please", "a check up please", "the first one", "It's Sam Taylor"]
    try:
        stack.phone.ring(caller=PATIENT, clinic_number=CLINIC_NUMBER)
        stack.phone.wait_for(PATIENT, count=1)
        for body in said:
            reply = stack.phone.reply_and_wait(sender=PATIENT, clinic_number=CLINIC_NUMBER,
                                               body=body)
        assert "You're booked" in reply
    finally:
        stack.stop()

    engine = create_engine(postgres_url, future=True)
    with Session(engine) as session:
        appointment = session.execute(
            select(Appointment).join(Contact).where(Contact.phone == PATIENT)
        ).scalar_one()
        assert appointment.status == AppointmentStatus.booked
        assert appointment.contact.first_name == "Sam"
        tracked = session.execute(
            text("SELECT count(*) FROM events WHERE sender_id = :sender"),
            {"sender": f"riverside:{PATIENT}"},
        ).scalar_one()
        assert tracked > 0, "Rasa's tracker store should be the PostgreSQL database"
    engine.dispose()

    logs = "\n".join(path.read_text(errors="replace")
                     for path in (stack.run_dir / "logs").glob("*.log"))
    for body in said:
        assert body not in logs
