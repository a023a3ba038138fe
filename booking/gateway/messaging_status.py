"""`POST /twilio/messaging/status`: Twilio's delivery reports for the messages we sent."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from booking.gateway.context import GatewayContext, get_context
from booking.gateway.twilio_auth import TwilioForm, require
from booking.outbox import apply_status_callback

router = APIRouter()
Context = Annotated[GatewayContext, Depends(get_context)]


@router.post("/twilio/messaging/status")
async def message_status(params: TwilioForm, context: Context,
                         message_id: int | None = None) -> Response:
    sid, status = require(params, "MessageSid", "MessageStatus")

    def record() -> None:
        with context.sessions() as session, session.begin():
            # An SMS copy of an undeliverable WhatsApp is stored here; the outbox sweeper sends it.
            apply_status_callback(session, message_sid=sid, status=status,
                                  error_code=params.get("ErrorCode"), message_id=message_id)

    await asyncio.to_thread(record)
    # An unknown SID is answered like a known one, or Twilio would keep retrying it.
    return Response(status_code=204)
