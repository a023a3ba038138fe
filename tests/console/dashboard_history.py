"""Synthetic history in the running stack's database for the dashboard tests.

The history ends three weeks ago, so its appointments are all past (the booking tests' free
times stay free) and its escalations long resolved (the live queue stays the tests' own), and
the dashboard tests ask for a custom period inside it, where no other test writes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from booking.db import make_engine
from booking.models import (
    Appointment,
    AppointmentStatus,
    Clinic,
    FunnelEvent,
    MissedCall,
    MissedCallStatus,
    utcnow,
)
from booking.reports.periods import custom
from stack.seed_history import seed_history

DAYS = 60
ENDS_DAYS_AGO = 21


@dataclass(frozen=True)
class SeededPeriod:
    first: date
    last: date
    query: str  # for the dashboard's and the exports' URLs

    def counts(self, session: Session) -> dict[str, int]:
        """The period's figures counted straight from the tables, not through the reports."""
        clinic = session.execute(select(Clinic).where(Clinic.slug == "riverside")).scalar_one()
        period = custom(self.first, self.last, zone=clinic.timezone)
        in_period = (MissedCall.clinic_id == clinic.id,
                     MissedCall.occurred_at >= period.since, MissedCall.occurred_at < period.until)

        def calls(*where) -> int:
            return session.execute(select(func.count()).select_from(MissedCall)
                                   .where(*in_period, *where)).scalar_one()

        booked_events = session.execute(
            select(func.count()).select_from(FunnelEvent)
            .where(FunnelEvent.clinic_id == clinic.id, FunnelEvent.kind == "booked",
                   FunnelEvent.occurred_at >= period.since,
                   FunnelEvent.occurred_at < period.until)).scalar_one()
        appointments = session.execute(
            select(func.count()).select_from(Appointment)
            .where(Appointment.clinic_id == clinic.id, Appointment.source == "bot",
                   Appointment.status != AppointmentStatus.cancelled,
                   Appointment.created_at >= period.since,
                   Appointment.created_at < period.until)).scalar_one()
        return {"missed": calls(MissedCall.status != MissedCallStatus.answered),
                "texted": calls(MissedCall.status == MissedCallStatus.texted),
                "booked": booked_events, "appointments": appointments}


def seed(database_url: str) -> SeededPeriod:
    """Seed riverside's history (once per stack); the period: 30 local days inside it."""
    # Our engine: its busy timeout waits for the running gateway's writes.
    engine = make_engine(database_url)
    end = utcnow() - timedelta(days=ENDS_DAYS_AGO)
    try:
        with Session(engine) as session, session.begin():
            seed_history(session, clinic_slug="riverside", days=DAYS, end=end)
    finally:
        engine.dispose()
    # Whole days well inside the history, whatever the hour the suite runs at.
    last = (end - timedelta(days=2)).date()
    first = last - timedelta(days=29)
    return SeededPeriod(first=first, last=last,
                        query=f"period=custom&from={first}&to={last}&clinic=riverside")


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))
