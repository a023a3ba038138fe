"""Dependencies every Twilio webhook goes through: size limit, signature check, form parsing."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from booking.gateway.context import GatewayContext, get_context
from booking.twilio_signature import SIGNATURE_HEADER, is_valid

# Twilio's largest webhook (a 1600-character message with ten media URLs) is a few KiB.
MAX_WEBHOOK_BYTES = 64 * 1024


async def twilio_form(
    request: Request, context: Annotated[GatewayContext, Depends(get_context)]
) -> dict[str, str]:
    """The webhook's form fields, once its X-Twilio-Signature is proven genuine."""
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        raise HTTPException(413, "webhook body too large")
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        raise HTTPException(415, "Twilio webhooks are form-encoded")
    try:
        form = await request.form()
    except Exception as exc:  # starlette raises several types for a broken body
        raise HTTPException(400, "malformed form body") from exc
    params = {key: str(value) for key, value in form.multi_items()}
    url = context.settings.gateway_public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    if not is_valid(auth_token=context.settings.twilio_auth_token, url=url, params=params,
                    signature=request.headers.get(SIGNATURE_HEADER)):
        raise HTTPException(403, "invalid Twilio signature")
    return params


TwilioForm = Annotated[dict[str, str], Depends(twilio_form)]


def require(params: dict[str, str], *names: str) -> list[str]:
    missing = [name for name in names if not params.get(name)]
    if missing:
        raise HTTPException(400, f"missing field(s): {', '.join(missing)}")
    return [params[name] for name in names]
