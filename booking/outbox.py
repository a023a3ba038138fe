"""The outbox: every outbound message is stored before it is sent, then sent until Twilio takes it.

A message row is written as `pending` in the caller's transaction. Delivery claims it with a
compare-and-set (so two processes never send the same row), calls Twilio, and records the SID,
or schedules another attempt with exponential backoff on timeouts, 5xx and 429. A sweeper picks
up whatever is due, including rows left behind by a crash, so nothing stored is ever lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from booking.db import get_engine, session_factory
from booking.models import (
    Channel,
    Clinic,
    Consent,
    Contact,
    Direction,
    Message,
    MessageStatus,
    Thread,
    utcnow,
)
from booking.settings import Settings
from booking.twilio_rest import OutgoingMessage, TwilioMessagesClient, TwilioSendError

logger = logging.getLogger(__name__)

# Twilio accepts up to 1600 characters in one Messages API call, for SMS and WhatsApp alike;
# longer text is split at word boundaries into several messages, in order.
MAX_BODY_CHARS = 1600
# A claimed row not finished within this lease is taken to belong to a crashed sender.
SENDING_LEASE = timedelta(seconds=60)
# WhatsApp errors after which the same text should go out by SMS instead.
WHATSAPP_UNREACHABLE_CODES = {"63003", "63016", "63024", "63032"}


def split_body(body: str, limit: int = MAX_BODY_CHARS) -> list[str]:
    """Split text into parts of at most `limit` characters, preferring line then word breaks."""
    body = body.strip()
    parts: list[str] = []
    while len(body) > limit:
        cut = max(body.rfind("\n", 0, limit), body.rfind(" ", 0, limit))
        if cut <= limit // 2:
            cut = limit
        parts.append(body[:cut].rstrip())
        body = body[cut:].lstrip()
    if body:
        parts.append(body)
    return parts


def address(number: str, channel: Channel) -> str:
    return f"whatsapp:{number}" if channel == Channel.whatsapp else number


def clinic_sender(clinic: Clinic, channel: Channel) -> str:
    number = clinic.whatsapp_number if channel == Channel.whatsapp else clinic.sms_number
    if not number:
        raise ValueError(f"clinic {clinic.slug} has no {channel.value} number")
    return address(number, channel)


def enqueue(
    session: Session,
    *,
    clinic: Clinic,
    channel: Channel,
    to_number: str,
    body: str,
    author: str,
    thread: Thread | None = None,
    contact: Contact | None = None,
    content_sid: str | None = None,
    content_variables: dict | None = None,
    ignore_opt_out: bool = False,
) -> list[Message]:
    """Store an outbound message (split if long) as pending; opted-out contacts get nothing.

    `ignore_opt_out` is only for the single confirmation of an opt-out itself.
    """
    suppressed = (contact is not None and contact.consent == Consent.opted_out
                  and not ignore_opt_out)
    bodies = [body] if content_sid else split_body(body)
    now = utcnow()
    messages = [
        Message(
            clinic_id=clinic.id, thread_id=thread.id if thread else None,
            direction=Direction.outbound, channel=channel, author=author,
            from_number=clinic_sender(clinic, channel), to_number=address(to_number, channel),
            body=part, content_sid=content_sid,
            content_variables=content_variables if content_sid else None,
            status=MessageStatus.suppressed if suppressed else MessageStatus.pending,
            next_attempt_at=None if suppressed else now, created_at=now,
        )
        for part in bodies
    ]
    session.add_all(messages)
    session.flush()
    if thread is not None:
        thread.last_activity_at = now
    return messages


@dataclass(frozen=True)
class Backoff:
    first_delay: float = 2.0
    max_delay: float = 300.0
    max_attempts: int = 15

    def delay(self, attempts: int) -> float:
        # Full jitter keeps many retrying processes from hitting Twilio in lockstep.
        ceiling = min(self.max_delay, self.first_delay * 2 ** max(0, attempts - 1))
        return random.uniform(ceiling / 2, ceiling)


class Outbox:
    def __init__(
        self,
        *,
        session_factory: sessionmaker,
        client: TwilioMessagesClient,
        status_callback_url: str | None,
        backoff: Backoff = Backoff(),
    ):
        self._sessions = session_factory
        self._client = client
        self._status_callback_url = status_callback_url
        self._backoff = backoff

    @classmethod
    def from_settings(cls, settings: Settings, *, backoff: Backoff = Backoff()) -> Outbox:
        client = TwilioMessagesClient(
            base_url=settings.twilio_api_base_url, account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token, timeout=settings.twilio_timeout_seconds,
        )
        return cls(session_factory=session_factory(get_engine(settings.database_url)),
                   client=client, backoff=backoff,
                   status_callback_url=f"{settings.gateway_public_url}/twilio/messaging/status")

    async def deliver(self, message_ids: Iterable[int]) -> None:
        """Try to send these messages now, in order; what fails stays due for the sweeper."""
        for message_id in message_ids:
            await self._attempt(message_id)

    async def deliver_due(self, batch: int = 50) -> int:
        """Send everything whose next attempt is due; returns how many were tried."""
        due = await asyncio.to_thread(self._due_ids, batch)
        for message_id in due:
            await self._attempt(message_id)
        return len(due)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, *, interval: float = 1.0) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception:  # the sweeper must outlive one bad row or a database blip
                logger.exception("outbox sweep failed")
            await asyncio.sleep(interval)

    def _due_ids(self, batch: int) -> list[int]:
        now = utcnow()
        with self._sessions() as session:
            return list(session.execute(
                select(Message.id)
                .where(Message.direction == Direction.outbound,
                       Message.status.in_([MessageStatus.pending, MessageStatus.sending]),
                       or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now))
                .order_by(Message.id).limit(batch)
            ).scalars())

    def _claim(self, message_id: int) -> OutgoingMessage | None:
        now = utcnow()
        with self._sessions() as session, session.begin():
            claimed = session.execute(
                update(Message)
                .where(Message.id == message_id,
                       Message.status.in_([MessageStatus.pending, MessageStatus.sending]),
                       or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now))
                .values(status=MessageStatus.sending, attempts=Message.attempts + 1,
                        next_attempt_at=now + SENDING_LEASE)
                .execution_options(synchronize_session=False)
            ).rowcount
            if not claimed:
                return None
            message = session.get(Message, message_id)
            return OutgoingMessage(
                to=message.to_number, from_=message.from_number, body=message.body,
                content_sid=message.content_sid,
                content_variables=(json.dumps(message.content_variables)
                                   if message.content_variables else None),
                status_callback=self._status_callback_url,
            )

    async def _attempt(self, message_id: int) -> None:
        outgoing = await asyncio.to_thread(self._claim, message_id)
        if outgoing is None:
            return  # someone else has it, or it is not due
        try:
            sid = await self._client.send(outgoing)
        except TwilioSendError as exc:
            await asyncio.to_thread(self._record_failure, message_id, exc)
            return
        await asyncio.to_thread(self._record_sent, message_id, sid)

    def _record_sent(self, message_id: int, sid: str) -> None:
        with self._sessions() as session, session.begin():
            message = session.get(Message, message_id)
            message.twilio_sid = sid
            message.status = MessageStatus.queued
            message.sent_at = message.status_updated_at = utcnow()
            message.next_attempt_at = None

    def _record_failure(self, message_id: int, error: TwilioSendError) -> None:
        with self._sessions() as session, session.begin():
            message = session.get(Message, message_id)
            message.error_code = error.code
            if error.retryable and message.attempts < self._backoff.max_attempts:
                message.status = MessageStatus.pending
                message.next_attempt_at = utcnow() + timedelta(
                    seconds=self._backoff.delay(message.attempts))
                logger.warning("message %s not sent (attempt %s), will retry: %s",
                               message_id, message.attempts, error)
            else:
                message.status = MessageStatus.failed
                message.next_attempt_at = None
                logger.error("message %s failed for good: %s", message_id, error)


# Twilio's statuses only move forward; a late "sent" must not overwrite "delivered".
_STATUS_ORDER = {
    MessageStatus.queued: 1, MessageStatus.sending: 1, MessageStatus.sent: 2,
    MessageStatus.delivered: 3, MessageStatus.read: 4, MessageStatus.undelivered: 3,
    MessageStatus.failed: 3,
}


def apply_status_callback(
    session: Session, *, message_sid: str, status: str, error_code: str | None
) -> Message | None:
    """Record a delivery status; a WhatsApp that cannot reach the phone is re-sent by SMS.

    Returns the updated message, or None for a SID we never sent.
    """
    message = session.execute(
        select(Message).where(Message.twilio_sid == message_sid)
    ).scalar_one_or_none()
    if message is None:
        return None
    try:
        new_status = MessageStatus(status)
    except ValueError:
        return message  # Twilio adds statuses now and then (e.g. "scheduled"); ignore unknown ones
    if _STATUS_ORDER.get(new_status, 0) < _STATUS_ORDER.get(message.status, 0):
        return message
    message.status = new_status
    message.error_code = error_code or message.error_code
    message.status_updated_at = utcnow()
    if (message.channel == Channel.whatsapp
            and new_status in (MessageStatus.undelivered, MessageStatus.failed)):
        _fall_back_to_sms(session, message)
    return message


def _fall_back_to_sms(session: Session, failed: Message) -> None:
    clinic = session.get(Clinic, failed.clinic_id)
    if failed.error_code not in WHATSAPP_UNREACHABLE_CODES or not clinic.sms_number:
        return
    phone = failed.to_number.removeprefix("whatsapp:")
    contact = session.execute(
        select(Contact).where(Contact.clinic_id == clinic.id, Contact.phone == phone)
    ).scalar_one_or_none()
    if contact is not None:
        contact.whatsapp_unreachable = True
    thread = session.get(Thread, failed.thread_id) if failed.thread_id else None
    if thread is not None:
        thread.channel = Channel.sms
    enqueue(session, clinic=clinic, channel=Channel.sms, to_number=phone, body=failed.body,
            author=failed.author, thread=thread, contact=contact)
