"""`POST /twilio/messaging/status`: Twilio's delivery reports for the messages we sent.

Each message sent gets two or three reports within seconds, so a burst of text-backs is followed
by a burst of reports: those arriving together are stored together (`context.delivery_reports`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response

from booking.batching import together_or_one_by_one
from booking.db import parse_row_id
from booking.gateway.context import GatewayContext, get_context
from booking.gateway.twilio_auth import TwilioForm, require
from booking.gateway.work import DeliveryReport
from booking.messaging.outbox import apply_status_callback

router = APIRouter()
Context = Annotated[GatewayContext, Depends(get_context)]


@router.post("/twilio/messaging/status")
async def message_status(params: TwilioForm, context: Context,
                         message_id: str | None = None) -> Response:
    sid, status = require(params, "MessageSid", "MessageStatus")
    our_message_id = None if message_id is None else parse_row_id(message_id)
    if message_id is not None and our_message_id is None:
        # We write message_id into every StatusCallback URL, so this one is not ours: refused
        # rather than ignored, which costs nothing as Twilio does not retry a 4xx.
        raise HTTPException(400, "message_id is not the id of a message we sent")
    await context.delivery_reports.submit(DeliveryReport(
        message_sid=sid, status=status, error_code=params.get("ErrorCode"),
        message_id=our_message_id))
    # An unknown SID is answered like a known one, or Twilio would keep retrying it.
    return Response(status_code=204)


async def record_reports(context: GatewayContext,
                         reports: list[DeliveryReport]) -> list[Exception | None]:
    """One batch of `context.delivery_reports`, stored in one transaction when it can be."""
    def apply(batch: list[DeliveryReport]) -> list[None]:
        with context.sessions() as session, session.begin():
            for report in batch:
                # An SMS copy of an undeliverable WhatsApp is stored here; the outbox sends it.
                apply_status_callback(session, message_sid=report.message_sid,
                                      status=report.status, error_code=report.error_code,
                                      message_id=report.message_id)
        return [None] * len(batch)

    return await asyncio.to_thread(together_or_one_by_one, apply, reports)
