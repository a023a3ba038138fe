"""Contacts, threads and the inbound message log, always scoped to one clinic."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

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
    session: Session, *, clinic: Clinic, contact: Contact, channel: Channel
) -> Thread:
    sender_id = sender_id_for(clinic_slug=clinic.slug, phone=contact.phone)
    thread = session.execute(select(Thread).where(Thread.sender_id == sender_id)).scalar_one_or_none()
    if thread is None:
        try:
            with session.begin_nested():
                thread = Thread(clinic_id=clinic.id, contact_id=contact.id, sender_id=sender_id,
                                channel=channel)
                session.add(thread)
        except IntegrityError:
            thread = session.execute(
                select(Thread).where(Thread.sender_id == sender_id)
            ).scalar_one()
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
    return session.execute(select(Thread).where(Thread.sender_id == sender_id)).scalar_one_or_none()


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
    """Log a patient's message once; None when this MessageSid was already processed."""
    received_at = received_at or utcnow()
    message = Message(
        clinic_id=clinic.id, thread_id=thread.id, direction=Direction.inbound, channel=channel,
        author="patient", from_number=from_number, to_number=to_number, body=body,
        twilio_sid=twilio_sid, status=MessageStatus.received, media_count=media_count,
        created_at=received_at,
    )
    try:
        with session.begin_nested():
            session.add(message)
    except IntegrityError:
        return None
    thread.last_activity_at = received_at
    if channel == Channel.whatsapp:
        thread.contact.last_whatsapp_inbound_at = received_at
    first_reply = session.execute(
        select(Message.id).where(Message.thread_id == thread.id,
                                 Message.direction == Direction.inbound,
                                 Message.id != message.id).limit(1)
    ).first() is None
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
    thread = find_thread(session, sender_id=sender_id)
    if thread is None:
        raise LookupError(f"no thread for {sender_id}")
    return enqueue(session, clinic=thread.clinic, channel=thread.channel,
                   to_number=thread.contact.phone, body=text, author="bot", thread=thread,
                   contact=thread.contact)


def rename_contact(session: Session, *, contact_id: int, first_name: str,
                   last_name: str | None) -> None:
    contact = session.get(Contact, contact_id)
    contact.first_name, contact.last_name = first_name, last_name
