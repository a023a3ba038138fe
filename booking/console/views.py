"""Read models for the console pages, always filtered to the signed-in person's clinics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from booking.console.auth import ConsoleUser
from booking.escalation.staff_alerts import LABEL, clip
from booking.models import (
    Appointment,
    AppointmentStatus,
    Clinic,
    Escalation,
    EscalationAlert,
    EscalationReason,
    EscalationStatus,
    JobDecision,
    JobKind,
    Message,
    ScheduledJob,
    StaffMember,
    Thread,
    ThreadState,
)

STATUS_FILTERS = {
    "active": (EscalationStatus.open, EscalationStatus.acknowledged),
    "open": (EscalationStatus.open,),
    "acknowledged": (EscalationStatus.acknowledged,),
    "resolved": (EscalationStatus.resolved,),
    "all": tuple(EscalationStatus),
}
REASON_FILTERS = {reason.value: reason for reason in EscalationReason}
QUEUE_LIMIT = 200


def local(instant: datetime | None, zone: str) -> str:
    if instant is None:
        return ""
    return instant.astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M")


def get_thread(session: Session, user: ConsoleUser, thread_id: int) -> Thread:
    """The thread, if it belongs to one of the user's clinics; otherwise 404, never 403, so
    other clinics' ids reveal nothing."""
    thread = session.get(Thread, thread_id)
    if thread is None or thread.clinic_id not in user.clinic_ids:
        raise HTTPException(404, "no such thread")
    return thread


def get_escalation(session: Session, user: ConsoleUser, escalation_id: int) -> Escalation:
    escalation = session.get(Escalation, escalation_id)
    if escalation is None or escalation.clinic_id not in user.clinic_ids:
        raise HTTPException(404, "no such escalation")
    return escalation


def get_staff(session: Session, user: ConsoleUser) -> StaffMember:
    return session.get(StaffMember, user.staff_id)


def _names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(
        select(StaffMember.id, StaffMember.name).where(StaffMember.id.in_(ids))).all())


@dataclass(frozen=True)
class QueueRow:
    id: int
    thread_id: int
    clinic: str
    reason: str
    label: str
    priority: int
    status: str
    patient: str
    phone: str
    summary: str
    opened: str
    alerts: int
    taken_by: str


def queue(session: Session, user: ConsoleUser, *, status: str, reason: str) -> list[QueueRow]:
    query = (select(Escalation).options(joinedload(Escalation.contact),
                                        joinedload(Escalation.thread).joinedload(Thread.clinic))
             .where(Escalation.clinic_id.in_(user.clinic_ids),
                    Escalation.status.in_(STATUS_FILTERS.get(status, STATUS_FILTERS["active"]))))
    if reason in REASON_FILTERS:
        query = query.where(Escalation.reason == REASON_FILTERS[reason])
    rows = session.execute(
        query.order_by(Escalation.priority, Escalation.opened_at.desc()).limit(QUEUE_LIMIT)
    ).scalars().all()
    names = _names(session, {row.acknowledged_by_id for row in rows if row.acknowledged_by_id})
    return [
        QueueRow(
            id=row.id, thread_id=row.thread_id, clinic=row.thread.clinic.name,
            reason=row.reason.value, label=LABEL[row.reason], priority=row.priority,
            status=row.status.value,
            patient=" ".join(filter(None, [row.contact.first_name, row.contact.last_name]))
            or "New caller",
            phone=row.contact.phone, summary=clip(row.summary, 180),
            opened=local(row.opened_at, row.thread.clinic.timezone), alerts=row.alert_count,
            taken_by=names.get(row.acknowledged_by_id, ""),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class ThreadRow:
    id: int
    patient: str
    phone: str
    state: str
    channel: str
    last_activity: str
    held_by: str


def threads(session: Session, user: ConsoleUser, *, state: str) -> list[ThreadRow]:
    query = (select(Thread).options(joinedload(Thread.contact), joinedload(Thread.clinic))
             .where(Thread.clinic_id.in_(user.clinic_ids)))
    if state in {s.value for s in ThreadState}:
        query = query.where(Thread.state == ThreadState(state))
    rows = session.execute(query.order_by(Thread.last_activity_at.desc()).limit(QUEUE_LIMIT)
                           ).scalars().all()
    names = _names(session, {row.handed_off_to_id for row in rows if row.handed_off_to_id})
    return [
        ThreadRow(id=row.id,
                  patient=" ".join(filter(None, [row.contact.first_name, row.contact.last_name]))
                  or "New caller",
                  phone=row.contact.phone, state=row.state.value, channel=row.channel.value,
                  last_activity=local(row.last_activity_at, row.clinic.timezone),
                  held_by=names.get(row.handed_off_to_id, ""))
        for row in rows
    ]


@dataclass(frozen=True)
class MessageRow:
    id: int
    author: str
    who: str
    direction: str
    body: str
    at: str
    status: str


def messages(session: Session, thread: Thread, *, after: int = 0) -> list[MessageRow]:
    rows = session.execute(
        select(Message).where(Message.thread_id == thread.id, Message.id > after)
        .order_by(Message.id)
    ).scalars().all()
    staff_ids = {int(row.author.split(":", 1)[1]) for row in rows
                 if row.author.startswith("staff:") and row.author[6:].isdigit()}
    names = _names(session, staff_ids)
    patient = " ".join(filter(None, [thread.contact.first_name, thread.contact.last_name]))

    def who(author: str) -> str:
        if author == "patient":
            return patient or "Patient"
        if author.startswith("staff:") and author[6:].isdigit():
            return names.get(int(author[6:]), "Staff")
        return {"bot": "Bot", "system": "System"}.get(author, author)

    return [MessageRow(id=row.id, author=row.author.split(":", 1)[0], who=who(row.author),
                       direction=row.direction.value, body=row.body,
                       at=local(row.created_at, thread.clinic.timezone),
                       status=row.status.value)
            for row in rows]


@dataclass(frozen=True)
class AppointmentRow:
    """An upcoming appointment booked from this thread's phone, and who it is for."""

    patient: str
    relation: str
    service: str
    at: str


def appointments(session: Session, thread: Thread, *, now: datetime) -> list[AppointmentRow]:
    rows = session.execute(
        select(Appointment).where(Appointment.contact_id == thread.contact_id,
                                  Appointment.status == AppointmentStatus.booked,
                                  Appointment.starts_at >= now)
        .options(joinedload(Appointment.patient), joinedload(Appointment.service))
        .order_by(Appointment.starts_at)
    ).scalars().all()
    contact = thread.contact
    views = []
    for row in rows:
        person = row.patient or contact  # keyed in without a person: the phone's owner
        name = " ".join(filter(None, [person.first_name, person.last_name]))
        relation = row.patient.relation if row.patient is not None else "self"
        views.append(AppointmentRow(
            patient=name or "Name not given",
            relation="phone's owner" if relation == "self" else (relation or ""),
            service=row.service.name, at=local(row.starts_at, thread.clinic.timezone)))
    return views


@dataclass(frozen=True)
class AuditRow:
    at: str
    kind: str
    channel: str
    who: str
    state: str


@dataclass(frozen=True)
class EscalationView:
    id: int
    reason: str
    label: str
    priority: int
    status: str
    summary: str
    red_flag_rule: str | None
    bot_told_patient: str
    opened: str
    acknowledged: str
    acknowledged_by: str
    resolved: str
    resolved_by: str
    next_alert: str
    audit: list[AuditRow]


def escalations(session: Session, thread: Thread) -> list[EscalationView]:
    rows = session.execute(
        select(Escalation).where(Escalation.thread_id == thread.id)
        .order_by(Escalation.opened_at.desc(), Escalation.id.desc())
    ).scalars().all()
    alerts = session.execute(
        select(EscalationAlert).where(EscalationAlert.escalation_id.in_([r.id for r in rows]))
        .order_by(EscalationAlert.id)
    ).scalars().all() if rows else []
    names = _names(session, {a.staff_id for a in alerts if a.staff_id}
                   | {r.acknowledged_by_id for r in rows if r.acknowledged_by_id}
                   | {r.resolved_by_id for r in rows if r.resolved_by_id})
    zone = thread.clinic.timezone
    views = []
    for row in rows:
        audit = [AuditRow(at=local(a.created_at, zone), kind=a.kind, channel=a.channel,
                          who=names.get(a.staff_id, a.recipient or a.detail or ""),
                          state=a.delivery_status or "")
                 for a in alerts if a.escalation_id == row.id]
        views.append(EscalationView(
            id=row.id, reason=row.reason.value, label=LABEL[row.reason], priority=row.priority,
            status=row.status.value, summary=row.summary, red_flag_rule=row.red_flag_rule,
            bot_told_patient=row.bot_told_patient, opened=local(row.opened_at, zone),
            acknowledged=local(row.acknowledged_at, zone),
            acknowledged_by=names.get(row.acknowledged_by_id, ""),
            resolved=local(row.resolved_at, zone),
            resolved_by=names.get(row.resolved_by_id, ""),
            next_alert=local(row.next_alert_at, zone), audit=audit))
    return views


def clinic_names(session: Session, user: ConsoleUser) -> list[str]:
    return list(session.execute(
        select(Clinic.name).where(Clinic.id.in_(user.clinic_ids)).order_by(Clinic.name)
    ).scalars())


@dataclass(frozen=True)
class OutreachRow:
    """A message Ringback planned to start in this thread, and what became of it."""

    kind: str
    due: str
    state: str
    decisions: list[tuple[str, str, str, str]]  # when, outcome, until, reason


OUTREACH_KINDS = {JobKind.follow_up: "Follow-up", JobKind.reminder: "Reminder",
                  JobKind.rebooking_offer: "Rebooking offer"}


def outreach(session: Session, thread: Thread) -> list[OutreachRow]:
    zone = thread.clinic.timezone
    jobs = session.execute(
        select(ScheduledJob).where(ScheduledJob.contact_id == thread.contact_id)
        .order_by(ScheduledJob.due_at, ScheduledJob.id)).scalars().all()
    decided: dict[int, list[JobDecision]] = {}
    for decision in session.execute(
            select(JobDecision).where(JobDecision.job_id.in_([job.id for job in jobs]))
            .order_by(JobDecision.id)).scalars():
        decided.setdefault(decision.job_id, []).append(decision)
    return [OutreachRow(kind=OUTREACH_KINDS[job.kind], due=local(job.due_at, zone),
                        state=job.state.value,
                        decisions=[(local(d.decided_at, zone), d.outcome, local(d.until, zone),
                                    d.reason) for d in decided.get(job.id, [])])
            for job in jobs]
