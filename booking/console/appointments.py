"""The day's appointments in the console: who is coming, and marking attended or no-show."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from booking.console.routes import ContextDep, Csrf, UserDep, audited_list, known_id, render
from booking.console.views import clinic_names
from booking.models import Appointment, AppointmentStatus, Clinic, utcnow
from booking.records import audit
from booking.scheduling.attendance import CannotMark, mark

router = APIRouter(prefix="/console/appointments", include_in_schema=False)
SHOWN = (AppointmentStatus.booked, AppointmentStatus.completed, AppointmentStatus.no_show)


@dataclass(frozen=True)
class AppointmentRow:
    id: int
    clinic: str
    time: str
    patient: str
    phone: str
    service: str
    clinician: str
    status: str
    confirmed: bool
    can_mark: bool


def _day(session: Session, clinic_ids: frozenset[int], day: date | None
         ) -> tuple[date, list[AppointmentRow]]:
    now = utcnow()
    rows, shown_day = [], day
    for clinic in session.execute(select(Clinic).where(Clinic.id.in_(clinic_ids))
                                  .order_by(Clinic.name)).scalars():
        zone = ZoneInfo(clinic.timezone)
        shown_day = day or now.astimezone(zone).date()
        start = datetime.combine(shown_day, time(0), tzinfo=zone)
        for appointment in session.execute(
                select(Appointment).options(joinedload(Appointment.contact),
                                            joinedload(Appointment.service),
                                            joinedload(Appointment.provider))
                .where(Appointment.clinic_id == clinic.id, Appointment.status.in_(SHOWN),
                       Appointment.starts_at >= start,
                       Appointment.starts_at < start + timedelta(days=1))
                .order_by(Appointment.starts_at)).scalars():
            contact = appointment.contact
            rows.append(AppointmentRow(
                id=appointment.id, clinic=clinic.name,
                time=f"{appointment.starts_at.astimezone(zone):%H:%M}",
                patient=" ".join(filter(None, [contact.first_name, contact.last_name]))
                or "Patient", phone=contact.phone, service=appointment.service.name,
                clinician=appointment.provider.name if appointment.provider else "",
                status=appointment.status.value,
                confirmed=appointment.confirmed_at is not None,
                can_mark=appointment.starts_at <= now))
    return shown_day or now.date(), rows


@router.get("", response_class=HTMLResponse)
async def day_page(request: Request, context: ContextDep, user: UserDep,
                   day: Annotated[date | None, Query()] = None) -> HTMLResponse:
    def load():
        with context.sessions() as session:
            return _day(session, user.clinic_ids, day), clinic_names(session, user)

    (shown, rows), clinics = await asyncio.to_thread(load)
    await asyncio.to_thread(audited_list, request, context, user, audit.VIEW_APPOINTMENTS,
                            f"day {shown.isoformat()}")
    return render(request, "appointments.html", user, rows=rows, clinics=clinics, day=shown,
                  previous=shown - timedelta(days=1), next=shown + timedelta(days=1))


@router.post("/{appointment_id}/mark", dependencies=[Csrf])
async def mark_appointment(request: Request, context: ContextDep, user: UserDep,
                           appointment_id: str,
                           outcome: Annotated[str, Form()] = "") -> RedirectResponse:
    row_id = known_id(appointment_id, "appointment")
    if outcome not in ("attended", "no_show"):
        raise HTTPException(400, "outcome must be attended or no_show")

    def commit() -> date:
        with context.sessions() as session, session.begin():
            appointment = session.get(Appointment, row_id)
            if appointment is None or appointment.clinic_id not in user.clinic_ids:
                raise HTTPException(404, "no such appointment")
            try:
                mark(session, appointment=appointment, outcome=outcome, now=utcnow())
            except CannotMark as exc:
                raise HTTPException(409, str(exc)) from exc
            zone = ZoneInfo(session.get(Clinic, appointment.clinic_id).timezone)
            return appointment.starts_at.astimezone(zone).date()

    day = await asyncio.to_thread(commit)
    request.session["flash"] = ("Marked attended." if outcome == "attended"
                                else "Marked no-show: they will be offered a new time.")
    return RedirectResponse(f"/console/appointments?day={day.isoformat()}", status_code=303)
