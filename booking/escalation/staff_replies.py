"""Texts from clinic staff to a clinic number ("ACK 7KQ2"): kept out of the patient dialogue.

The Twilio connector calls `handle_staff_message` for every inbound message before keyword or
dialogue handling. A sender who is on the clinic's staff list (by `StaffMember.phone`) never
reaches the bot as a patient. "ACK 7KQ2" acknowledges the escalation of that clinic whose alert
printed the code 7KQ2 (and stops its re-alerts). A sender id can be spoofed, so nothing less
acknowledges: not the escalation's number, not a bare "ACK" (answered with the codes of what is
open for this person; the answer goes to the real phone). Anything else is answered with a
one-line help. Every staff message is logged (author "staff:<id>").

Codes are short, so guessing is limited: each wrong code is in the audit trail, and after
`WRONG_CODES_PER_HOUR` of them from one phone within an hour, further ACKs from it are ignored
until the hour has passed; when the limit is reached the phone is told once, the clinic's
admins are alerted by text and the block is recorded.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking.escalation.escalations import acknowledge
from booking.escalation.staff_alerts import thread_link
from booking.messaging.outbox import enqueue
from booking.models import (
    AuditEvent,
    Channel,
    Clinic,
    ConsoleRole,
    Direction,
    Escalation,
    EscalationAlert,
    EscalationStatus,
    Message,
    MessageStatus,
    StaffMember,
    ThreadState,
    utcnow,
)
from booking.records import audit
from booking.settings import get_settings

logger = logging.getLogger(__name__)

ACK = re.compile(r"^\s*ack(?:nowledged?)?\b[\s#:.]*([a-z0-9]+)?\s*[.!]*\s*$", re.IGNORECASE)
WRONG_CODES_PER_HOUR = 5


# Built once: every patient message is first checked against the clinic's staff.
_STAFF_BY_PHONE = (select(StaffMember)
                   .where(StaffMember.clinic_id == bindparam("clinic_id"),
                          StaffMember.phone == bindparam("phone"))
                   .order_by(StaffMember.id).limit(1))


def find_staff(session: Session, *, clinic: Clinic, phone: str) -> StaffMember | None:
    return session.execute(_STAFF_BY_PHONE, {"clinic_id": clinic.id, "phone": phone}
                           ).scalar_one_or_none()


def handle_staff_message(
    session: Session,
    *,
    clinic: Clinic,
    from_number: str,
    body: str,
    channel: Channel = Channel.sms,
    to_number: str | None = None,
    twilio_sid: str | None = None,
) -> list[Message] | None:
    """None when the sender is not staff; otherwise the outbound replies to send (maybe none).

    A MessageSid seen before (Twilio retrying) is logged once and answered with no replies.
    """
    staff = find_staff(session, clinic=clinic, phone=from_number)
    if staff is None:
        return None
    try:
        with session.begin_nested():
            session.add(Message(
                clinic_id=clinic.id, direction=Direction.inbound, channel=channel,
                author=f"staff:{staff.id}", from_number=from_number,
                to_number=to_number or clinic.sms_number or "", body=body,
                twilio_sid=twilio_sid, status=MessageStatus.received, created_at=utcnow(),
            ))
    except IntegrityError:
        return []
    logger.info("message from staff member %s at clinic %s", staff.id, clinic.slug)
    match = ACK.match(body or "")
    code = match[1].upper() if match is not None and match[1] else None
    admin_alerts: list[Message] = []
    if match is None:
        text = (f"Ringback ({clinic.name}): reply ACK and the code from the alert to take it, "
                f"e.g. ACK 7KQ2. Queue: {get_settings().console_public_url.rstrip('/')}"
                "/console/escalations")
    elif code is not None and _wrong_codes_this_hour(
            session, clinic=clinic, phone=from_number) >= WRONG_CODES_PER_HOUR:
        logger.info("ACK from staff member %s ignored: too many wrong codes", staff.id)
        return []
    else:
        text = _acknowledge(session, clinic=clinic, staff=staff, channel=channel, code=code)
        guessed_wrong = (code is not None
                         and _escalation_with_code(session, clinic=clinic, code=code) is None)
        if guessed_wrong and _wrong_code(session, clinic=clinic, staff=staff, channel=channel,
                                         phone=from_number, code=code) >= WRONG_CODES_PER_HOUR:
            text = (f"{WRONG_CODES_PER_HOUR} wrong codes from this phone within an hour: ACK "
                    "by text from it is paused for an hour and the clinic's admins are told. "
                    "Use the console meanwhile.")
            admin_alerts = _block(session, clinic=clinic, staff=staff, channel=channel,
                                  phone=from_number)
    if channel == Channel.whatsapp and not clinic.whatsapp_number:
        channel = Channel.sms
    return enqueue(session, clinic=clinic, channel=channel, to_number=from_number, body=text,
                   author="system") + admin_alerts


def _wrong_codes_this_hour(session: Session, *, clinic: Clinic, phone: str) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.clinic_id == clinic.id, AuditEvent.action == audit.ACK_WRONG_CODE,
        AuditEvent.address == phone, AuditEvent.occurred_at > utcnow() - timedelta(hours=1)))


def _wrong_code(session: Session, *, clinic: Clinic, staff: StaffMember, channel: Channel,
                phone: str, code: str) -> int:
    """Record the wrong code, then count this hour's, this one included (count, then check)."""
    audit.record(session, clinic_id=clinic.id, action=audit.ACK_WRONG_CODE,
                 channel=channel.value, address=phone, staff=staff, detail=f"ACK {code[:8]}")
    session.flush()
    return _wrong_codes_this_hour(session, clinic=clinic, phone=phone)


def _block(session: Session, *, clinic: Clinic, staff: StaffMember, channel: Channel,
           phone: str) -> list[Message]:
    """Record the block and text the clinic's admins who have a phone (not this one)."""
    audit.record(session, clinic_id=clinic.id, action=audit.ACK_GUESSES_BLOCKED,
                 channel=channel.value, address=phone, staff=staff,
                 detail=f"{WRONG_CODES_PER_HOUR} wrong ACK codes within an hour")
    logger.warning("clinic %s: ACK by text paused for staff member %s after %s wrong codes",
                   clinic.slug, staff.id, WRONG_CODES_PER_HOUR)
    admins = session.execute(select(StaffMember).where(
        StaffMember.clinic_id == clinic.id, StaffMember.console_role == ConsoleRole.admin,
        StaffMember.console_enabled, StaffMember.phone.is_not(None),
        StaffMember.phone != phone)).scalars()
    return [message for admin in admins for message in enqueue(
        session, clinic=clinic, channel=Channel.sms, to_number=admin.phone, author="system",
        body=(f"Ringback ({clinic.name}): {WRONG_CODES_PER_HOUR} wrong ACK codes within an "
              f"hour from {staff.name}'s phone. ACK by text from it is paused for an hour. "
              "If they did not send them, someone may be spoofing their number."))]


def _acknowledge(session: Session, *, clinic: Clinic, staff: StaffMember, channel: Channel,
                 code: str | None) -> str:
    if code is None:
        candidates = [e for e in _open_alerted_to(session, clinic=clinic, staff=staff)
                      if e.ack_code]
        if not candidates:
            return ("Nothing open was sent to you. To take an escalation, reply ACK and the "
                    "code from its alert, e.g. ACK 7KQ2.")
        codes = ", ".join(f"ACK {e.ack_code}" for e in candidates)
        return f"Nothing was acknowledged: reply with the code from the alert ({codes})."
    escalation = _escalation_with_code(session, clinic=clinic, code=code)
    if escalation is None:
        logger.info("staff member %s sent an acknowledgement code that matches nothing",
                    staff.id)
        return (f"That code matches no escalation at {clinic.name}: nothing was acknowledged. "
                "Reply ACK and the code from the alert, e.g. ACK 7KQ2.")
    if not acknowledge(session, escalation=escalation, staff=staff, channel=channel.value,
                       instant=utcnow()):
        taken_by = (session.get(StaffMember, escalation.acknowledged_by_id)
                    if escalation.acknowledged_by_id else None)
        who = f" by {taken_by.name}" if taken_by else ""
        return f"Escalation {escalation.id} was already {escalation.status.value}{who}."
    thread = escalation.thread
    # From their phone: the address is the number the text came from (matched to them).
    audit.record(session, clinic_id=clinic.id, action=audit.ACKNOWLEDGE, channel=channel.value,
                 address=staff.phone or "", staff=staff, escalation_id=escalation.id,
                 thread_id=thread.id, contact_id=escalation.contact_id)
    if thread.state == ThreadState.handed_off and thread.handed_off_to_id is None:
        thread.handed_off_to_id = staff.id
    logger.info("escalation %s acknowledged by staff member %s by %s", escalation.id, staff.id,
                channel.value)
    return (f"Thanks {staff.name}: escalation {escalation.id} is yours; no more alerts will go "
            f"out for it. Patient {thread.contact.phone}. {thread_link(thread.id)}")


def _escalation_with_code(session: Session, *, clinic: Clinic, code: str) -> Escalation | None:
    return session.execute(
        select(Escalation).where(Escalation.clinic_id == clinic.id,
                                 Escalation.ack_code == code)
        # A code is unique among a clinic's open escalations; an old one may share it.
        .order_by(Escalation.status != EscalationStatus.open, Escalation.id.desc()).limit(1)
    ).scalar_one_or_none()


def _open_alerted_to(session: Session, *, clinic: Clinic,
                     staff: StaffMember) -> list[Escalation]:
    return list(session.execute(
        select(Escalation)
        .where(Escalation.clinic_id == clinic.id, Escalation.status == EscalationStatus.open,
               Escalation.id.in_(select(EscalationAlert.escalation_id)
                                 .where(EscalationAlert.staff_id == staff.id,
                                        EscalationAlert.kind.in_(["alert", "realert"]))))
        .order_by(Escalation.opened_at.desc())
    ).scalars())
