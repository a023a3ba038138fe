"""Telling a clinic's staff that missed callers are not texted back for the rest of the hour:
an hourly cap on text-backs (booking.calls.hourly_caps) was reached, by an unusual burst of
calls or by SMS-pumping fraud. Sent once per clinic and hour, to whoever handles the clinic's
bills (the on-call rota failing that, see `on_call.alert_recipients`), by text through the
outbox; it names no caller."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from booking.escalation.on_call import alert_recipients
from booking.messaging.outbox import enqueue
from booking.models import Channel, Clinic, EscalationReason
from booking.settings import Settings

logger = logging.getLogger(__name__)

CAP_WORDS = {"clinic_hourly_cap": "the clinic's cap of {cap} text-backs an hour",
             "global_hourly_cap": "Ringback's cap of {cap} text-backs an hour for all clinics"}


def cap_alert_text(*, clinic: Clinic, refused_by: str, cap: int, hour_start: datetime,
                   settings: Settings) -> str:
    until = (hour_start + timedelta(hours=1)).astimezone(ZoneInfo(clinic.timezone))
    reached = CAP_WORDS[refused_by].format(cap=cap)
    return (f"Ringback, {clinic.name}: {reached} is reached, so missed callers are not texted "
            f"back until {until:%H:%M}. An unusual burst of calls can be SMS-pumping fraud; "
            f"the calls are kept in the console: {settings.console_public_url.rstrip('/')}"
            "/console")


def alert_cap_reached(session: Session, *, clinic: Clinic, refused_by: str, cap: int,
                      hour_start: datetime, instant: datetime,
                      settings: Settings) -> None:
    """Store the alert texts in the caller's transaction; the outbox's sweeper sends them."""
    text = cap_alert_text(clinic=clinic, refused_by=refused_by, cap=cap, hour_start=hour_start,
                          settings=settings)
    recipients = [staff for staff in alert_recipients(
        session, clinic=clinic, reason=EscalationReason.billing, instant=instant) if staff.phone]
    logger.error("clinic %s: %s reached (%s); %d staff alerted", clinic.slug, refused_by, cap,
                 len(recipients))
    for staff in recipients:
        channel = staff.alert_channel or Channel.sms
        if channel == Channel.whatsapp and not clinic.whatsapp_number:
            channel = Channel.sms
        enqueue(session, clinic=clinic, channel=channel, to_number=staff.phone, body=text,
                author="system")
