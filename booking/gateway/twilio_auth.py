"""Dependencies every Twilio webhook goes through: size limit, signature check, form parsing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from booking.gateway.context import GatewayContext, get_context
from booking.messaging.twilio_signature import SIGNATURE_HEADER, is_valid, parse_form

# Twilio's largest webhook (a 1600-character message with ten media URLs) is a few KiB.
MAX_WEBHOOK_BYTES = 64 * 1024


async def read_limited(request: Request, limit: int = MAX_WEBHOOK_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it grows past `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, "body too large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, "body too large")
        chunks.append(chunk)
    return b"".join(chunks)


async def twilio_form(
    request: Request, context: Annotated[GatewayContext, Depends(get_context)]
) -> AsyncIterator[dict[str, str]]:
    """The webhook's form fields, once its X-Twilio-Signature is proven genuine.

    While the webhook is handled, follow-up work in the gateway gives way to it.
    """
    with context.webhook():
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            raise HTTPException(415, "Twilio webhooks are form-encoded")
        try:
            params = parse_form(await read_limited(request))
        except ValueError as exc:
            raise HTTPException(400, "malformed form body") from exc
        url = context.settings.gateway_public_url.rstrip("/") + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        if not is_valid(auth_token=context.settings.twilio_auth_token, url=url, params=params,
                        signature=request.headers.get(SIGNATURE_HEADER)):
            raise HTTPException(403, "invalid Twilio signature")
        yield params


TwilioForm = Annotated[dict[str, str], Depends(twilio_form)]


def require(params: dict[str, str], *names: str) -> list[str]:
    missing = [name for name in names if not params.get(name)]
    if missing:
        raise HTTPException(400, f"missing field(s): {', '.join(missing)}")
    return [params[name] for name in names]
