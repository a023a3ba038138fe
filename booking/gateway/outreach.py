"""The gateway's outreach worker: plans follow-ups, reminders and rebooking offers, runs the
due ones through the compliance gate (`booking.outreach`), sends what passed, and tells the
dialogue what the patient is answering.

Every gateway process runs one; the jobs are rows, so they share the work and each job is
decided once (see `booking.outreach.runner`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from sqlalchemy import exists, select, update

from booking.gateway.context import GatewayContext
from booking.messaging.rasa_client import RasaUnavailable
from booking.models import (
    Direction,
    JobKind,
    JobState,
    Message,
    ScheduledJob,
    Thread,
    utcnow,
)
from booking.outreach.gate import ComplianceGate
from booking.outreach.planner import plan
from booking.outreach.runner import Started, run_due

logger = logging.getLogger(__name__)
BATCH = 200
# The dialogue reads "yes" after a reminder as a confirmation only if it was told of the
# reminder; a Rasa that was down is told when it is back, within this long.
TELL_DIALOGUE_WITHIN = timedelta(hours=1)
TELL_AT_ONCE = 16
DIALOGUE_EVENTS = {JobKind.reminder: "EXTERNAL_reminder",
                   JobKind.rebooking_offer: "EXTERNAL_rebooking_offer"}


class OutreachWorker:
    def __init__(self, context: GatewayContext, *, gate: ComplianceGate, interval: float,
                 plan_interval: float):
        self._context = context
        self._gate = gate
        self._interval = interval
        self._plan_interval = plan_interval
        self._planned_at = float("-inf")

    async def run(self) -> None:
        await asyncio.gather(self._every_interval(self.run_once, "outreach pass"),
                             self._every_interval(self._tell_the_untold, "telling the dialogue"))

    async def _every_interval(self, step, what: str) -> None:
        while True:
            try:
                await step()
            except Exception:  # the database may be down: keep the loop, try next tick
                logger.exception("%s failed", what)
            await asyncio.sleep(self._interval)

    async def run_once(self) -> None:
        if time.monotonic() - self._planned_at >= self._plan_interval:
            await self._context.in_background(self._plan)
            self._planned_at = time.monotonic()
        while True:
            started = await self._context.in_background(self._run_due)
            # The dialogue hears of a reminder before the patient can read it, so their
            # answer is never read without it.
            await self._tell([(s.message_ids[0], s.kind, s.sender_id) for s in started
                              if s.kind in DIALOGUE_EVENTS])
            await asyncio.gather(*(self._context.outbox.deliver(s.message_ids)
                                   for s in started))
            if len(started) < BATCH:
                break

    def _plan(self) -> None:
        with self._context.sessions() as session, session.begin():
            plan(session, now=utcnow())

    def _run_due(self) -> list[Started]:
        with self._context.sessions() as session, session.begin():
            return run_due(session, now=utcnow(), gate=self._gate, limit=BATCH)

    async def _tell(self, messages: list[tuple[int, JobKind, str]]) -> bool:
        """EXTERNAL_reminder / EXTERNAL_rebooking_offer for each message sent (one message may
        carry a family's reminders); False when Rasa could not be reached."""
        at_once = asyncio.Semaphore(TELL_AT_ONCE)

        def told(message_id: int) -> None:
            with self._context.sessions() as session, session.begin():
                session.execute(update(ScheduledJob)
                                .where(ScheduledJob.message_id == message_id)
                                .values(dialogue_told_at=utcnow()))

        async def tell(message_id: int, kind: JobKind, sender_id: str) -> None:
            async with at_once:
                await self._context.rasa.trigger_intent(sender_id=sender_id,
                                                        intent=DIALOGUE_EVENTS[kind])
            await self._context.in_background(told, message_id)

        try:
            await asyncio.gather(*(tell(*message) for message in messages))
        except RasaUnavailable:
            logger.warning("could not tell the dialogue about a reminder or offer; "
                           "trying again later")
            return False
        return True

    async def _tell_the_untold(self) -> None:
        """Messages whose dialogue event failed (Rasa was down), told once Rasa is back, unless
        the patient has written since: their message was read without it, and telling now would
        turn their next one into an answer to the reminder."""
        def untold() -> list[tuple[int, JobKind, str]]:
            answered = exists().where(Message.thread_id == ScheduledJob.thread_id,
                                      Message.direction == Direction.inbound,
                                      Message.created_at >= ScheduledJob.finished_at)
            with self._context.sessions() as session:
                return list(session.execute(
                    select(ScheduledJob.message_id, ScheduledJob.kind, Thread.sender_id)
                    .join(Thread, Thread.id == ScheduledJob.thread_id)
                    .where(ScheduledJob.state == JobState.sent,
                           ScheduledJob.kind.in_(list(DIALOGUE_EVENTS)),
                           ScheduledJob.dialogue_told_at.is_(None),
                           ScheduledJob.finished_at >= utcnow() - TELL_DIALOGUE_WITHIN,
                           ~answered)
                    .distinct().limit(BATCH)).all())

        while True:
            messages = await self._context.in_background(untold)
            if not await self._tell(messages) or len(messages) < BATCH:
                return
