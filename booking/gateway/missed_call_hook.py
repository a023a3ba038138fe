"""`POST /hooks/missed-call`: missed calls from any other phone system, HMAC-signed.

The sender signs `"{timestamp}.{raw body}"` with HMAC-SHA256 and the secret of the clinic the
body names (`Settings.hook_secret_for`), and sends `X-Ringback-Timestamp` (Unix seconds) and
`X-Ringback-Signature` (hex). Since the body says whose secret checks it, the body is read (and
the clinic looked up) before the signature is checked; nothing is stored before. A signature
made with another clinic's secret is refused like any wrong one, and so is a request for a
clinic that is unknown or takes no hook requests, unless a secret signed it (then: 404). A
request older than the allowed skew is refused, and so is one whose signature was already
accepted (a replay).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ValidationError, validator
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from booking.calls.recovery import RecordedCall, register_missed_call
from booking.clinics.lookups import find_clinic_by_number, find_clinic_by_slug
from booking.gateway.context import GatewayContext, get_context
from booking.gateway.follow_up import follow_up
from booking.gateway.twilio_auth import MAX_WEBHOOK_BYTES, read_limited
from booking.messaging.phones import to_e164
from booking.models import MissedCall, WebhookReplay, utcnow

router = APIRouter()
Context = Annotated[GatewayContext, Depends(get_context)]

TIMESTAMP_HEADER = "X-Ringback-Timestamp"
SIGNATURE_HEADER = "X-Ringback-Signature"
# Unix seconds need 10 digits until the year 2286. ASCII only: str.isdigit() also accepts "²",
# which int() refuses, and int() refuses more than 4,300 digits.
UNIX_SECONDS = re.compile(r"[0-9]{1,10}")
HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
CALL_SID_PREFIX = "hook:"
MAX_CALL_ID_LENGTH = MissedCall.call_sid.type.length - len(CALL_SID_PREFIX)
MAX_STATUS_LENGTH = MissedCall.dial_status.type.length
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class MissedCallHook(BaseModel):
    call_id: str
    caller: str
    clinic: str | None = None  # the clinic's slug, or
    to: str | None = None  # the number that was called
    occurred_at: datetime | None = None
    status: str = "no-answer"

    @validator("call_id")
    def _call_id_is_reasonable(cls, value: str) -> str:
        if not value.strip() or len(value.strip()) > MAX_CALL_ID_LENGTH:
            raise ValueError(f"call_id must be 1-{MAX_CALL_ID_LENGTH} characters")
        return value.strip()

    @validator("status")
    def _status_fits(cls, value: str) -> str:
        if len(value) > MAX_STATUS_LENGTH:
            raise ValueError(f"status must be at most {MAX_STATUS_LENGTH} characters")
        return value

    @validator("occurred_at")
    def _occurred_at_has_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("occurred_at needs a UTC offset")
        return value


def signature_for(*, secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _signed_headers(request: Request, context: GatewayContext) -> tuple[str, str]:
    """The timestamp and signature, present and fresh; checked against a secret later."""
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not timestamp or not signature:
        raise HTTPException(401, "missing signature headers")
    if not UNIX_SECONDS.fullmatch(timestamp):
        raise HTTPException(400, f"{TIMESTAMP_HEADER} must be Unix seconds: "
                                 "1 to 10 ASCII digits")
    skew = context.settings.missed_call_max_skew_seconds
    if abs(time.time() - int(timestamp)) > skew:
        raise HTTPException(401, "stale request: timestamp outside the allowed window")
    return timestamp, signature


def _verify(secret: str | None, *, timestamp: str, signature: str, body: bytes) -> str:
    """The accepted signature, if `secret` made it; else 401, the same answer whether the
    clinic is unknown, has no secret, or the signature is wrong: a stranger cannot tell which
    clinics exist."""
    if secret is None:
        raise HTTPException(401, "invalid signature")
    expected = signature_for(secret=secret, timestamp=timestamp, body=body)
    # compare_digest refuses non-ASCII text with a TypeError, so anything but hex is wrong.
    if not HEX_SHA256.fullmatch(signature) or not hmac.compare_digest(expected,
                                                                      signature.lower()):
        raise HTTPException(401, "invalid signature")
    return expected


def _check_occurred_at(occurred_at: datetime, skew_seconds: int) -> None:
    """A call happens between the Unix epoch and the signed request (give or take the skew).

    Far-off dates are not only nonsense: year 1 or 9999 overflows when converted to UTC or to
    the clinic's time zone, long after the request was answered.
    """
    latest = utcnow() + timedelta(seconds=skew_seconds)
    try:
        in_utc = occurred_at.astimezone(timezone.utc)
    except OverflowError:
        in_utc = None
    if in_utc is None or not UNIX_EPOCH <= in_utc <= latest:
        raise HTTPException(400, "occurred_at must lie between 1970-01-01T00:00:00Z and now")


@router.post("/hooks/missed-call", status_code=202)
async def missed_call_hook(request: Request, context: Context) -> dict:
    body = await read_limited(request, MAX_WEBHOOK_BYTES)
    timestamp, signed = _signed_headers(request, context)
    try:
        hook = MissedCallHook.parse_raw(body)
    except ValidationError as exc:
        raise HTTPException(422, exc.errors()) from exc
    if not hook.clinic and not hook.to:
        raise HTTPException(422, "give the clinic's slug or the number that was called")
    if hook.occurred_at is not None:
        _check_occurred_at(hook.occurred_at, context.settings.missed_call_max_skew_seconds)

    def record() -> RecordedCall:
        with context.sessions() as session, session.begin():
            if hook.clinic:
                clinic = find_clinic_by_slug(session, hook.clinic)
            else:
                clinic = find_clinic_by_number(session, hook.to)
            if clinic is None:
                # Only a sender holding a secret (the shared one, or one configured for this
                # slug) learns that the clinic is unknown; anyone else gets the 401 of a bad
                # signature.
                _verify(context.settings.hook_secret_for(hook.clinic or ""),
                        timestamp=timestamp, signature=signed, body=body)
                raise HTTPException(404, "unknown clinic")
            signature = _verify(context.settings.hook_secret_for(clinic.slug),
                                timestamp=timestamp, signature=signed, body=body)
            try:
                caller = to_e164(hook.caller, default_region=clinic.country)
            except ValueError as exc:
                raise HTTPException(422, "caller is not a phone number") from exc
            _refuse_replay(session, signature, context.settings.missed_call_max_skew_seconds)
            return register_missed_call(
                session, clinic=clinic, caller=caller,
                call_sid=f"{CALL_SID_PREFIX}{hook.call_id}", dial_status=hook.status, source="hook",
                occurred_at=hook.occurred_at or utcnow(),
            )

    recorded = await asyncio.to_thread(record)
    if recorded.is_new:
        context.spawn(follow_up(context, recorded.missed_call_id),
                      name=f"follow-up hook {hook.call_id}")
    # "pending": stored, the text-back (if the caller should get one) follows in seconds.
    return {"missed_call_id": recorded.missed_call_id, "status": recorded.status.value,
            "duplicate_delivery": not recorded.is_new}


def _refuse_replay(session, signature: str, window_seconds: int) -> None:
    # Signatures older than twice the window can never be accepted again anyway.
    session.execute(delete(WebhookReplay).where(
        WebhookReplay.received_at < datetime.now(timezone.utc) - timedelta(
            seconds=2 * window_seconds)))
    try:
        with session.begin_nested():
            session.add(WebhookReplay(signature=signature))
    except IntegrityError as exc:
        raise HTTPException(409, "replayed request") from exc
