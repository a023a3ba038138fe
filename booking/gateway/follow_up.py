"""After a missed call is stored: send its text-back, then tell Rasa the thread began."""

from __future__ import annotations

import logging

import httpx

from booking.gateway.context import GatewayContext
from booking.recovery import MissedCallOutcome

logger = logging.getLogger(__name__)


async def follow_up(context: GatewayContext, outcome: MissedCallOutcome) -> None:
    if not outcome.message_ids:
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
        logger.warning("could not tell Rasa about missed call %s", outcome.missed_call_id,
                       exc_info=True)
