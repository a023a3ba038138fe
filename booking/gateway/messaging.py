"""Twilio Messaging: patients' texts in, through the inbox, to the dialogue and back.

`POST /twilio/messaging/sms` and `/twilio/messaging/whatsapp` store each message as it came
(an arrival, once per MessageSid) and answer Twilio; messages arriving together are stored
with one statement (`context.inbound`). `Intake` then takes the arrivals into the inbox (the
keywords, staff replies and red-flag rules run there, at once), and `InboxWorker` hands the
inbox to Rasa, one message at a time per patient, and stores the replies in the outbox. See
`booking.messaging.arrivals` and `booking.messaging.inbox` for the rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response
from sqlalchemy.orm import Session

from booking.batching import Batches, together_or_one_by_one
from booking.gateway.clinic_numbers import clinic_for_number, receives
from booking.gateway.context import GatewayContext, get_context
from booking.gateway.twilio_auth import TwilioForm, require
from booking.messaging import arrivals, inbox
from booking.messaging.arrivals import NewArrival
from booking.messaging.inbox import Claimed, InboxPolicy
from booking.messaging.outbox import Claim
from booking.messaging.phones import to_e164
from booking.messaging.rasa_client import RasaUnavailable
from booking.models import Channel, utcnow

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/twilio/messaging")
Context = Annotated[GatewayContext, Depends(get_context)]
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
# Patients handled at once by one gateway process; each waits on Rasa, not on this process.
DELIVERIES_AT_ONCE = 16
# Arrivals taken in per transaction: on SQLite a pass holds the one write lock, which the
# webhooks' own inserts wait for, so a pass stays short.
INTAKE_PASS = 20


@dataclass(frozen=True)
class DialogueOutcome:
    """What the dialogue made of one inbox item: its replies, or why it could not answer."""

    claimed: Claimed
    replies: list[str]
    unavailable: str | None = None


# What to send once an outcome is stored: claimed in the same transaction, then the rest.
ToSend = tuple[list[tuple[int, Claim]], list[int]]


@router.post("/sms")
async def sms(params: TwilioForm, context: Context) -> Response:
    return await _receive(Channel.sms, params, context)


@router.post("/whatsapp")
async def whatsapp(params: TwilioForm, context: Context) -> Response:
    return await _receive(Channel.whatsapp, params, context)


async def _receive(channel: Channel, params: dict[str, str], context: GatewayContext
                   ) -> Response:
    _, from_number, to_number = require(params, "MessageSid", "From", "To")
    clinic = await clinic_for_number(context, to_number)
    if not receives(clinic, channel, to_number):
        raise HTTPException(404, f"no clinic receives {channel.value} at this number")
    try:
        to_e164(from_number.removeprefix("whatsapp:"), default_region=clinic.country)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
    await context.inbound.submit(NewArrival(channel, params, utcnow()))
    context.intake.wake()
    return Response(EMPTY_TWIML, media_type="application/xml")


async def store_batch(context: GatewayContext, batch: list[NewArrival]) -> list[None]:
    """One batch of `context.inbound`: stored, and committed, before any of them is answered."""
    def store() -> None:
        with context.sessions() as session, session.begin():
            arrivals.store(session, batch)

    await asyncio.to_thread(store)
    return [None] * len(batch)


class Intake:
    """Takes stored arrivals into the inbox as soon as they are stored, and any that a stopped
    process left behind at the next tick; any number of these share the arrivals."""

    def __init__(self, context: GatewayContext, *, interval: float):
        self._context = context
        self._interval = interval
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                while await self._one_pass() == INTAKE_PASS:
                    pass  # a full pass: more may be waiting
            except Exception:  # the database may be down: keep the loop, try next tick
                logger.exception("intake: taking arrivals in failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    async def _one_pass(self) -> int:
        def take_in(each_apart: bool) -> arrivals.TakenIn:
            with self._context.sessions() as session, session.begin():
                return arrivals.take_in(session, limit=INTAKE_PASS, each_apart=each_apart)

        def take_in_together_or_apart() -> arrivals.TakenIn:
            try:
                return take_in(each_apart=False)
            except Exception as exc:  # an arrival that cannot be taken in: find it, keep the others
                # No traceback here: a database error carries the statement's parameters (what
                # the patient wrote); the pass apart logs the failing arrival's own error.
                logger.info("intake: a pass failed (%s), taking its arrivals in one by one",
                            type(exc).__name__)
                return take_in(each_apart=True)

        taken = await self._context.in_background(take_in_together_or_apart)
        if taken.reply_ids:
            self._context.spawn(self._context.outbox.deliver(taken.reply_ids),
                                name="inbound replies")
        if taken.queued:
            self._context.inbox.wake()
        return taken.handled


class InboxWorker:
    """Delivers due inbox items to Rasa and stores its replies; any number of these, in any
    number of gateway processes, share one inbox."""

    def __init__(self, context: GatewayContext, *, policy: InboxPolicy,
                 interval: float, at_once: int = DELIVERIES_AT_ONCE):
        self._context = context
        self._policy = policy
        self._interval = interval
        self._at_once = at_once
        self._in_flight: set[asyncio.Task] = set()
        # Items with the dialogue (claimed, their outcome not yet stored), and places kept for
        # claims under way: together at most `at_once`.
        self._talking = 0
        self._reserved = 0
        self._wake = asyncio.Event()
        self._outcomes: Batches[DialogueOutcome, ToSend] = Batches(
            self._store_outcomes, spawn=context.spawn, max_size=at_once)

    def wake(self) -> None:
        """Something became due (a new message, a delivery done): look now, not at the tick."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self._claim_and_start()
            except Exception:  # the database may be down: keep the loop, try next tick
                logger.exception("inbox: claiming failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()

    async def _claim_and_start(self) -> None:
        room = self._reserve()
        if room <= 0:
            return

        def claim() -> list[Claimed]:
            with self._context.sessions() as session, session.begin():
                return inbox.claim_due(session, now=utcnow(), limit=room, policy=self._policy)

        claimed: list[Claimed] = []
        try:
            claimed = await self._context.in_background(claim)
        finally:
            self._start(claimed, reserved=room)

    def _reserve(self) -> int:
        room = max(0, self._at_once - self._talking - self._reserved)
        self._reserved += room
        return room

    def _start(self, claimed: list[Claimed], *, reserved: int) -> None:
        self._reserved -= reserved
        self._talking += len(claimed)
        for each in claimed:
            task = asyncio.create_task(self._deliver(each), name=f"inbox {each.item_id}")
            self._in_flight.add(task)
            task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("inbox delivery failed", exc_info=task.exception())
            self.wake()  # the next items were not claimed with its outcome: look now

    async def _deliver(self, claimed: Claimed) -> None:
        try:
            outcome = await self._dialogue(claimed)
        finally:
            self._talking -= 1  # its place goes to what its outcome's transaction claims
        claims, rest = await self._outcomes.submit(outcome)
        await self._context.outbox.send_in_order(claims, rest)

    async def _dialogue(self, claimed: Claimed) -> DialogueOutcome:
        try:
            if claimed.intent is not None:
                await self._context.rasa.trigger_intent(sender_id=claimed.sender_id,
                                                        intent=claimed.intent)
                return DialogueOutcome(claimed, replies=[])  # an event's actions do not speak
            return DialogueOutcome(claimed, replies=await self._context.rasa.handle_message(
                sender_id=claimed.sender_id, text=claimed.text,
                message_id=f"inbox-{claimed.item_id}", metadata=claimed.metadata))
        except RasaUnavailable as exc:
            logger.warning("inbox item %s: dialogue unavailable (%s)", claimed.item_id, exc)
            return DialogueOutcome(claimed, replies=[], unavailable=str(exc))

    async def _store_outcomes(self, outcomes: list[DialogueOutcome]) -> list[ToSend | Exception]:
        """Outcomes that arrive together are stored in one transaction, what they send is
        claimed in it, and so are the next due items, for the places they leave (the patient's
        next message among them): a commit and a transaction or two per message saved."""
        room = self._reserve()
        claimed: list[Claimed] = []

        def store(some: list[DialogueOutcome]) -> list[ToSend]:
            with self._context.sessions() as session, session.begin():
                sends = [self._context.outbox.claim_in_order(session, self._store(session, each))
                         for each in some]
                more = (inbox.claim_due(session, now=utcnow(), limit=room - len(claimed),
                                        policy=self._policy)
                        if len(claimed) < room else [])
            claimed.extend(more)  # committed: these are this worker's
            return sends

        try:
            return await self._context.in_background(together_or_one_by_one, store, outcomes)
        finally:
            self._start(claimed, reserved=room)
            if not room:  # a claim under way may have looked before these were answered
                self.wake()

    def _store(self, session: Session, outcome: DialogueOutcome) -> tuple[int, ...]:
        now = utcnow()
        if outcome.unavailable is not None:
            return inbox.retry_later(session, claimed=outcome.claimed, now=now,
                                     error=outcome.unavailable, policy=self._policy)
        return inbox.answered(session, claimed=outcome.claimed, replies=outcome.replies, now=now)

    async def aclose(self) -> None:
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
