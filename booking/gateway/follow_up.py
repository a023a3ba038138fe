"""After a missed call is stored: decide its text-back and send it; the dialogue hears of the
call through the inbox, before the patient's reply.

The webhook only stores the call (so Twilio gets its answer fast); everything here runs after
the answer, on the gateway's background threads, in batches (`context.text_backs`), so fifty
calls at once cost a few transactions, not fifty. Calls a crash left undecided are picked up by
`sweep_undecided`, so none is lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import timedelta

from booking.batching import together_or_one_by_one
from booking.calls.hourly_caps import Allowance, HourlyCaps
from booking.calls.recovery import (
    AlreadyDecided,
    decide_text_backs,
    undecided_missed_calls,
)
from booking.escalation.cap_alerts import alert_cap_reached
from booking.gateway.context import GatewayContext
from booking.gateway.work import Decided
from booking.messaging import inbox
from booking.models import Clinic, utcnow

logger = logging.getLogger(__name__)

# A call is left to its own follow-up this long before the sweeper takes it as abandoned.
UNDECIDED_GRACE = timedelta(seconds=10)
SWEEP_INTERVAL_SECONDS = 2.0
# What the dialogue hears of a missed call (domain.yml; actions/conversation.py).
MISSED_CALL_INTENT = "EXTERNAL_missed_call"


async def follow_up(context: GatewayContext, missed_call_id: int) -> None:
    decided = await context.text_backs.submit(missed_call_id)
    if decided is None:  # decided already, here or by another process
        return
    outcome, first_claim = decided
    if not outcome.message_ids:
        return
    first, *rest = outcome.message_ids
    if first_claim is not None:
        await context.outbox.send_claimed(first, first_claim)
    else:  # an older message to this patient goes first; the outbox keeps the order
        rest = outcome.message_ids
    await context.outbox.deliver(rest)
    context.inbox.wake()


async def decide_batch(context: GatewayContext, missed_call_ids: list[int]
                       ) -> list[Decided | Exception | None]:
    """One batch of `context.text_backs`, decided in one transaction when it can be: None for a
    call another process decided first."""
    outcomes = await context.in_background(together_or_one_by_one,
                                           functools.partial(_decide, context), missed_call_ids)
    return [None if isinstance(outcome, AlreadyDecided) else outcome for outcome in outcomes]


def _decide(context: GatewayContext, missed_call_ids: list[int]) -> list[Decided | None]:
    """Store the text-backs, the dialogue's news of each call, and claim their first messages
    for sending, in one transaction.

    Raises AlreadyDecided when another process decided one of these calls meanwhile."""
    with context.sessions() as session, session.begin():
        outcomes = decide_text_backs(session, missed_call_ids,
                                     caps=HourlyCaps.from_settings(context.settings))
        now = utcnow()
        for outcome in outcomes:
            if outcome.message_ids and outcome.thread_id is not None:
                inbox.queue_event(session, thread_id=outcome.thread_id,
                                  message_id=outcome.message_ids[0], intent=MISSED_CALL_INTENT,
                                  now=now)
            if outcome.cap_reached is not None:
                _alert_cap_reached(session, context, outcome.cap_reached)
        decided = {outcome.missed_call_id: (outcome, context.outbox.claim(
                       session, outcome.message_ids[0]) if outcome.message_ids else None)
                   for outcome in outcomes}
    return [decided.get(missed_call_id) for missed_call_id in missed_call_ids]


def _alert_cap_reached(session, context: GatewayContext, allowance: Allowance) -> None:
    """In the decision's transaction, so the alert is stored exactly when the refusal is."""
    alert_cap_reached(session, clinic=session.get(Clinic, allowance.clinic_id),
                      refused_by=allowance.refused_by, cap=allowance.cap,
                      hour_start=allowance.hour_start, instant=utcnow(),
                      settings=context.settings)


async def sweep_undecided(context: GatewayContext, *,
                          interval: float = SWEEP_INTERVAL_SECONDS) -> None:
    """Decide calls whose webhook answered but whose follow-up never ran (a crash, a restart)."""
    def due() -> list[int]:
        with context.sessions() as session:
            return undecided_missed_calls(session, recorded_before=utcnow() - UNDECIDED_GRACE)

    while True:
        try:
            due_ids = await context.in_background(due)
            for missed_call_id in due_ids:
                logger.warning("missed call %s was left undecided; deciding it now",
                               missed_call_id)
            await asyncio.gather(*(follow_up(context, missed_call_id)
                                   for missed_call_id in due_ids))
        except Exception:  # the sweeper must outlive a database blip
            logger.exception("sweep of undecided missed calls failed")
        await asyncio.sleep(interval)
