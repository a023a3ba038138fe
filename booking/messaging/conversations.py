"""Contacts, threads and the inbound message log, always scoped to one clinic."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from booking.db import insert_ignoring_duplicates
from booking.messaging.outbox import enqueue
from booking.models import (
    Channel,
    Clinic,
    Contact,
    Direction,
    FunnelEvent,
    Message,
    MessageStatus,
    Thread,
    utcnow,
)

SENDER_SEPARATOR = ":"


def sender_id_for(*, clinic_slug: str, phone: str) -> str:
    """The Rasa conversation id: it names the clinic and the patient so threads never mix."""
    return f"{clinic_slug}{SENDER_SEPARATOR}{phone}"


def parse_sender_id(sender_id: str) -> tuple[str, str]:
    clinic_slug, separator, phone = sender_id.partition(SENDER_SEPARATOR)
    if not separator or not clinic_slug or not phone.startswith("+"):
        raise ValueError(f"not a Ringback sender id: {sender_id!r}")
    return clinic_slug, phone


def get_or_create_contact(session: Session, *, clinic: Clinic, phone: str) -> Contact:
    contact = session.execute(
        select(Contact).where(Contact.clinic_id == clinic.id, Contact.phone == phone)
    ).scalar_one_or_none()
    if contact is not None:
        return contact
    try:
        with session.begin_nested():
            contact = Contact(clinic_id=clinic.id, phone=phone)
            session.add(contact)
    except IntegrityError:
        # Another process created it between our look-up and insert.
        contact = session.execute(
            select(Contact).where(Contact.clinic_id == clinic.id, Contact.phone == phone)
        ).scalar_one()
    return contact


def get_or_create_thread(
    session: Session, *, clinic: Clinic, contact: Contact, channel: Channel,
    lock: bool = False,
) -> Thread:
    """`lock`: hold the thread's row (not its key) until the transaction ends, so one writer
    at a time adds to it (PostgreSQL; SQLite has one writer anyway)."""
    sender_id = sender_id_for(clinic_slug=clinic.slug, phone=contact.phone)
    find = select(Thread).where(Thread.sender_id == sender_id)
    if lock:
        find = find.with_for_update(key_share=True)
    thread = session.execute(find).scalar_one_or_none()
    if thread is None:
        try:
            # A new row is this transaction's alone until it commits.
            with session.begin_nested():
                thread = Thread(clinic_id=clinic.id, contact_id=contact.id, sender_id=sender_id,
                                channel=channel)
                session.add(thread)
        except IntegrityError:
            thread = session.execute(find).scalar_one()
    thread.channel = channel
    return thread


# Built once, like the other statements every patient message runs.
_PATIENT_THREAD = (select(Thread).where(Thread.sender_id == bindparam("sender_id"))
                   .options(joinedload(Thread.contact, innerjoin=True))
                   .with_for_update(key_share=True, of=Thread))
_THREAD_TO_REPLY_IN = (select(Thread).where(Thread.sender_id == bindparam("sender_id"))
                       .options(joinedload(Thread.clinic), joinedload(Thread.contact)))


def patient_thread(session: Session, *, clinic: Clinic, phone: str, channel: Channel) -> Thread:
    """The patient's thread with its contact (both created when new), switched to `channel`,
    and locked like `get_or_create_thread(lock=True)`: one statement for every message but a
    patient's first."""
    thread = session.execute(_PATIENT_THREAD, {
        "sender_id": sender_id_for(clinic_slug=clinic.slug, phone=phone)}).scalar_one_or_none()
    if thread is None:
        contact = get_or_create_contact(session, clinic=clinic, phone=phone)
        return get_or_create_thread(session, clinic=clinic, contact=contact, channel=channel,
                                    lock=True)
    thread.channel = channel
    return thread


def threads_for(session: Session, wanted: list[tuple[Clinic, Contact, Channel]]
                 ) -> dict[int, Thread]:
    """Each contact's thread (created when new), switched to the channel we now text on."""
    if not wanted:
        return {}
    sender_ids = {sender_id_for(clinic_slug=clinic.slug, phone=contact.phone): contact
                  for clinic, contact, _ in wanted}

    def existing() -> dict[int, Thread]:
        return {sender_ids[thread.sender_id].id: thread for thread in session.execute(
            select(Thread).where(Thread.sender_id.in_(sender_ids))).scalars()}

    threads = existing()
    missing = [(clinic, contact, channel) for clinic, contact, channel in wanted
               if contact.id not in threads]
    if missing:
        # A racing reply may create the same thread: the unique sender id settles it.
        session.execute(insert_ignoring_duplicates(session, Thread, ("sender_id",)), [
            {"clinic_id": clinic.id, "contact_id": contact.id, "channel": channel,
             "sender_id": sender_id_for(clinic_slug=clinic.slug, phone=contact.phone)}
            for clinic, contact, channel in missing])
        threads = existing()
    for _, contact, channel in wanted:
        threads[contact.id].channel = channel
    return threads


def find_thread(session: Session, *, sender_id: str) -> Thread | None:
    """The thread with its clinic and contact: every action reads both."""
    return session.execute(_THREAD_TO_REPLY_IN, {"sender_id": sender_id}).scalar_one_or_none()


# Built once, like the statements above.
_SEEN_AND_REPLIED_BEFORE = select(
    exists().where(Message.twilio_sid == bindparam("sid")),
    exists().where(Message.thread_id == bindparam("thread_id"),
                   Message.direction == Direction.inbound))


def record_inbound(
    session: Session,
    *,
    clinic: Clinic,
    thread: Thread,
    channel: Channel,
    from_number: str,
    to_number: str,
    body: str,
    twilio_sid: str,
    media_count: int = 0,
    received_at: datetime | None = None,
) -> Message | None:
    """Log a patient's message once; None when this MessageSid was already processed.

    Messages are taken in one at a time (the intake's passes, see `booking.messaging.arrivals`),
    so looking is enough to find a MessageSid Twilio sent again; the unique SID stays the
    backstop. One look answers that and whether this is the patient's first reply.
    """
    seen, replied_before = session.execute(_SEEN_AND_REPLIED_BEFORE, {
        "sid": twilio_sid, "thread_id": thread.id}).one()
    if seen:
        return None
    message = log_inbound(session, clinic=clinic, thread=thread, channel=channel,
                       from_number=from_number, to_number=to_number, body=body,
                       twilio_sid=twilio_sid, media_count=media_count, received_at=received_at,
                       first_reply=not replied_before)
    session.flush()
    return message


def log_inbound(
    session: Session,
    *,
    clinic: Clinic,
    thread: Thread,
    channel: Channel,
    from_number: str,
    to_number: str,
    body: str,
    twilio_sid: str,
    first_reply: bool,
    media_count: int = 0,
    received_at: datetime | None = None,
) -> Message:
    """`record_inbound` for a caller that has looked already (a repeated MessageSid, the
    patient's first reply) with more questions of its own in the same statement.

    Not flushed: the message is written with whatever the caller adds next (`message.id` is
    there once flushed; a row may refer to the message itself).
    """
    received_at = received_at or utcnow()
    message = Message(
        clinic_id=clinic.id, thread_id=thread.id, direction=Direction.inbound, channel=channel,
        author="patient", from_number=from_number, to_number=to_number, body=body,
        twilio_sid=twilio_sid, status=MessageStatus.received, media_count=media_count,
        created_at=received_at,
    )
    session.add(message)
    thread.last_activity_at = received_at
    if channel == Channel.whatsapp:
        thread.contact.last_whatsapp_inbound_at = received_at
    if first_reply:
        record_event(session, clinic_id=clinic.id, kind="replied", contact_id=thread.contact_id,
                     thread_id=thread.id)
    return message


def transcript(session: Session, *, thread: Thread, limit: int = 50) -> list[dict]:
    """The thread's last messages, oldest first, as staff see them."""
    rows = session.execute(
        select(Message).where(Message.thread_id == thread.id)
        .order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    ).scalars().all()
    return [
        {"at": row.created_at.isoformat(), "author": row.author, "direction": row.direction.value,
         "body": row.body}
        for row in reversed(rows)
    ]


def record_event(
    session: Session, *, clinic_id: int, kind: str, contact_id: int | None = None,
    thread_id: int | None = None, detail: dict | None = None,
) -> None:
    session.add(FunnelEvent(clinic_id=clinic_id, kind=kind, contact_id=contact_id,
                            thread_id=thread_id, detail=detail or {}))


def store_bot_reply(session: Session, *, sender_id: str, text: str) -> list[Message]:
    """Put the dialogue's reply in the outbox, on the channel the thread now uses."""
    # Its clinic and contact in the same statement: every reply needs both.
    thread = session.execute(_THREAD_TO_REPLY_IN, {"sender_id": sender_id}).scalar_one_or_none()
    if thread is None:
        raise LookupError(f"no thread for {sender_id}")
    return enqueue(session, clinic=thread.clinic, channel=thread.channel,
                   to_number=thread.contact.phone, body=text, author="bot", thread=thread,
                   contact=thread.contact)


def rename_contact(session: Session, *, contact_id: int, first_name: str,
                   last_name: str | None) -> None:
    contact = session.get(Contact, contact_id)
    contact.first_name, contact.last_name = first_name, last_name
