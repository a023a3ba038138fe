"""Whether a patient came: staff mark a past or current appointment attended or a no-show.

A no-show then gets a rebooking offer (booking.outreach plans it from the status); both are
counted in the funnel ("attended", "no_show").
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from booking.models import Appointment, AppointmentStatus, FunnelEvent

MARKS = {"attended": AppointmentStatus.completed, "no_show": AppointmentStatus.no_show}


class CannotMark(ValueError):
    """Only a booked appointment that has started, or one marked already, can be (re)marked."""


def mark(session: Session, *, appointment: Appointment, outcome: str,
         now: datetime) -> None:
    """Record `outcome` ("attended" or "no_show"); marking again corrects the first mark."""
    status = MARKS[outcome]
    if appointment.status not in (AppointmentStatus.booked, *MARKS.values()):
        raise CannotMark(f"a {appointment.status.value} appointment cannot be marked")
    if appointment.starts_at > now:
        raise CannotMark("the appointment has not started yet")
    if appointment.status == status:
        return
    appointment.status, appointment.updated_at = status, now
    session.add(FunnelEvent(clinic_id=appointment.clinic_id, kind=outcome,
                            contact_id=appointment.contact_id, occurred_at=now,
                            detail={"appointment_id": appointment.id}))
