"""`ringback seed-history`: marked synthetic history a dashboard can show, never in production."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from booking.clinics.config import load_clinics
from booking.db import make_engine
from booking.migrate import upgrade
from booking.models import (
    Appointment,
    AppointmentStatus,
    Clinic,
    Contact,
    Escalation,
    EscalationStatus,
    FunnelEvent,
    MissedCall,
)
from booking.reports import metrics
from booking.reports.periods import last_days
from booking.settings import PROJECT_ROOT
from stack.seed_history import AlreadySeeded, seed_history

END = datetime(2026, 11, 30, 18, 0, tzinfo=timezone.utc)
RINGBACK = str(Path(sys.executable).parent / "ringback")


@pytest.fixture
def session(tmp_path):
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        load_clinics(session, PROJECT_ROOT / "clinics" / "example.yml")
        session.commit()
        yield session
    engine.dispose()


def test_history_has_a_clinics_shape_and_is_marked_synthetic(session):
    made = seed_history(session, clinic_slug="riverside", days=28, end=END)
    session.commit()
    clinic = session.execute(select(Clinic).where(Clinic.slug == "riverside")).scalar_one()
    figures = metrics.clinic_figures(
        session, clinic_id=clinic.id, period=last_days(28, now=END, zone=clinic.timezone))

    assert 28 * 5 < made.missed < 28 * 12  # about eight a day
    assert figures.missed == made.missed == figures.synthetic_calls
    assert 0.5 < figures.answered_rate < 0.85
    assert 0.25 < figures.reply_rate < 0.7 and 0.05 < figures.recovery_rate < 0.4
    assert figures.text_back_time.median < 30 and figures.revenue.amounts["GBP"] > 0
    heat = metrics.missed_call_heat_map(session, clinic_id=clinic.id,
                                        period=last_days(28, now=END, zone=clinic.timezone))
    assert sum(heat[0][9:18]) > sum(heat[0][0:6])  # Monday's working hours beat the night
    # Marked: sources, keys, events; fictional numbers (Ofcom's drama ranges).
    assert set(session.execute(select(MissedCall.source)).scalars()) == {"synthetic"}
    assert all(key.startswith("synthetic-")
               for key in session.execute(select(Appointment.idempotency_key)).scalars())
    assert all(event.detail == {"synthetic": True}
               for event in session.execute(select(FunnelEvent)).scalars())
    assert all(phone[:9] in {"+44207946", "+44113496", "+44114496"}
               for phone in session.execute(select(Contact.phone)).scalars())
    # Nothing waits for anyone: appointments before the end are settled, escalations resolved.
    assert set(session.execute(select(Escalation.status)).scalars()) <= {
        EscalationStatus.resolved}
    assert session.execute(select(func.count()).select_from(Appointment).where(
        Appointment.status == AppointmentStatus.booked, Appointment.starts_at < END)
    ).scalar_one() == 0


def test_a_clinic_is_seeded_once(session):
    seed_history(session, clinic_slug="northside", days=3, end=END)
    with pytest.raises(AlreadySeeded):
        seed_history(session, clinic_slug="northside", days=3, end=END)
    with pytest.raises(LookupError):
        seed_history(session, clinic_slug="nowhere", days=3, end=END)


def test_production_refuses_to_seed():
    env = {**os.environ, "ENVIRONMENT": "production", "TWILIO_AUTH_TOKEN": "t" * 32,
           "MISSED_CALL_HMAC_SECRET": "h" * 32, "SESSION_SECRET": "s" * 32,
           "RASA_TOKEN": "r" * 32, "ACTION_SERVER_TOKEN": "a" * 32,
           "FIELD_ENCRYPTION_KEYS": "k1:" + "f" * 43 + "=",
           # Nothing listens there: the refusal comes before any connection.
           "DATABASE_URL": "postgresql+psycopg2://nobody@127.0.0.1:1/none"}
    result = subprocess.run([RINGBACK, "seed-history", "--clinic", "riverside"], env=env,
                            capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)

    assert result.returncode == 2
    assert "never runs with ENVIRONMENT=production" in result.stderr
