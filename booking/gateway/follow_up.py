"""After a missed call is stored: decide its text-back, send it, then tell Rasa the thread began.

The webhook only stores the call (so Twilio gets its answer fast); everything here runs after
the answer, on the gateway's background threads. Calls a crash left undecided are picked up by
`sweep_undecided`, so none is lost.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import httpx

from booking.gateway.context import GatewayContext
from booking.models import utcnow
from booking.recovery import (
    AlreadyDecided,
    MissedCallOutcome,
    text_back,
    undecided_missed_calls,
)

logger = logging.getLogger(__name__)

# A call is left to its own follow-up this long before the sweeper takes it as abandoned.
UNDECIDED_GRACE = timedelta(seconds=10)
SWEEP_INTERVAL_SECONDS = 2.0


async def follow_up(context: GatewayContext, missed_call_id: int) -> None:
    await context.give_way_to_webhooks()
    async with context.decisions:
        outcome = await context.in_background(_decide, context, missed_call_id)
    if outcome is None or not outcome.message_ids:
        return
    await context.outbox.deliver(outcome.message_ids)
    try:
        await context.rasa.trigger_intent(
            sender_id=outcome.sender_id, intent="EXTERNAL_missed_call",
            channel=outcome.channel.value,
        )
    except httpx.HTTPError:
        # The text-back is out; without this event the dialogue still handles the reply,
        # it only lacks the "you called us" context.
        logger.warning("could not tell Rasa about missed call %s", outcome.missed_call_id)


def _decide(context: GatewayContext, missed_call_id: int) -> MissedCallOutcome | None:
    try:
        with context.sessions() as session, session.begin():
            return text_back(session, missed_call_id=missed_call_id)
    except AlreadyDecided:
        return None  # another process stored its text-back first


async def sweep_undecided(context: GatewayContext, *,
                          interval: float = SWEEP_INTERVAL_SECONDS) -> None:
    """Decide calls whose webhook answered but whose follow-up never ran (a crash, a restart)."""
    def due() -> list[int]:
        with context.sessions() as session:
            return undecided_missed_calls(session, recorded_before=utcnow() - UNDECIDED_GRACE)

    while True:
        try:
            for missed_call_id in await context.in_background(due):
                logger.warning("missed call %s was left undecided; deciding it now",
                               missed_call_id)
                await follow_up(context, missed_call_id)
        except Exception:  # the sweeper must outlive a database blip
            logger.exception("sweep of undecided missed calls failed")
        await asyncio.sleep(interval)
