"""The clinic a Twilio number belongs to, looked up once in a while, not on every webhook.

The webhooks of a burst (fifty missed calls, fifty patients texting) all name the same number:
the first starts the look-up, the others wait for it, and it is kept for `CLINIC_SECONDS`.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import HTTPException

from booking.clinics.lookups import find_clinic_by_number
from booking.gateway.context import GatewayContext
from booking.messaging.phones import try_e164
from booking.models import Channel, Clinic

# A clinic's changed hours or numbers reach the webhooks within this many seconds.
CLINIC_SECONDS = 30.0


async def clinic_for_number(context: GatewayContext, number: str) -> Clinic:
    """The clinic with this voice, SMS or WhatsApp number, with its opening hours and closures
    loaded; HTTP 404 when there is none.

    Detached from any session and shared between requests, so read it and nothing more.
    """
    now = time.monotonic()
    cached = context.clinic_cache.get(number)
    if cached is None or cached[0] <= now:
        cached = (now + CLINIC_SECONDS,
                  asyncio.ensure_future(asyncio.to_thread(_look_up_clinic, context, number)))
        context.clinic_cache[number] = cached
    try:
        # shield: a caller hanging up must not cancel the look-up the others wait for
        return await asyncio.shield(cached[1])
    except Exception:
        if context.clinic_cache.get(number) is cached:
            del context.clinic_cache[number]  # an unknown number, or the database: not kept
        raise


def bare(number: str) -> str:
    """The number in E.164 without a 'whatsapp:' prefix (as given when it is no number)."""
    return try_e164(number, default_region=None) or number


def receives(clinic: Clinic, channel: Channel, number: str) -> bool:
    """Does the clinic take patients' messages on this channel at `number`?"""
    own = clinic.whatsapp_number if channel == Channel.whatsapp else clinic.sms_number
    return own is not None and own == bare(number)


def _look_up_clinic(context: GatewayContext, number: str) -> Clinic:
    with context.sessions() as session:
        clinic = find_clinic_by_number(session, number)
        if clinic is None:
            raise HTTPException(404, "no clinic has this number")
        clinic.opening_hours, clinic.closures  # noqa: B018 - loaded before the session ends
        return clinic
