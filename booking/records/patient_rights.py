"""A patient's rights over what one clinic holds about them: a copy of everything (export) and
erasure.

A patient is a phone number at a clinic (the contact) and everyone booked from it. Export
gathers every row that is about them in the booking database, the staff alerts that quoted
them, and their conversations in Rasa's tracker store. Erasure deletes those conversations
from Rasa and empties the booking rows of anything that names them (number, names, date of
birth, email, words) while keeping the rows themselves, so the funnel's and the dashboard's
counts do not change. Both are recorded in the audit trail, by id only.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import inspect, null, or_, select, update
from sqlalchemy.orm import Session

from booking.models import (
    Appointment,
    Clinic,
    Contact,
    Escalation,
    EscalationAlert,
    FunnelEvent,
    InboxItem,
    JobDecision,
    JobState,
    Message,
    MessageStatus,
    MissedCall,
    Patient,
    ScheduledJob,
    Thread,
    utcnow,
)
from booking.records import audit
from booking.records.tracker_store import TrackerStore

ERASED_NUMBER = "erased"


class UnknownPatient(LookupError):
    """The clinic has no contact with that number (or it was erased already)."""


def _value(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _row(obj) -> dict:
    return {column.key: _value(getattr(obj, column.key))
            for column in inspect(obj).mapper.column_attrs}


def find_contact(session: Session, *, clinic: Clinic, phone: str) -> Contact:
    contact = session.execute(select(Contact).where(
        Contact.clinic_id == clinic.id, Contact.phone == phone)).scalar_one_or_none()
    if contact is None:
        raise UnknownPatient(f"clinic {clinic.slug} holds nothing for {phone}")
    return contact


def _held(session: Session, contact: Contact) -> dict[str, list]:
    """Every booking-database row about this contact, by table."""
    threads = list(session.execute(
        select(Thread).where(Thread.contact_id == contact.id).order_by(Thread.id)).scalars())
    thread_ids = [t.id for t in threads]
    escalations = list(session.execute(select(Escalation).where(
        Escalation.contact_id == contact.id).order_by(Escalation.id)).scalars())
    alert_message_ids = select(EscalationAlert.message_id).where(
        EscalationAlert.escalation_id.in_([e.id for e in escalations]),
        EscalationAlert.message_id.is_not(None))
    messages = list(session.execute(
        select(Message).where(Message.clinic_id == contact.clinic_id, or_(
            Message.thread_id.in_(thread_ids),
            # "whatsapp:+44..." on WhatsApp, the bare number by SMS.
            Message.from_number.endswith(contact.phone), Message.to_number.endswith(contact.phone),
            Message.id.in_(alert_message_ids))).order_by(Message.id)).scalars())
    jobs = list(session.execute(select(ScheduledJob).where(
        ScheduledJob.contact_id == contact.id).order_by(ScheduledJob.id)).scalars())

    def rows(model, *where) -> list:
        return list(session.execute(select(model).where(*where).order_by(model.id)).scalars())

    return {
        "contact": [contact],
        "patients": rows(Patient, Patient.contact_id == contact.id),
        "threads": threads,
        "messages": messages,
        "inbox_items": rows(InboxItem, InboxItem.message_id.in_([m.id for m in messages])),
        "missed_calls": rows(MissedCall, MissedCall.contact_id == contact.id),
        "appointments": rows(Appointment, Appointment.contact_id == contact.id),
        "escalations": escalations,
        "escalation_alerts": rows(EscalationAlert, EscalationAlert.escalation_id.in_(
            [e.id for e in escalations])),
        "scheduled_jobs": jobs,
        "job_decisions": rows(JobDecision, JobDecision.job_id.in_([j.id for j in jobs])),
        "funnel_events": rows(FunnelEvent, FunnelEvent.contact_id == contact.id),
    }


def export(session: Session, tracker: TrackerStore, *, clinic: Clinic, phone: str,
           actor: str, address: str) -> dict:
    """Everything held about the patient at this clinic, as JSON-ready data; the export itself
    is added to the audit trail in the caller's transaction."""
    contact = find_contact(session, clinic=clinic, phone=phone)
    held = _held(session, contact)
    sender_ids = [thread.sender_id for thread in held["threads"]]
    data = {
        "clinic": clinic.slug,
        "phone": phone,
        "booking_database": {table: [_row(row) for row in rows]
                             for table, rows in held.items()},
        "rasa_tracker_store": tracker.events_of(sender_ids),
        "audit_trail": [_row(row) for row in audit.about_contact(session,
                                                                 contact_id=contact.id)],
    }
    audit.record(session, clinic_id=clinic.id, action=audit.EXPORT, channel="cli",
                 address=address, actor=actor, contact_id=contact.id,
                 detail="patient export")
    return data


def erase(session: Session, tracker: TrackerStore, *, clinic: Clinic, phone: str,
          actor: str, address: str) -> dict[str, int]:
    """Remove the patient's conversations from Rasa, then empty every booking row of what names
    them (in the caller's transaction); what was changed, by table."""
    now = utcnow()
    contact = find_contact(session, clinic=clinic, phone=phone)
    held = _held(session, contact)
    # Rasa first: if the booking database then fails, the contact can still be found and the
    # erasure run again; the other way round its conversations could no longer be named.
    changed = {"rasa_events": tracker.delete_conversations(
        [thread.sender_id for thread in held["threads"]])}
    for thread in held["threads"]:
        thread.sender_id = f"{ERASED_NUMBER}:{thread.id}"
    message_ids = [m.id for m in held["messages"]]
    if message_ids:
        session.execute(update(Message).where(Message.id.in_(message_ids))
                        .values(body="", content_variables=null())
                        .execution_options(synchronize_session=False))
        for column in (Message.from_number, Message.to_number):
            session.execute(update(Message).where(Message.id.in_(message_ids),
                                                  column.endswith(contact.phone))
                            .values({column: ERASED_NUMBER})
                            .execution_options(synchronize_session=False))
        session.execute(update(InboxItem).where(InboxItem.message_id.in_(message_ids))
                        .values(text="").execution_options(synchronize_session=False))
        # Nothing more goes to a number that is no longer held.
        session.execute(update(Message).where(
            Message.id.in_(message_ids), Message.to_number == ERASED_NUMBER,
            Message.status.in_([MessageStatus.pending, MessageStatus.sending]))
            .values(status=MessageStatus.suppressed, next_attempt_at=None)
            .execution_options(synchronize_session=False))
    for job in held["scheduled_jobs"]:
        if job.state == JobState.scheduled:
            job.state, job.finished_at = JobState.cancelled, now
            job.last_reason = "the patient's records were erased"
    for escalation in held["escalations"]:
        escalation.transcript, escalation.summary, escalation.bot_told_patient = [], "", ""
    for patient in held["patients"]:
        patient.first_name = patient.last_name = patient.relation = None
        patient.date_of_birth = None
    contact.phone = f"{ERASED_NUMBER}:{contact.id}"
    contact.first_name = contact.last_name = contact.email = None
    contact.date_of_birth = None
    contact.last_whatsapp_inbound_at = None
    changed.update({"threads": len(held["threads"]), "messages": len(message_ids),
                    "escalations": len(held["escalations"]),
                    "patients": len(held["patients"])})
    audit.record(session, clinic_id=clinic.id, action=audit.ERASE, channel="cli",
                 address=address, actor=actor, contact_id=contact.id,
                 detail=", ".join(f"{n} {what}" for what, n in changed.items()))
    return changed
