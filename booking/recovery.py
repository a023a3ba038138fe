"""The missed-call path, top to bottom: record it, decide, text back, tell the dialogue.

1. `register_missed_call` runs inside the webhook, before it answers: it stores the call once
   per CallSid, as `pending`. That is all Twilio waits for, so fifty calls at once are answered
   quickly, and a crash after the answer loses nothing: the call is in the database.
2. `text_back` runs straight after the answer (and, for anything a crash left `pending`, from
   the gateway's sweeper): it works out whether this caller should hear from us (opted out?
   texted a few minutes ago?), on which channel and in which words, and writes the text-back
   into the outbox, in one transaction that only one process can complete for a call.
3. The gateway then delivers the stored text-back and tells Rasa the thread began
   (`EXTERNAL_missed_call`), so the dialogue knows why the patient is replying.

`record_missed_call` does 1 and 2 in one transaction, for callers that need no fast answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from booking import text_back as wording
from booking.conversations import get_or_create_contact, get_or_create_thread, record_event
from booking.models import (
    Channel,
    ChannelPolicy,
    Clinic,
    Consent,
    Contact,
    Direction,
    FunnelEvent,
    Message,
    MissedCall,
    MissedCallStatus,
    Thread,
    utcnow,
)
from booking.outbox import enqueue

logger = logging.getLogger(__name__)

# Someone who rings three times in a few minutes wants one text, not three.
REPEAT_CALL_WINDOW = timedelta(minutes=10)
# WhatsApp lets a business send free-form text only within 24 hours of the patient's last message.
WHATSAPP_SESSION_WINDOW = timedelta(hours=24)


class AlreadyDecided(Exception):
    """Another process wrote this call's text-back first; this transaction must roll back."""


@dataclass(frozen=True)
class RecordedCall:
    missed_call_id: int
    status: MissedCallStatus  # `pending` for a new call; what was decided for a repeat
    is_new: bool  # False when this CallSid had been recorded already
    will_text: bool  # what the voice answer may promise: a text-back is (or will be) on its way


@dataclass(frozen=True)
class MissedCallOutcome:
    missed_call_id: int
    status: MissedCallStatus
    message_ids: tuple[int, ...]  # the stored text-back, to deliver now
    sender_id: str | None
    channel: Channel | None
    is_new: bool  # False when the decision had been made already


def register_missed_call(
    session: Session,
    *,
    clinic: Clinic,
    caller: str,
    call_sid: str,
    dial_status: str,
    source: str,
    occurred_at: datetime,
) -> RecordedCall:
    """Store a missed call as pending, once per CallSid; the text-back is decided afterwards.

    This is on the path Twilio waits on, so it is a handful of plain statements: look for the
    CallSid, find or add the contact, add the call (a racing duplicate is skipped by the unique
    key, not by an error), and the funnel event.
    """
    existing = session.execute(
        select(MissedCall.id, MissedCall.status)
        .where(MissedCall.clinic_id == clinic.id, MissedCall.call_sid == call_sid)
    ).first()
    if existing is not None:
        return _repeat(*existing)
    contact_id, consent = _contact_for_call(session, clinic_id=clinic.id, phone=caller)
    inserted = session.execute(
        _insert_ignoring_duplicates(session, MissedCall, ("clinic_id", "call_sid")).values(
            clinic_id=clinic.id, contact_id=contact_id, call_sid=call_sid, source=source,
            dial_status=dial_status, occurred_at=occurred_at, status=MissedCallStatus.pending)
    )
    if inserted.rowcount != 1:  # the same CallSid, delivered twice at once
        return _repeat(*session.execute(
            select(MissedCall.id, MissedCall.status)
            .where(MissedCall.clinic_id == clinic.id, MissedCall.call_sid == call_sid)
        ).one())
    session.execute(insert(FunnelEvent).values(
        clinic_id=clinic.id, kind="missed", contact_id=contact_id, occurred_at=utcnow(),
        detail={"source": source, "dial_status": dial_status}))
    return RecordedCall(missed_call_id=inserted.inserted_primary_key[0],
                        status=MissedCallStatus.pending, is_new=True,
                        will_text=consent != Consent.opted_out)


def _contact_for_call(session: Session, *, clinic_id: int, phone: str) -> tuple[int, Consent]:
    def find():
        return session.execute(select(Contact.id, Contact.consent).where(
            Contact.clinic_id == clinic_id, Contact.phone == phone)).first()

    found = find()
    if found is None:
        session.execute(_insert_ignoring_duplicates(session, Contact, ("clinic_id", "phone"))
                        .values(clinic_id=clinic_id, phone=phone, consent=Consent.implied,
                                is_known_patient=False, whatsapp_unreachable=False,
                                created_at=utcnow()))
        found = find()
    return found[0], found[1]


def _insert_ignoring_duplicates(session: Session, model, unique: tuple[str, ...]):
    """INSERT ... ON CONFLICT DO NOTHING, on PostgreSQL and SQLite alike."""
    dialect = session.get_bind().dialect.name
    build = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}.get(dialect)
    if build is None:
        raise NotImplementedError(f"no ON CONFLICT support for {dialect}")
    return build(model).on_conflict_do_nothing(index_elements=list(unique))


def _repeat(missed_call_id: int, status: MissedCallStatus) -> RecordedCall:
    return RecordedCall(missed_call_id=missed_call_id, status=status, is_new=False,
                        will_text=status in (MissedCallStatus.pending, MissedCallStatus.texted,
                                             MissedCallStatus.duplicate))


def text_back(session: Session, *, missed_call_id: int) -> MissedCallOutcome:
    """Decide a pending missed call and store its text-back; a decided call is left alone.

    Raises AlreadyDecided when another process decided it during this transaction (the caller
    rolls back, so nothing is stored twice).
    """
    missed = session.get(MissedCall, missed_call_id)
    if missed is None or missed.status != MissedCallStatus.pending:
        return _outcome(missed, message_ids=(), is_new=False)
    clinic = session.get(Clinic, missed.clinic_id)
    # One caller's calls are decided one at a time (a row lock on PostgreSQL), so three rings
    # at once still make one text-back.
    contact = session.execute(select(Contact).where(Contact.id == missed.contact_id)
                              .with_for_update()).scalar_one()
    occurred_at = missed.occurred_at

    if contact.consent == Consent.opted_out:
        _settle(session, missed, MissedCallStatus.opted_out)
        return _outcome(missed, message_ids=(), is_new=True)
    if _texted_recently(session, contact=contact, before=occurred_at, exclude=missed.id):
        _settle(session, missed, MissedCallStatus.duplicate)
        return _outcome(missed, message_ids=(), is_new=True)

    channel = choose_channel(clinic=clinic, contact=contact, now=occurred_at,
                             last_inbound=_last_inbound_channel(session, contact=contact))
    thread = get_or_create_thread(session, clinic=clinic, contact=contact, channel=channel)
    body = wording.compose(clinic=clinic, contact=contact, now=occurred_at)
    template = _whatsapp_template(clinic=clinic, contact=contact, channel=channel,
                                  now=occurred_at)
    messages = enqueue(session, clinic=clinic, channel=channel, to_number=contact.phone,
                       body=body, author="bot", thread=thread, contact=contact, **template)
    _settle(session, missed, MissedCallStatus.texted, texted_at=occurred_at,
            thread_id=thread.id)
    record_event(session, clinic_id=clinic.id, kind="texted", contact_id=contact.id,
                 thread_id=thread.id, detail={"channel": channel.value})
    return _outcome(missed, message_ids=tuple(m.id for m in messages), is_new=True,
                    thread=thread, channel=channel)


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
    recorded = register_missed_call(session, clinic=clinic, caller=caller, call_sid=call_sid,
                                    dial_status=dial_status, source=source,
                                    occurred_at=occurred_at)
    if not recorded.is_new:
        return _outcome(session.get(MissedCall, recorded.missed_call_id), message_ids=(),
                        is_new=False)
    return text_back(session, missed_call_id=recorded.missed_call_id)


def undecided_missed_calls(session: Session, *, recorded_before: datetime,
                           limit: int = 50) -> list[int]:
    """Calls still pending: their webhook answered, but the process died before deciding."""
    return list(session.execute(
        select(MissedCall.id).where(MissedCall.status == MissedCallStatus.pending,
                                    MissedCall.occurred_at < recorded_before)
        .order_by(MissedCall.id).limit(limit)
    ).scalars())


def _settle(session: Session, missed: MissedCall, status: MissedCallStatus, **values) -> None:
    """Compare-and-set pending -> decided: whoever gets here second rolls back."""
    session.flush()
    changed = session.execute(
        update(MissedCall)
        .where(MissedCall.id == missed.id, MissedCall.status == MissedCallStatus.pending)
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        raise AlreadyDecided(f"missed call {missed.id} was decided elsewhere")
    missed.status = status
    for key, value in values.items():
        setattr(missed, key, value)


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
