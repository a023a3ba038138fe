"""The outbox: every outbound message is stored before it is sent, then sent until Twilio takes it.

A message row is written as `pending` in the caller's transaction. Delivery claims it with a
compare-and-set (so two processes never send the same row), calls Twilio, and records the SID,
or schedules another attempt with exponential backoff on timeouts, 5xx and 429. A sweeper picks
up whatever is due, including rows left behind by a crash, so nothing stored is ever lost.

Two rules keep "exactly once, in order" as close as Twilio allows:
- per recipient (sender and receiver address) messages go out in the order they were stored: a
  row waits while an older one to the same address is still pending or being sent;
- a send whose outcome is unknown (timeout after the request left, connection dropped, crash
  mid-send) is settled before it is retried: Twilio's message list is asked whether a message
  from our number to that recipient appeared since; if it did, that SID is recorded instead of
  texting the patient twice. The ordering rule makes that unambiguous: nothing newer to the same
  recipient can have been sent meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, exists, func, literal, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from booking.batching import Batches
from booking.db import get_engine, session_factory
from booking.messaging.twilio_rest import (
    UNSUBSCRIBED_RECIPIENT,
    OutgoingMessage,
    TwilioMessagesClient,
    TwilioSendError,
)
from booking.models import (
    Channel,
    ChannelPolicy,
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

logger = logging.getLogger(__name__)

# Twilio accepts up to 1600 characters in one Messages API call, for SMS and WhatsApp alike,
# counted in UTF-16 code units (an emoji outside the BMP is two); longer text is split at line
# or word boundaries into several messages, sent in order.
CHANNEL_BODY_LIMITS = {Channel.sms: 1600, Channel.whatsapp: 1600}
MAX_BODY_CHARS = 1600
# A claimed row not finished within this lease is taken to belong to a crashed sender.
SENDING_LEASE = timedelta(seconds=60)
# How far Twilio's clock may be behind ours when we look for a message it may have created.
CLOCK_SLACK = timedelta(minutes=2)
# Stored in error_code while a send's outcome is unknown, so the next attempt settles it first.
IN_DOUBT = "in-doubt"
# WhatsApp errors after which the same text should go out by SMS instead.
WHATSAPP_UNREACHABLE_CODES = {"63003", "63016", "63024", "63032"}
_LIVE = (MessageStatus.pending, MessageStatus.sending)
# Records of what Twilio took, written together when sends finish together.
RECORDS_PER_TRANSACTION = 100


def text_length(text: str) -> int:
    """Length as Twilio counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def split_body(body: str, limit: int = MAX_BODY_CHARS) -> list[str]:
    """Split text into parts of at most `limit` UTF-16 units, preferring line then word breaks."""
    body = body.strip()
    parts: list[str] = []
    while text_length(body) > limit:
        fits = _longest_prefix(body, limit)
        cut = max(body.rfind("\n", 0, fits), body.rfind(" ", 0, fits))
        if cut <= fits // 2:
            cut = fits
        parts.append(body[:cut].rstrip())
        body = body[cut:].lstrip()
    if body:
        parts.append(body)
    return parts


def _longest_prefix(text: str, limit: int) -> int:
    """How many characters of `text` fit in `limit` UTF-16 units."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)


def address(number: str, channel: Channel) -> str:
    return f"whatsapp:{number}" if channel == Channel.whatsapp else number


def clinic_sender(clinic: Clinic, channel: Channel) -> str:
    number = clinic.whatsapp_number if channel == Channel.whatsapp else clinic.sms_number
    if not number:
        raise ValueError(f"clinic {clinic.slug} has no {channel.value} number")
    return address(number, channel)


_ENQUEUED = "outbox: enqueued"


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
    flush: bool = True,
) -> list[Message]:
    """Store an outbound message (split if long) as pending; opted-out contacts get nothing.

    `ignore_opt_out` is only for the single confirmation of an opt-out itself, and HELP.
    `flush=False` is for a caller storing many at once: it flushes once, then reads the ids.
    """
    suppressed = (contact is not None and contact.consent == Consent.opted_out
                  and not ignore_opt_out)
    bodies = [body] if content_sid else split_body(body, CHANNEL_BODY_LIMITS[channel])
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
    # The session holds its rows weakly: without a reference, a claim in the same transaction
    # (the text-back, the dialogue's replies) would select each row again once flushed.
    session.info.setdefault(_ENQUEUED, []).extend(messages)
    if flush:
        session.flush()
    if thread is not None:
        thread.last_activity_at = now
    return messages


@dataclass(frozen=True)
class Backoff:
    first_delay: float = 2.0
    max_delay: float = 300.0
    max_attempts: int = 15

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        return cls(first_delay=settings.outbox_first_retry_seconds,
                   max_delay=settings.outbox_max_retry_seconds,
                   max_attempts=settings.outbox_max_attempts)

    def delay(self, attempts: int) -> float:
        # Full jitter keeps many retrying processes from hitting Twilio in lockstep.
        ceiling = min(self.max_delay, self.first_delay * 2 ** max(0, attempts - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Claim:
    outgoing: OutgoingMessage
    # Set when an earlier attempt may have reached Twilio: look there before sending again.
    settle_since: datetime | None


# One alias for every statement: a fresh alias per call made each statement's cache key anew.
_OLDER = aliased(Message, name="older")


def _older_live_sibling():
    """SQL: an older outbound row to the same address is still waiting or being sent."""
    return exists().where(
        _OLDER.direction == Direction.outbound,
        _OLDER.to_number == Message.to_number,
        _OLDER.from_number == Message.from_number,
        _OLDER.id < Message.id,
        _OLDER.status.in_(_LIVE),
    )


_SENDING = Message.status == MessageStatus.sending
_NOW = bindparam("now", type_=Message.sent_at.type)
_RECORD_SENT = (
    update(Message).where(Message.id == bindparam("row_id"))
    .values(
        twilio_sid=func.coalesce(Message.twilio_sid, bindparam("sid")),
        error_code=case((Message.error_code == IN_DOUBT, None), else_=Message.error_code),
        # A delivery report may have overtaken this answer; never move backwards.
        status=case((_SENDING, literal(MessageStatus.queued, Message.status.type)),
                    else_=Message.status),
        status_updated_at=case((_SENDING, _NOW), else_=Message.status_updated_at),
        sent_at=_NOW, next_attempt_at=None)
)


# Compare-and-set, built once (every message sent is claimed): the row is as read, and no older
# one to the same recipient is still waiting.
_CLAIM = (
    update(Message)
    .where(Message.id == bindparam("row_id"),
           Message.attempts == bindparam("read_attempts"),
           Message.status == bindparam("read_status", type_=Message.status.type),
           ~_older_live_sibling())
    .values(status=MessageStatus.sending, attempts=Message.attempts + 1,
            next_attempt_at=bindparam("lease_until", type_=Message.next_attempt_at.type))
    .execution_options(synchronize_session=False)
)


class Outbox:
    def __init__(
        self,
        *,
        session_factory: sessionmaker,
        client: TwilioMessagesClient,
        status_callback_url: str | None,
        backoff: Backoff = Backoff(),
        sweep_interval: float = 1.0,
        executor: Executor | None = None,
    ):
        self._sessions = session_factory
        self._client = client
        self._status_callback_url = status_callback_url
        self._backoff = backoff
        self.sweep_interval = sweep_interval
        self._executor = executor  # None: asyncio's default threads
        self._records = Batches(self._record_sent_batch, spawn=self._spawn,
                                max_size=RECORDS_PER_TRANSACTION)
        self._tasks: set[asyncio.Task] = set()

    def _spawn(self, coro, *, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)  # a reference, so the task is not collected mid-way
        task.add_done_callback(self._tasks.discard)

    def use_executor(self, executor: Executor) -> None:
        self._executor = executor

    async def _run(self, function, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    @classmethod
    def from_settings(cls, settings: Settings, *, backoff: Backoff | None = None) -> Outbox:
        client = TwilioMessagesClient(
            base_url=settings.twilio_api_base_url, account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token, timeout=settings.twilio_timeout_seconds,
        )
        return cls(session_factory=session_factory(get_engine(settings.database_url)),
                   client=client, backoff=backoff or Backoff.from_settings(settings),
                   status_callback_url=f"{settings.gateway_public_url}/twilio/messaging/status",
                   sweep_interval=settings.outbox_sweep_interval_seconds)

    async def deliver(self, message_ids: Iterable[int]) -> None:
        """Try to send these messages now, in order; what fails stays due for the sweeper."""
        for message_id in message_ids:
            await self._attempt(message_id)

    async def deliver_due(self, batch: int = 50) -> int:
        """Send everything whose next attempt is due; returns how many were tried.

        Different recipients go out concurrently; one recipient's rows stay in order because
        a row is only claimable once the older ones to the same address are settled.
        """
        due = await self._run(self._due_ids, batch)
        if due:
            await asyncio.gather(*(self._attempt(message_id) for message_id in due))
        return len(due)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, *, interval: float | None = None) -> None:
        while True:
            try:
                while await self.deliver_due() == 50:
                    pass  # a backlog: keep going without waiting
            except Exception:  # the sweeper must outlive one bad row or a database blip
                logger.exception("outbox sweep failed")
            await asyncio.sleep(interval if interval is not None else self.sweep_interval)

    def _due_ids(self, batch: int) -> list[int]:
        now = utcnow()
        with self._sessions() as session:
            return list(session.execute(
                select(Message.id)
                .where(Message.direction == Direction.outbound,
                       Message.status.in_(_LIVE),
                       or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
                       ~_older_live_sibling())
                .order_by(Message.id).limit(batch)
            ).scalars())

    def _claim(self, message_id: int) -> Claim | None:
        with self._sessions() as session, session.begin():
            return self.claim(session, message_id)

    def claim(self, session: Session, message_id: int) -> Claim | None:
        """Take a due message for sending, inside the caller's transaction.

        The text-back is claimed in the transaction that stores it, so it goes out without
        another round of database work; `send_claimed` then sends it.
        """
        now = utcnow()
        message = session.get(Message, message_id)
        if (message is None or message.direction != Direction.outbound
                or message.status not in _LIVE
                or (message.next_attempt_at is not None and message.next_attempt_at > now)):
            return None
        if message.twilio_sid:
            # A delivery report named it after an unanswered attempt: Twilio has it.
            message.status, message.next_attempt_at = MessageStatus.queued, None
            message.error_code = None if message.error_code == IN_DOUBT else message.error_code
            return None
        # A row still `sending` here was abandoned by a crashed sender mid-request.
        in_doubt = message.status == MessageStatus.sending or message.error_code == IN_DOUBT
        # What is pending in the session (an older row's status) counts for the order: flushed
        # first, as the session would. On the connection: through the session, an UPDATE of a
        # mapped class is an ORM statement, annotated (and its cache key computed) anew on every
        # execution.
        session.flush()
        claimed = session.connection().execute(_CLAIM, {
            "row_id": message_id, "read_attempts": message.attempts, "read_status": message.status,
            "lease_until": now + SENDING_LEASE}).rowcount
        if not claimed:
            return None  # someone else took it, or an older message must go first
        callback = self._status_callback_url
        if callback:
            # Our id in the callback URL lets a report that overtakes the API's answer
            # still find its row (Twilio signs the whole URL, so it cannot be forged).
            callback = f"{callback}?message_id={message.id}"
        outgoing = OutgoingMessage(
            to=message.to_number, from_=message.from_number, body=message.body,
            content_sid=message.content_sid,
            content_variables=(json.dumps(message.content_variables)
                               if message.content_variables else None),
            status_callback=callback,
        )
        return Claim(outgoing=outgoing,
                      settle_since=message.created_at - CLOCK_SLACK if in_doubt else None)

    def claim_in_order(self, session: Session, message_ids: Iterable[int]
                       ) -> tuple[list[tuple[int, Claim]], list[int]]:
        """Claim in the caller's transaction what can go at once: (claims, the rest).

        The rest (a second part to the same recipient, waiting behind the first) goes with
        `deliver` once the claims are sent, in the order given.
        """
        claims: list[tuple[int, Claim]] = []
        rest: list[int] = []
        for message_id in message_ids:
            claim = None if rest else self.claim(session, message_id)
            if claim is None:
                rest.append(message_id)
            else:
                claims.append((message_id, claim))
        return claims, rest

    async def send_in_order(self, claims: list[tuple[int, Claim]], rest: Iterable[int]) -> None:
        """Send what `claim_in_order` claimed, then the rest."""
        for message_id, claim in claims:
            await self.send_claimed(message_id, claim)
        await self.deliver(rest)

    async def _attempt(self, message_id: int) -> None:
        claim = await self._run(self._claim, message_id)
        if claim is not None:
            await self.send_claimed(message_id, claim)

    async def send_claimed(self, message_id: int, claim: Claim) -> None:
        """Send a message `claim` took, and record what Twilio said."""
        try:
            sid = None
            if claim.settle_since is not None:
                sid = await self._already_sent(message_id, claim)
            if sid is None:
                sid = await self._client.send(claim.outgoing)
        except TwilioSendError as exc:
            await self._run(self._record_failure, message_id, exc)
            return
        await self._records.submit((message_id, sid))

    async def _already_sent(self, message_id: int, claim: Claim) -> str | None:
        """The SID of a message Twilio created from an earlier, unanswered attempt, if any."""
        candidates = await self._client.sent_since(
            to=claim.outgoing.to, from_=claim.outgoing.from_, since=claim.settle_since)
        if not candidates:
            return None
        sids = [candidate.sid for candidate in candidates]

        def unknown() -> list[str]:
            # SIDs other rows already own are theirs; anything else to this recipient since
            # our first attempt can only be this row, as older rows went out before it.
            with self._sessions() as session:
                known = set(session.execute(
                    select(Message.twilio_sid).where(Message.twilio_sid.in_(sids),
                                                     Message.id != message_id)).scalars())
            return [sid for sid in sids if sid not in known]

        fresh = await self._run(unknown)
        if fresh:
            logger.warning("an earlier attempt reached Twilio as %s; not sending again", fresh[0])
            return fresh[0]
        return None

    async def _record_sent_batch(self, sent: list[tuple[int, str]]) -> list[None]:
        await self._run(self._record_sent, sent)
        return [None] * len(sent)

    def _record_sent(self, sent: list[tuple[int, str]]) -> None:
        # One statement for the lot, no ORM load: this runs for every message sent.
        with self._sessions() as session, session.begin():
            session.connection().execute(_RECORD_SENT, [
                {"row_id": message_id, "sid": sid, "now": utcnow()} for message_id, sid in sent])

    def _record_failure(self, message_id: int, error: TwilioSendError) -> None:
        with self._sessions() as session, session.begin():
            message = session.get(Message, message_id)
            if message.twilio_sid:
                # The answer was lost, but a delivery report already told us Twilio has it.
                logger.warning("message %s: no answer from Twilio, but it was reported as %s",
                               message_id, message.status.value)
                if message.status == MessageStatus.sending:
                    message.status = MessageStatus.queued
                message.next_attempt_at = None
                return
            if message.error_code != IN_DOUBT or not error.in_doubt:
                message.error_code = IN_DOUBT if error.in_doubt else error.code
            if error.retryable and message.attempts < self._backoff.max_attempts:
                message.status = MessageStatus.pending
                message.next_attempt_at = utcnow() + timedelta(
                    seconds=self._backoff.delay(message.attempts))
                logger.warning("message %s not sent (attempt %s), will retry: %s",
                               message_id, message.attempts, error)
                return
            message.status = MessageStatus.failed
            message.next_attempt_at = None
            message.status_updated_at = utcnow()
            logger.error("message %s failed for good: %s", message_id, error)
            if error.code == UNSUBSCRIBED_RECIPIENT:
                _mark_opted_out(session, message)
            elif message.channel == Channel.whatsapp:
                _fall_back_to_sms(session, message)


# Twilio's statuses only move forward; a late "sent" must not overwrite "delivered".
_STATUS_ORDER = {
    MessageStatus.pending: 0, MessageStatus.sending: 1, MessageStatus.queued: 1,
    MessageStatus.sent: 2, MessageStatus.delivered: 3, MessageStatus.read: 4,
    MessageStatus.undelivered: 3, MessageStatus.failed: 3,
}
_FINAL_FAILURES = (MessageStatus.undelivered, MessageStatus.failed)
# Twilio's own statuses that mean "on its way", which our rows call queued.
_TWILIO_ALIASES = {"accepted": MessageStatus.queued, "scheduled": MessageStatus.queued,
                   "sending": MessageStatus.queued, "canceled": MessageStatus.failed}


def apply_status_callback(
    session: Session, *, message_sid: str, status: str, error_code: str | None,
    message_id: int | None = None,
) -> Message | None:
    """Record a delivery status; a WhatsApp that cannot reach the phone is re-sent by SMS.

    `message_id` comes from our own StatusCallback URL; it finds the row even when the report
    arrives before the API's answer recorded the SID. Returns the updated message, or None for
    a message we never sent.
    """
    message = None
    if message_id is not None:
        candidate = session.get(Message, message_id)
        if (candidate is not None and candidate.direction == Direction.outbound
                and candidate.twilio_sid in (None, message_sid)):
            message = candidate
    if message is None:
        message = session.execute(
            select(Message).where(Message.twilio_sid == message_sid)
        ).scalar_one_or_none()
    if message is None:
        return None
    try:
        new_status = _TWILIO_ALIASES.get(status) or MessageStatus(status)
    except ValueError:
        return message  # Twilio adds statuses now and then; ignore ones we do not know
    message.twilio_sid = message.twilio_sid or message_sid
    old_status = message.status
    if old_status in _FINAL_FAILURES or _STATUS_ORDER.get(new_status, 0) < _STATUS_ORDER.get(
            old_status, 0):
        return message  # repeated or late report
    message.status = new_status
    message.error_code = error_code or (None if message.error_code == IN_DOUBT
                                        else message.error_code)
    message.status_updated_at = utcnow()
    if message.next_attempt_at is not None and old_status == MessageStatus.sending:
        message.next_attempt_at = None  # Twilio has it: the sending lease no longer matters
    if new_status in _FINAL_FAILURES:
        if error_code == UNSUBSCRIBED_RECIPIENT:
            _mark_opted_out(session, message)
        elif message.channel == Channel.whatsapp:
            _fall_back_to_sms(session, message)
    return message


def _contact_for(session: Session, message: Message) -> Contact | None:
    phone = message.to_number.removeprefix("whatsapp:")
    return session.execute(
        select(Contact).where(Contact.clinic_id == message.clinic_id, Contact.phone == phone)
    ).scalar_one_or_none()


def _mark_opted_out(session: Session, message: Message) -> None:
    """Twilio's own STOP list refused the message: record the opt-out so we stop trying too."""
    contact = _contact_for(session, message)
    if contact is not None and contact.consent != Consent.opted_out:
        contact.consent = Consent.opted_out
        contact.consent_changed_at = utcnow()


def _fall_back_to_sms(session: Session, failed: Message) -> None:
    """Send the same words by SMS when WhatsApp cannot reach the phone, if the clinic allows."""
    clinic = session.get(Clinic, failed.clinic_id)
    if (failed.error_code not in WHATSAPP_UNREACHABLE_CODES or not clinic.sms_number
            or clinic.channel_policy == ChannelPolicy.whatsapp):
        return
    contact = _contact_for(session, failed)
    if contact is not None:
        contact.whatsapp_unreachable = True
    thread = session.get(Thread, failed.thread_id) if failed.thread_id else None
    if thread is not None:
        thread.channel = Channel.sms
    phone = failed.to_number.removeprefix("whatsapp:")
    # Later WhatsApp rows still waiting for this phone follow the patient to SMS too.
    stranded = session.execute(
        select(Message).where(Message.clinic_id == clinic.id,
                              Message.to_number == failed.to_number,
                              Message.direction == Direction.outbound,
                              Message.status == MessageStatus.pending,
                              Message.id > failed.id)
        .order_by(Message.id)
    ).scalars().all()
    for row in [failed, *stranded]:
        enqueue(session, clinic=clinic, channel=Channel.sms, to_number=phone, body=row.body,
                author=row.author, thread=thread, contact=contact)
    for row in stranded:
        row.status = MessageStatus.failed
        row.error_code = failed.error_code
        row.next_attempt_at = None
