"""Texts from clinic staff to a clinic number ("ACK 12"): kept out of the patient dialogue.

The Twilio connector calls `handle_staff_message` for every inbound message before keyword or
dialogue handling. A sender who is on the clinic's staff list (by `StaffMember.phone`) never
reaches the bot as a patient; what their message means (acknowledging an escalation, ...) is
decided here.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking.models import Channel, Clinic, Direction, Message, MessageStatus, StaffMember, utcnow

logger = logging.getLogger(__name__)


def find_staff(session: Session, *, clinic: Clinic, phone: str) -> StaffMember | None:
    return session.execute(
        select(StaffMember).where(StaffMember.clinic_id == clinic.id, StaffMember.phone == phone)
        .order_by(StaffMember.id).limit(1)
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

    For now a staff message is only logged (author "staff:<id>"); escalation acknowledgement
    builds on this. A MessageSid seen before (Twilio retrying) is logged once and answered
    with no replies.
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
    return []
