"""Handing a thread to a person: the escalation record, the staff alert, the patient's message.

An escalation is opened by the bot (urgent, billing, "a person please", or the bot is lost),
alerts the right staff at once (or, for a non-urgent one while the clinic is closed, when it
opens), and lives on as open -> acknowledged -> resolved. Every alert and acknowledgement is
an `EscalationAlert` row: the audit trail of who was told what, and who took it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking.calls.text_back import describe_opening
from booking.clinics.opening_hours import is_open_at, next_opening
from booking.escalation.on_call import alert_recipients, billing_contacts, staff_on_call
from booking.escalation.staff_alerts import (
    LABEL,
    alert_text,
    clip,
    escalation_policy,
    queue_alerts,
    schedule_next_alert,
)
from booking.messaging.conversations import record_event, transcript
from booking.models import (
    Appointment,
    AppointmentStatus,
    Clinic,
    Escalation,
    EscalationAlert,
    EscalationReason,
    EscalationStatus,
    StaffMember,
    Thread,
    ThreadState,
)
from booking.outreach import jobs
from booking.settings import Settings

PRIORITY = {EscalationReason.urgent: 1, EscalationReason.human: 2,
            EscalationReason.not_understood: 2, EscalationReason.bot_unavailable: 2,
            EscalationReason.billing: 3}
TRANSCRIPT_LIMIT = 500
# Staff acknowledge a text alert by quoting its code: random, so a spoofed sender id cannot
# guess it the way it could guess a sequential escalation number (about a million codes). No
# 0/O, 1/I/L: it is read off a phone screen and typed back.
ACK_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
ACK_CODE_LENGTH = 4

__all__ = ["Handover", "PRIORITY", "acknowledge", "alert_text", "hand_over", "new_ack_code",
           "patient_message", "resolve", "staff_on_call", "summarise"]


@dataclass(frozen=True)
class Handover:
    escalation_id: int
    patient_message: str  # what the bot tells the patient now
    alert_message_ids: tuple[int, ...]  # staff alerts stored in the outbox, to send now


def patient_message(*, clinic: Clinic, reason: EscalationReason, instant: datetime,
                    billing_contact: StaffMember | None = None) -> str:
    """What the patient is told: safety first, then who will get back to them and when."""
    policy = escalation_policy(clinic)
    open_now = is_open_at(clinic, instant)
    if reason == EscalationReason.urgent:
        # Open or closed, someone is alerted at once: the clinic's "we're closed, we'll pick it
        # up first thing" would contradict the call-back, so it is not added here.
        return " ".join([clinic.emergency_info
                         or "If this is life-threatening, call your local emergency number now.",
                         policy["urgent_callback"]
                         or (f"The on-call clinician at {clinic.name} has been alerted and will "
                             f"call you back on this number within "
                             f"{policy['urgent_callback_minutes']} minutes.")])
    if reason == EscalationReason.billing:
        if policy["billing_reply"]:
            return policy["billing_reply"]
        who = (f"{billing_contact.name} at {clinic.name}, who looks after billing,"
               if billing_contact else f"Our billing team at {clinic.name}")
        return f"Thanks. {who} will reply to you here {policy['billing_reply_within']}."
    if policy["human_reply"]:
        return policy["human_reply"]
    opener = ("Sorry, I can't help with that by text." if reason == EscalationReason.not_understood
              else "Thanks.")
    if open_now:
        return (f"{opener} A member of the {clinic.name} team has your message and will reply "
                "to you here shortly.")
    opening = next_opening(clinic, instant)
    when = (f"after we open at {describe_opening(opening, instant.astimezone(opening.tzinfo))}"
            if opening else "as soon as they can")
    return (f"{opener} We're closed right now; a member of the {clinic.name} team will reply "
            f"to you here {when}. If it's urgent, say so.")


def _appointment_note(session: Session, *, clinic: Clinic, contact_id: int,
                      instant: datetime) -> str | None:
    """The patient's next booked appointment, else their latest one, for the summary."""
    query = select(Appointment).where(Appointment.clinic_id == clinic.id,
                                      Appointment.contact_id == contact_id)
    appointment = session.execute(
        query.where(Appointment.status == AppointmentStatus.booked,
                    Appointment.starts_at >= instant)
        .order_by(Appointment.starts_at).limit(1)
    ).scalar_one_or_none() or session.execute(
        query.order_by(Appointment.starts_at.desc()).limit(1)
    ).scalar_one_or_none()
    if appointment is None:
        return None
    local = appointment.starts_at.astimezone(ZoneInfo(clinic.timezone))
    return (f"{appointment.service.name} {local:%a %d %b %H:%M} "
            f"({appointment.status.value})")


def summarise(*, reason: EscalationReason, intent: str | None, red_flag: dict | None,
              last_message: str, appointment: str | None = None) -> str:
    parts = [f"{LABEL[reason]}: patient wrote \"{clip(last_message, 200)}\""]
    if red_flag:
        parts.append(f"red flag: {red_flag.get('description') or red_flag.get('rule')}")
    if intent:
        parts.append(f"intent: {intent}")
    if appointment:
        parts.append(f"appointment: {appointment}")
    return "; ".join(parts)


def hand_over(
    session: Session,
    *,
    thread: Thread,
    reason: EscalationReason,
    intent: str | None,
    red_flag: dict | None,
    last_message: str,
    instant: datetime,
    settings: Settings | None = None,
) -> Handover:
    """Open an escalation, hand the thread to staff, alert them, and word the patient's reply.

    A non-urgent escalation while the clinic is closed wakes nobody: it waits in the console
    (and email/webhook), and the text alert goes out when the clinic opens.
    """
    clinic = thread.clinic
    deferred = (reason != EscalationReason.urgent and not is_open_at(clinic, instant)
                and next_opening(clinic, instant) is not None)
    recipients = ([] if deferred else
                  alert_recipients(session, clinic=clinic, reason=reason, instant=instant))
    billing = billing_contacts(clinic)
    told_patient = patient_message(clinic=clinic, reason=reason, instant=instant,
                                   billing_contact=billing[0] if billing else None)
    escalation = Escalation(
        clinic_id=clinic.id, thread_id=thread.id, contact_id=thread.contact_id, reason=reason,
        priority=PRIORITY[reason],
        summary=summarise(reason=reason, intent=intent, red_flag=red_flag,
                          last_message=last_message,
                          appointment=_appointment_note(session, clinic=clinic,
                                                        contact_id=thread.contact_id,
                                                        instant=instant)),
        red_flag_rule=(red_flag or {}).get("rule"),
        transcript=transcript(session, thread=thread, limit=TRANSCRIPT_LIMIT),
        bot_told_patient=told_patient, status=EscalationStatus.open, opened_at=instant,
        alert_count=0, ack_code=new_ack_code(session, clinic=clinic),
    )
    session.add(escalation)
    thread.state = ThreadState.handed_off
    jobs.cancel_pending(session, contact_ids=[thread.contact_id], now=instant,
                        reason="handed to staff", kinds=jobs.FOLLOW_UPS_AND_OFFERS)
    session.flush()
    alert_ids = queue_alerts(session, escalation=escalation, thread=thread,
                             recipients=recipients, kind="alert", instant=instant,
                             settings=settings)
    if deferred:
        escalation.next_alert_at = next_opening(clinic, instant)
    else:
        escalation.alert_count = 1
        schedule_next_alert(escalation, clinic=clinic, sent_at=instant)
    record_event(session, clinic_id=clinic.id, kind="escalated", contact_id=thread.contact_id,
                 thread_id=thread.id, detail={"reason": reason.value,
                                              "red_flag": escalation.red_flag_rule})
    return Handover(escalation_id=escalation.id, patient_message=told_patient,
                    alert_message_ids=alert_ids)


def new_ack_code(session: Session, *, clinic: Clinic) -> str:
    """A code none of the clinic's open escalations has, so "ACK <code>" names one of them."""
    while True:
        code = "".join(secrets.choice(ACK_CODE_ALPHABET) for _ in range(ACK_CODE_LENGTH))
        taken = session.execute(select(Escalation.id).where(
            Escalation.clinic_id == clinic.id, Escalation.ack_code == code,
            Escalation.status == EscalationStatus.open).limit(1)).first()
        if taken is None:
            return code


def acknowledge(session: Session, *, escalation: Escalation, staff: StaffMember, channel: str,
                instant: datetime) -> bool:
    """Staff took it: no more re-alerts. False when it was already acknowledged or resolved."""
    if escalation.status != EscalationStatus.open:
        return False
    escalation.status = EscalationStatus.acknowledged
    escalation.acknowledged_at = instant
    escalation.acknowledged_by_id = staff.id
    escalation.next_alert_at = None
    session.add(EscalationAlert(escalation_id=escalation.id, staff_id=staff.id, kind="ack",
                                channel=channel, created_at=instant))
    return True


def resolve(session: Session, *, escalation: Escalation, staff: StaffMember,
            instant: datetime) -> bool:
    """Done with it. False when it was already resolved."""
    if escalation.status == EscalationStatus.resolved:
        return False
    if escalation.status == EscalationStatus.open:
        acknowledge(session, escalation=escalation, staff=staff, channel="console",
                    instant=instant)
    escalation.status = EscalationStatus.resolved
    escalation.resolved_at = instant
    escalation.resolved_by_id = staff.id
    escalation.next_alert_at = None
    session.add(EscalationAlert(escalation_id=escalation.id, staff_id=staff.id, kind="resolve",
                                channel="console", created_at=instant))
    return True


def open_escalations(session: Session, *, thread: Thread) -> list[Escalation]:
    """The thread's escalations not yet resolved, newest first."""
    return list(session.execute(
        select(Escalation).where(Escalation.thread_id == thread.id,
                                 Escalation.status != EscalationStatus.resolved)
        .order_by(Escalation.opened_at.desc(), Escalation.id.desc())
    ).scalars())
