"""Planning: turn what the database holds into scheduled jobs, whatever wrote it.

A pass looks at recent text-backs (follow-ups), booked appointments (reminders), and recent
no-shows and cancellations (rebooking offers), and adds the jobs they call for. A job's kind,
subject and step are unique, so two gateways planning at once, or a pass repeated after a
restart, add nothing twice. Reminders of an appointment that was cancelled or moved are
cancelled here, at once; everything is checked again when a job comes due (`runner`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from booking.clinics.config import OutreachSettings
from booking.db import insert_ignoring_duplicates
from booking.models import (
    Appointment,
    AppointmentStatus,
    Clinic,
    Direction,
    JobKind,
    JobState,
    Message,
    MissedCall,
    MissedCallStatus,
    ScheduledJob,
    Service,
)
from booking.outreach.jobs import record

# Text-backs, no-shows and cancellations older than this are not followed up any more.
LOOKBACK = timedelta(days=2)
# A reminder due this soon after the booking is noise: they have just heard from us.
MIN_REMINDER_AFTER_BOOKING = timedelta(hours=12)
FOLLOW_UP_LIFETIME = timedelta(hours=24)
REBOOKING_LIFETIME = timedelta(days=3)
# A reminder so close to the start is no use any more.
REMINDER_CUTOFF = timedelta(minutes=30)
# A reminder whose moment passed longer ago than this (the gateway was down, the appointment
# came from another system) is skipped: the next one, if any, still goes.
LATE_GRACE = timedelta(hours=1)
BATCH = 1000


def outreach_settings(clinic: Clinic) -> OutreachSettings:
    return OutreachSettings.parse_obj((clinic.settings or {}).get("outreach") or {})


class SettingsByClinic(dict):
    """Each clinic's outreach settings, parsed once per pass."""

    def __init__(self, session: Session):
        super().__init__()
        self._session = session

    def __missing__(self, clinic_id: int) -> OutreachSettings:
        self[clinic_id] = outreach_settings(self._session.get(Clinic, clinic_id))
        return self[clinic_id]


def plan(session: Session, *, now: datetime) -> int:
    """One planning pass; returns how many jobs it added."""
    settings = SettingsByClinic(session)
    added = 0
    for rows in (_follow_ups(session, now, settings), *_reminders(session, now, settings),
                 _rebooking_offers(session, now, settings)):
        if rows:
            session.execute(insert_ignoring_duplicates(session, ScheduledJob,
                                                       ("kind", "subject", "step")), rows)
            added += len(rows)
    _cancel_moot_reminders(session, now)
    return added


def _job(*, kind: JobKind, subject: str, step: int, clinic_id: int, contact_id: int,
         thread_id: int | None, appointment_id: int | None, subject_at: datetime,
         due_at: datetime, expires_at: datetime, now: datetime) -> dict:
    return {"kind": kind, "subject": subject, "step": step, "clinic_id": clinic_id,
            "contact_id": contact_id, "thread_id": thread_id, "appointment_id": appointment_id,
            "subject_at": subject_at, "due_at": due_at, "expires_at": expires_at,
            "state": JobState.scheduled, "last_reason": "", "deferrals": 0, "created_at": now}


def _planned(session: Session, kind: JobKind, subjects: Iterable[str]) -> set[str]:
    subjects = list(subjects)
    found: set[str] = set()
    for start in range(0, len(subjects), BATCH):
        found.update(session.execute(
            select(ScheduledJob.subject).where(ScheduledJob.kind == kind,
                                               ScheduledJob.subject.in_(
                                                   subjects[start:start + BATCH]))).scalars())
    return found


def _follow_ups(session: Session, now: datetime, settings: SettingsByClinic) -> list[dict]:
    """Follow-ups of text-backs nobody has answered yet."""
    answered = exists().where(Message.thread_id == MissedCall.thread_id,
                              Message.direction == Direction.inbound,
                              Message.created_at >= MissedCall.texted_at)
    calls = session.execute(
        select(MissedCall.id, MissedCall.clinic_id, MissedCall.contact_id, MissedCall.thread_id,
               MissedCall.texted_at)
        .where(MissedCall.status == MissedCallStatus.texted,
               MissedCall.texted_at >= now - LOOKBACK, MissedCall.thread_id.is_not(None),
               ~answered)
        .order_by(MissedCall.id).limit(BATCH)).all()
    planned = _planned(session, JobKind.follow_up, (f"call:{c.id}" for c in calls))
    rows = []
    for call in calls:
        subject = f"call:{call.id}"
        if subject in planned:
            continue
        clinic = settings[call.clinic_id]
        for step, follow_up in enumerate(clinic.follow_ups[:clinic.max_follow_ups]):
            due = call.texted_at + timedelta(minutes=follow_up.after_minutes)
            if due + FOLLOW_UP_LIFETIME <= now:
                continue
            rows.append(_job(kind=JobKind.follow_up, subject=subject, step=step,
                             clinic_id=call.clinic_id, contact_id=call.contact_id,
                             thread_id=call.thread_id, appointment_id=None,
                             subject_at=call.texted_at, due_at=due,
                             expires_at=due + FOLLOW_UP_LIFETIME, now=now))
    return rows


def _reminders(session: Session, now: datetime, settings: SettingsByClinic) -> Iterator[list[dict]]:
    """Reminders of booked appointments that have none yet (booked by us or anyone else), a
    page of appointments at a time (by id, so a page of short-notice bookings that need no
    reminder does not come back)."""
    has_reminders = exists().where(ScheduledJob.appointment_id == Appointment.id,
                                   ScheduledJob.kind == JobKind.reminder)
    after = 0
    while True:
        page = session.execute(
            select(Appointment.id, Appointment.clinic_id, Appointment.contact_id,
                   Appointment.starts_at, Appointment.created_at, Service.slug)
            .join(Service, Service.id == Appointment.service_id)
            .where(Appointment.status == AppointmentStatus.booked, Appointment.id > after,
                   Appointment.starts_at > now + REMINDER_CUTOFF, ~has_reminders)
            .order_by(Appointment.id).limit(BATCH)).all()
        if not page:
            return
        yield [row for appointment in page
               for row in _reminders_of(appointment, settings[appointment.clinic_id], now)]
        if len(page) < BATCH:
            return
        after = page[-1].id


def _reminders_of(appointment, clinic: OutreachSettings, now: datetime) -> list[dict]:
    hours = clinic.service_reminder_hours.get(appointment.slug, clinic.reminder_hours)
    moments = [appointment.starts_at - timedelta(hours=before)
               for before in sorted(set(hours), reverse=True)]
    rows = []
    for step, due in enumerate(moments):
        if due < appointment.created_at + MIN_REMINDER_AFTER_BOOKING:
            continue  # booked at short notice: the confirmation was the reminder
        if due < now - LATE_GRACE or (step + 1 < len(moments) and moments[step + 1] <= now):
            continue  # its moment has passed; a later reminder stands for it
        rows.append(_job(kind=JobKind.reminder, subject=f"appointment:{appointment.id}",
                         step=step, clinic_id=appointment.clinic_id,
                         contact_id=appointment.contact_id, thread_id=None,
                         appointment_id=appointment.id, subject_at=appointment.starts_at,
                         due_at=max(due, now),
                         expires_at=appointment.starts_at - REMINDER_CUTOFF, now=now))
    return rows


def _rebooking_offers(session: Session, now: datetime, settings: SettingsByClinic) -> list[dict]:
    """One offer after each recent no-show or cancellation."""
    has_offer = exists().where(ScheduledJob.appointment_id == Appointment.id,
                               ScheduledJob.kind == JobKind.rebooking_offer)
    appointments = session.execute(
        select(Appointment.id, Appointment.clinic_id, Appointment.contact_id,
               Appointment.starts_at, Appointment.updated_at, Appointment.status,
               Clinic.timezone)
        .join(Clinic, Clinic.id == Appointment.clinic_id)
        .where(Appointment.status.in_([AppointmentStatus.no_show, AppointmentStatus.cancelled]),
               Appointment.updated_at >= now - LOOKBACK, ~has_offer)
        .order_by(Appointment.id).limit(BATCH)).all()
    rows = []
    for appointment in appointments:
        clinic = settings[appointment.clinic_id]
        if appointment.status == AppointmentStatus.no_show:
            zone = ZoneInfo(appointment.timezone)
            day_after = appointment.starts_at.astimezone(zone).date() + timedelta(days=1)
            due = datetime.combine(day_after, time.fromisoformat(clinic.no_show_offer_at),
                                   tzinfo=zone)
            due = max(due, now)
        else:
            due = appointment.updated_at + timedelta(hours=clinic.cancellation_offer_after_hours)
        rows.append(_job(kind=JobKind.rebooking_offer, subject=f"appointment:{appointment.id}",
                         step=0, clinic_id=appointment.clinic_id,
                         contact_id=appointment.contact_id, thread_id=None,
                         appointment_id=appointment.id, subject_at=appointment.updated_at,
                         due_at=due, expires_at=due + REBOOKING_LIFETIME, now=now))
    return rows


def _cancel_moot_reminders(session: Session, now: datetime) -> None:
    """Reminders of appointments cancelled or moved since they were planned."""
    moot = session.execute(
        select(ScheduledJob, Appointment.status)
        .join(Appointment, Appointment.id == ScheduledJob.appointment_id)
        .where(ScheduledJob.kind == JobKind.reminder, ScheduledJob.state == JobState.scheduled,
               (Appointment.status != AppointmentStatus.booked)
               | (Appointment.starts_at != ScheduledJob.subject_at))
        .limit(BATCH)).all()
    for job, status in moot:
        job.state, job.finished_at = JobState.cancelled, now
        record(session, job, "cancelled", reminder_moot_reason(status), now=now)


def reminder_moot_reason(status: AppointmentStatus) -> str:
    return {AppointmentStatus.cancelled: "the appointment was cancelled",
            AppointmentStatus.rescheduled: "the appointment was moved",
            AppointmentStatus.completed: "the appointment has taken place",
            AppointmentStatus.no_show: "the patient did not come"}.get(
                status, "the appointment was moved")
