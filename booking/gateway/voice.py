"""Twilio Voice: ring the front desk, and treat every way the Dial can fail as a missed call.

The call is recorded before any webhook answers (idempotent on CallSid), so a crash after the
answer loses nothing; the text-back goes out from the outbox after the answer. Calls reported
together are stored together (`context.missed_calls`), so fifty at once are a few commits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Response
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from booking.calls import destinations
from booking.calls.recovery import (
    CallReport,
    RecordedCall,
    record_answered_call,
    register_missed_calls,
)
from booking.calls.text_back import describe_opening
from booking.clinics.opening_hours import is_open_at, next_opening
from booking.gateway.clinic_numbers import bare, clinic_for_number
from booking.gateway.context import GatewayContext, get_context
from booking.gateway.follow_up import follow_up
from booking.gateway.twilio_auth import TwilioForm, require
from booking.messaging.phones import try_e164
from booking.models import Clinic, utcnow

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/twilio/voice")
Context = Annotated[GatewayContext, Depends(get_context)]

# How a Dial that did not connect the caller to a person ends.
MISSED_DIAL_STATUSES = {"no-answer", "busy", "failed", "canceled"}
# Final statuses of the parent call (its status callback), the backstop.
FINAL_CALL_STATUSES = {"completed", "busy", "no-answer", "failed", "canceled"}
# Most desk phones and mobiles send an unanswered call to voicemail after 20-25 s. If the Dial
# rings longer, voicemail "answers" and Twilio reports the call as completed, not missed.
VOICEMAIL_SAFE_MAX_SECONDS = 20
MIN_RING_SECONDS = 5
MAX_RING_SECONDS = 60  # with call screening voicemail cannot bridge, so longer is safe
SCREEN_SECONDS = 5


def ring_timeout(clinic: Clinic) -> int:
    """The Dial timeout: the clinic's own, kept below its voicemail pickup unless screened."""
    wanted = clinic.ring_timeout_seconds or 18
    ceiling = MAX_RING_SECONDS
    if not clinic.call_screening:
        pickup = (clinic.settings or {}).get("voice", {}).get("voicemail_pickup_seconds")
        ceiling = VOICEMAIL_SAFE_MAX_SECONDS if not pickup else min(
            VOICEMAIL_SAFE_MAX_SECONDS, int(pickup) - 3)
    timeout = max(MIN_RING_SECONDS, min(wanted, ceiling))
    if timeout != wanted:
        logger.warning("clinic %s: ring timeout %ss clamped to %ss (voicemail would answer)",
                       clinic.slug, wanted, timeout)
    return timeout


def _twiml(response: VoiceResponse) -> Response:
    return Response(content=str(response), media_type="application/xml")


async def _clinic_taking_calls(context: GatewayContext, number: str) -> Clinic:
    clinic = await clinic_for_number(context, number)
    if clinic.voice_number != bare(number):
        raise HTTPException(404, "no clinic takes calls on this number")
    return clinic


async def record_calls(context: GatewayContext, reports: list[CallReport]) -> list[RecordedCall]:
    """One batch of `context.missed_calls`: stored, and committed, before any webhook answers."""
    def record() -> list[RecordedCall]:
        with context.sessions() as session, session.begin():
            return register_missed_calls(session, reports)

    return await asyncio.to_thread(record)


async def _report(context: GatewayContext, clinic: Clinic, *, caller: str, call_sid: str,
                  dial_status: str) -> RecordedCall:
    return await context.missed_calls.submit(CallReport(
        clinic_id=clinic.id, caller=caller, call_sid=call_sid, dial_status=dial_status,
        source="twilio", occurred_at=utcnow()))


def _url(context: GatewayContext, path: str) -> str:
    # Absolute, so the signature Twilio sends on the follow-up request matches our public URL.
    return f"{context.settings.gateway_public_url.rstrip('/')}{path}"


def _closed_words(clinic: Clinic) -> str:
    now = utcnow()
    opening = next_opening(clinic, now)
    when = ""
    if opening is not None:
        zone = ZoneInfo(clinic.timezone)
        spoken = describe_opening(opening.astimezone(zone), now.astimezone(zone))
        when = f" We open again at {spoken}."
    return f"Thank you for calling {clinic.name}. We are closed right now.{when}"


def _after_hours_follow(*, textable: bool) -> str:
    return (" We are sending you a text message now, so you can book or tell us what you need."
            if textable else " Please call back when we are open.")


def _will_text(clinic: Clinic, caller: str | None, recorded: RecordedCall | None) -> bool:
    """What the caller may be promised: a text-back, unless they cannot have one (opted out,
    or a number the clinic does not text; an hourly cap can still refuse it)."""
    return (recorded is not None and recorded.will_text
            and destinations.refusal(clinic, caller) is None)


def _spawn_follow_up(context: GatewayContext, recorded: RecordedCall | None,
                     call_sid: str) -> None:
    if recorded is not None and recorded.is_new:
        context.spawn(follow_up(context, recorded.missed_call_id), name=f"follow-up {call_sid}")


@router.post("")
async def incoming_call(params: TwilioForm, context: Context) -> Response:
    """Ring the front desk, or when closed say so and text back straight away."""
    call_sid, caller_raw, to = require(params, "CallSid", "From", "To")

    clinic = await _clinic_taking_calls(context, to)
    if is_open_at(clinic, utcnow()) and clinic.front_desk_number:
        dial = Dial(timeout=ring_timeout(clinic),
                    action=_url(context, "/twilio/voice/dial-status"), method="POST",
                    answer_on_bridge=True)
        if clinic.call_screening:
            dial.number(clinic.front_desk_number,
                        url=_url(context, "/twilio/voice/screen"), method="POST")
        else:
            dial.number(clinic.front_desk_number)
        return _twiml(VoiceResponse().append(dial))
    caller = try_e164(caller_raw, default_region=clinic.country)
    recorded = None
    if caller is not None:  # withheld numbers cannot be texted back
        recorded = await _report(context, clinic, caller=caller, call_sid=call_sid,
                                 dial_status="after-hours")
    response = VoiceResponse()
    response.say(_closed_words(clinic) + _after_hours_follow(
        textable=_will_text(clinic, caller, recorded)))
    response.hangup()
    _spawn_follow_up(context, recorded, call_sid)
    return _twiml(response)


@router.post("/dial-status")
async def dial_status(params: TwilioForm, context: Context) -> Response:
    """The Dial's action callback: how the attempt to reach the front desk ended."""
    call_sid, caller_raw, to, status = require(params, "CallSid", "From", "To",
                                               "DialCallStatus")
    # Voicemail, or a screening whisper nobody accepted, never bridges the caller.
    missed = status in MISSED_DIAL_STATUSES or params.get("DialBridged") == "false"

    clinic = await _clinic_taking_calls(context, to)
    caller = try_e164(caller_raw, default_region=clinic.country)
    response = VoiceResponse()
    if not missed:
        if caller is not None:
            def record_answered() -> None:
                with context.sessions() as session, session.begin():
                    record_answered_call(session, clinic=clinic, caller=caller,
                                         call_sid=call_sid, occurred_at=utcnow())

            await asyncio.to_thread(record_answered)
        return _twiml(response)
    recorded = None
    if caller is not None:  # withheld numbers cannot be texted back
        recorded = await _report(context, clinic, caller=caller, call_sid=call_sid,
                                 dial_status=status)
    texting = _will_text(clinic, caller, recorded)
    response.say(f"Sorry, nobody at {clinic.name} could take your call."
                 + (" We are sending you a text message now." if texting
                    else " Please try again later."))
    response.hangup()
    _spawn_follow_up(context, recorded, call_sid)
    return _twiml(response)


@router.post("/call-status")
async def call_status(params: TwilioForm, context: Context) -> Response:
    """Backstop on the parent call: a call that ended without any Dial outcome was missed.

    A call whose Dial outcome is already stored (answered or missed) is left alone, because
    recording is idempotent on CallSid.
    """
    call_sid, caller_raw, to, status = require(params, "CallSid", "From", "To", "CallStatus")
    if status not in FINAL_CALL_STATUSES:
        return Response(status_code=204)

    clinic = await _clinic_taking_calls(context, to)
    caller = try_e164(caller_raw, default_region=clinic.country)
    if caller is not None:
        recorded = await _report(context, clinic, caller=caller, call_sid=call_sid,
                                 dial_status=f"call-{status}")
        _spawn_follow_up(context, recorded, call_sid)
    return Response(status_code=204)


@router.post("/screen")
async def screen(params: TwilioForm, context: Context) -> Response:
    """The whisper the front desk hears: only a person pressing 1 bridges the caller."""
    require(params, "CallSid")
    response = VoiceResponse()
    gather = Gather(num_digits=1, action=_url(context, "/twilio/voice/screen-result"),
                    method="POST", timeout=SCREEN_SECONDS)
    gather.say("Call for the clinic. Press 1 to take this call.")
    response.append(gather)
    response.hangup()  # no key pressed (voicemail): the caller is not bridged
    return _twiml(response)


@router.post("/screen-result")
async def screen_result(params: TwilioForm, context: Context) -> Response:
    """Pressing 1 ends the whisper and bridges the caller; anything else hangs up on the desk."""
    require(params, "CallSid")
    response = VoiceResponse()
    if params.get("Digits") != "1":
        response.hangup()
    return _twiml(response)
