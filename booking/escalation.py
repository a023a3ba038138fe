"""Handing a thread to a person: the escalation record, the staff alert, the patient's message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking.conversations import record_event, transcript
from booking.models import (
    Channel,
    Clinic,
    Escalation,
    EscalationAlert,
    EscalationReason,
    EscalationStatus,
    OnCallShift,
    StaffMember,
    Thread,
    ThreadState,
)
from booking.opening_hours import is_open_at
from booking.outbox import enqueue
from booking.settings import get_settings

PRIORITY = {EscalationReason.urgent: 1, EscalationReason.human: 2,
            EscalationReason.not_understood: 2, EscalationReason.billing: 3}
DEFAULT_ACK_MINUTES = {EscalationReason.urgent: 5, EscalationReason.human: 30,
                       EscalationReason.not_understood: 30, EscalationReason.billing: 120}
LABEL = {EscalationReason.urgent: "URGENT", EscalationReason.human: "Wants a person",
         EscalationReason.not_understood: "Bot could not help",
         EscalationReason.billing: "Billing"}


@dataclass(frozen=True)
class Handover:
    escalation_id: int
    patient_message: str  # what the bot tells the patient now
    alert_message_ids: tuple[int, ...]  # staff alerts stored in the outbox, to send now


def staff_on_call(session: Session, *, clinic: Clinic, instant: datetime) -> list[StaffMember]:
    """Who the rota says is on call at this instant, in the clinic's local wall time."""
    local = instant.astimezone(ZoneInfo(clinic.timezone))
    shifts = session.execute(
        select(OnCallShift).where(OnCallShift.clinic_id == clinic.id,
                                  OnCallShift.weekday == local.weekday())
    ).scalars()
    wall = local.time()
    return [shift.staff for shift in shifts
            if shift.starts <= wall < shift.ends or (shift.ends <= shift.starts
                                                    and (wall >= shift.starts
                                                         or wall < shift.ends))]


def alert_recipients(session: Session, *, clinic: Clinic, reason: EscalationReason,
                     instant: datetime) -> list[StaffMember]:
    staff = [s for s in clinic.staff if s.phone]
    if reason == EscalationReason.billing:
        billing = [s for s in staff if s.handles_billing]
        if billing:
            return billing
    on_call = [s for s in staff_on_call(session, clinic=clinic, instant=instant) if s.phone]
    return on_call or [s for s in staff if s.is_backup] or staff[:1]


def patient_message(*, clinic: Clinic, reason: EscalationReason, instant: datetime) -> str:
    policy = (clinic.settings or {}).get("escalation", {})
    if reason == EscalationReason.urgent:
        parts = [clinic.emergency_info or "If this is life-threatening, call emergency services now.",
                 policy.get("urgent_callback", "A clinician from "
                            f"{clinic.name} has been alerted and will call you back shortly.")]
        if not is_open_at(clinic, instant) and clinic.out_of_hours_info:
            parts.append(clinic.out_of_hours_info)
        return " ".join(parts)
    if reason == EscalationReason.billing:
        return policy.get("billing_reply", f"Thanks. Our billing team at {clinic.name} will "
                          "reply to you here within one working day.")
    return policy.get("human_reply", f"Thanks. A member of the {clinic.name} team will reply "
                      "to you here as soon as they can.")


def summarise(*, reason: EscalationReason, intent: str | None, red_flag: dict | None,
              last_message: str) -> str:
    parts = [f"{LABEL[reason]}: patient wrote \"{_clip(last_message, 200)}\""]
    if red_flag:
        parts.append(f"red flag: {red_flag.get('description') or red_flag.get('rule')}")
    if intent:
        parts.append(f"intent: {intent}")
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
) -> Handover:
    """Open an escalation, hand the thread to staff, alert them, and word the patient's reply."""
    clinic = thread.clinic
    told_patient = patient_message(clinic=clinic, reason=reason, instant=instant)
    escalation = Escalation(
        clinic_id=clinic.id, thread_id=thread.id, contact_id=thread.contact_id, reason=reason,
        priority=PRIORITY[reason],
        summary=summarise(reason=reason, intent=intent, red_flag=red_flag,
                          last_message=last_message),
        red_flag_rule=(red_flag or {}).get("rule"),
        transcript=transcript(session, thread=thread), bot_told_patient=told_patient,
        status=EscalationStatus.open, opened_at=instant,
    )
    session.add(escalation)
    thread.state = ThreadState.handed_off
    session.flush()
    ack_minutes = (clinic.settings or {}).get("escalation", {}).get(
        "ack_timeout_minutes", DEFAULT_ACK_MINUTES[reason])
    escalation.next_alert_at = instant + timedelta(minutes=ack_minutes)
    alert_ids = _alert(session, escalation=escalation, thread=thread,
                       recipients=alert_recipients(session, clinic=clinic, reason=reason,
                                                   instant=instant))
    record_event(session, clinic_id=clinic.id, kind="escalated", contact_id=thread.contact_id,
                 thread_id=thread.id, detail={"reason": reason.value,
                                              "red_flag": escalation.red_flag_rule})
    return Handover(escalation_id=escalation.id, patient_message=told_patient,
                    alert_message_ids=alert_ids)


def alert_text(*, escalation: Escalation, thread: Thread) -> str:
    contact = thread.contact
    who = " ".join(filter(None, [contact.first_name, contact.last_name])) or "New caller"
    known = "known patient" if contact.is_known_patient else "not on file"
    recent = [line for line in escalation.transcript if line["author"] == "patient"][-3:]
    said = " / ".join(_clip(line["body"], 160) for line in recent)
    link = f"{get_settings().console_public_url}/console/threads/{thread.id}"
    return (f"{LABEL[escalation.reason]} {thread.clinic.name}: {who} ({contact.phone}, {known}). "
            f"Said: \"{said}\". Bot told them: \"{_clip(escalation.bot_told_patient, 160)}\". "
            f"Reply ACK {escalation.id} to take it. {link}")


def _alert(session: Session, *, escalation: Escalation, thread: Thread,
           recipients: list[StaffMember]) -> tuple[int, ...]:
    text = alert_text(escalation=escalation, thread=thread)
    ids: list[int] = []
    for staff in recipients:
        channel = staff.alert_channel or Channel.sms
        messages = enqueue(session, clinic=thread.clinic, channel=channel, to_number=staff.phone,
                           body=text, author="system")
        session.add(EscalationAlert(escalation_id=escalation.id, staff_id=staff.id,
                                    kind="alert", channel=channel.value,
                                    message_id=messages[0].id))
        ids.extend(m.id for m in messages)
    escalation.alert_count += 1
    return tuple(ids)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
