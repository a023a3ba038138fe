"""The missed-call path, top to bottom: record it, decide, text back, tell the dialogue.

1. `record_missed_call` runs inside the webhook, before it answers: it stores the call (once per
   CallSid), works out whether this caller should hear from us, and writes the text-back into
   the outbox in the same transaction. A crash after the webhook answered loses nothing: the
   outbox sweeper sends whatever is stored and due.
2. The caller then delivers the stored text-back and tells Rasa the thread began
   (`EXTERNAL_missed_call`), so the dialogue knows why the patient is replying.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking import text_back
from booking.conversations import get_or_create_contact, get_or_create_thread, record_event
from booking.models import (
    Channel,
    ChannelPolicy,
    Clinic,
    Consent,
    Contact,
    Direction,
    Message,
    MissedCall,
    MissedCallStatus,
    Thread,
)
from booking.outbox import enqueue

logger = logging.getLogger(__name__)

# Someone who rings three times in a few minutes wants one text, not three.
REPEAT_CALL_WINDOW = timedelta(minutes=10)
# WhatsApp lets a business send free-form text only within 24 hours of the patient's last message.
WHATSAPP_SESSION_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class MissedCallOutcome:
    missed_call_id: int
    status: MissedCallStatus
    message_ids: tuple[int, ...]  # the stored text-back, to deliver now
    sender_id: str | None
    channel: Channel | None
    is_new: bool  # False when this CallSid had been recorded already


def record_missed_call(
    session: Session,
    *,
    clinic: Clinic,
    caller: str,
    call_sid: str,
    dial_status: str,
    source: str,
    occurred_at: datetime,
) -> MissedCallOutcome:
    """Store a missed call and, when the caller should hear from us, its text-back."""
    existing = _find(session, clinic=clinic, call_sid=call_sid)
    if existing is not None:
        return _outcome(existing, message_ids=(), is_new=False)

    contact = get_or_create_contact(session, clinic=clinic, phone=caller)
    # One caller's calls are decided one at a time (PostgreSQL row lock), so three rings at
    # once still make one text-back.
    session.execute(select(Contact.id).where(Contact.id == contact.id).with_for_update())
    missed = MissedCall(clinic_id=clinic.id, contact_id=contact.id, call_sid=call_sid,
                        source=source, dial_status=dial_status, occurred_at=occurred_at)
    try:
        with session.begin_nested():
            session.add(missed)
    except IntegrityError:  # the same CallSid, delivered twice at once
        return _outcome(_find(session, clinic=clinic, call_sid=call_sid), message_ids=(),
                        is_new=False)
    record_event(session, clinic_id=clinic.id, kind="missed", contact_id=contact.id,
                 detail={"source": source, "dial_status": dial_status})

    if contact.consent == Consent.opted_out:
        missed.status = MissedCallStatus.opted_out
        return _outcome(missed, message_ids=(), is_new=True)
    if _texted_recently(session, contact=contact, before=occurred_at, exclude=missed.id):
        missed.status = MissedCallStatus.duplicate
        return _outcome(missed, message_ids=(), is_new=True)

    channel = choose_channel(clinic=clinic, contact=contact, now=occurred_at,
                             last_inbound=_last_inbound_channel(session, contact=contact))
    thread = get_or_create_thread(session, clinic=clinic, contact=contact, channel=channel)
    body = text_back.compose(clinic=clinic, contact=contact, now=occurred_at)
    template = _whatsapp_template(clinic=clinic, contact=contact, channel=channel,
                                  now=occurred_at)
    messages = enqueue(session, clinic=clinic, channel=channel, to_number=contact.phone,
                       body=body, author="bot", thread=thread, contact=contact, **template)
    missed.status = MissedCallStatus.texted
    missed.texted_at = occurred_at
    missed.thread_id = thread.id
    record_event(session, clinic_id=clinic.id, kind="texted", contact_id=contact.id,
                 thread_id=thread.id, detail={"channel": channel.value})
    return _outcome(missed, message_ids=tuple(m.id for m in messages), is_new=True,
                    thread=thread, channel=channel)


def record_answered_call(
    session: Session, *, clinic: Clinic, caller: str, call_sid: str, occurred_at: datetime
) -> None:
    """An answered call is logged too, so the clinic's funnel shows what share was missed."""
    if _find(session, clinic=clinic, call_sid=call_sid) is not None:
        return
    contact = get_or_create_contact(session, clinic=clinic, phone=caller)
    session.add(MissedCall(clinic_id=clinic.id, contact_id=contact.id, call_sid=call_sid,
                           source="twilio", dial_status="completed",
                           status=MissedCallStatus.answered, occurred_at=occurred_at))
    record_event(session, clinic_id=clinic.id, kind="answered", contact_id=contact.id)


def choose_channel(*, clinic: Clinic, contact: Contact, now: datetime,
                   last_inbound: Channel | None = None) -> Channel:
    """The channel for a text-back: the clinic's policy, bent by what we know of the contact.

    - `sms` policy, or no WhatsApp number: SMS.
    - WhatsApp failed to reach this contact before, or (`whatsapp_then_sms`) they last wrote to
      us by SMS: SMS, if the clinic has an SMS number.
    - WhatsApp outside the 24-hour window needs the clinic's approved template; without one,
      SMS if there is an SMS number.
    - otherwise WhatsApp.
    """
    if clinic.channel_policy == ChannelPolicy.sms or not clinic.whatsapp_number:
        return Channel.sms
    if not clinic.sms_number:
        return Channel.whatsapp
    if contact.whatsapp_unreachable:
        return Channel.sms
    if clinic.channel_policy == ChannelPolicy.whatsapp_then_sms and last_inbound == Channel.sms:
        return Channel.sms
    if not in_whatsapp_window(contact, now) and not _template_sid(clinic):
        return Channel.sms
    return Channel.whatsapp


def in_whatsapp_window(contact: Contact, now: datetime) -> bool:
    """Whether WhatsApp still allows free-form text: the patient wrote within 24 hours."""
    last = contact.last_whatsapp_inbound_at
    return last is not None and timedelta(0) <= now - last < WHATSAPP_SESSION_WINDOW


def _template_sid(clinic: Clinic) -> str | None:
    return (clinic.settings or {}).get("whatsapp", {}).get("text_back_content_sid")


def _whatsapp_template(*, clinic: Clinic, contact: Contact, channel: Channel,
                       now: datetime) -> dict:
    """Outside the 24-hour window WhatsApp only delivers an approved template (Content API)."""
    if channel != Channel.whatsapp or in_whatsapp_window(contact, now):
        return {}
    content_sid = _template_sid(clinic)
    if not content_sid:
        raise ValueError(f"clinic {clinic.slug} sends WhatsApp but has no approved text-back "
                         "template (settings.whatsapp.text_back_content_sid)")
    first_name = contact.first_name if contact.is_known_patient else ""
    return {"content_sid": content_sid,
            "content_variables": {"1": clinic.name, "2": first_name or "there"}}


def _last_inbound_channel(session: Session, *, contact: Contact) -> Channel | None:
    """The channel this contact last wrote to the clinic on, if they ever did."""
    return session.execute(
        select(Message.channel)
        .where(Message.clinic_id == contact.clinic_id, Message.direction == Direction.inbound,
               Message.from_number.in_([contact.phone, f"whatsapp:{contact.phone}"]))
        .order_by(Message.id.desc()).limit(1)
    ).scalar_one_or_none()


def _find(session: Session, *, clinic: Clinic, call_sid: str) -> MissedCall | None:
    return session.execute(
        select(MissedCall).where(MissedCall.clinic_id == clinic.id, MissedCall.call_sid == call_sid)
    ).scalar_one_or_none()


def _texted_recently(session: Session, *, contact: Contact, before: datetime,
                     exclude: int) -> bool:
    return session.execute(
        select(MissedCall.id).where(
            MissedCall.contact_id == contact.id,
            MissedCall.id != exclude,
            MissedCall.status == MissedCallStatus.texted,
            MissedCall.texted_at >= before - REPEAT_CALL_WINDOW,
        ).limit(1)
    ).first() is not None


def _outcome(missed: MissedCall, *, message_ids: tuple[int, ...], is_new: bool,
             thread: Thread | None = None, channel: Channel | None = None) -> MissedCallOutcome:
    return MissedCallOutcome(
        missed_call_id=missed.id, status=missed.status, message_ids=message_ids,
        sender_id=thread.sender_id if thread else None, channel=channel, is_new=is_new,
    )
