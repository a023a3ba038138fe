"""Twilio Voice: ring the front desk, and treat every way the Dial can fail as a missed call."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from booking.clinics import find_clinic_by_number
from booking.gateway.context import GatewayContext, get_context
from booking.gateway.follow_up import follow_up
from booking.gateway.twilio_auth import TwilioForm, require
from booking.models import Clinic, utcnow
from booking.opening_hours import is_open_at
from booking.phones import to_e164
from booking.recovery import record_answered_call, record_missed_call

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/twilio/voice")
Context = Annotated[GatewayContext, Depends(get_context)]

MISSED_DIAL_STATUSES = {"no-answer", "busy", "failed", "canceled"}


def _twiml(response: VoiceResponse) -> Response:
    return Response(content=str(response), media_type="application/xml")


def _clinic_for(session, number: str) -> Clinic:
    clinic = find_clinic_by_number(session, number)
    if clinic is None:
        raise HTTPException(404, "no clinic uses this number")
    return clinic


def _caller(params: dict[str, str], clinic: Clinic) -> str:
    try:
        return to_e164(params["From"], default_region=clinic.country)
    except ValueError as exc:
        # Withheld and anonymous callers cannot be texted back.
        raise HTTPException(422, f"caller number cannot be texted: {params['From']!r}") from exc


@router.post("")
async def incoming_call(params: TwilioForm, context: Context) -> Response:
    """Ring the front desk, or after hours say so and text back straight away."""
    call_sid, _, to = require(params, "CallSid", "From", "To")
    response = VoiceResponse()
    with context.sessions() as session, session.begin():
        clinic = _clinic_for(session, to)
        if is_open_at(clinic, utcnow()):
            dial = Dial(timeout=clinic.ring_timeout_seconds, action="/twilio/voice/dial-status",
                        method="POST", answer_on_bridge=True)
            if clinic.call_screening:
                dial.number(clinic.front_desk_number, url="/twilio/voice/screen", method="POST")
            else:
                dial.number(clinic.front_desk_number)
            response.append(dial)
            return _twiml(response)
        outcome = record_missed_call(session, clinic=clinic, caller=_caller(params, clinic),
                                     call_sid=call_sid, dial_status="after-hours",
                                     source="twilio", occurred_at=utcnow())
        response.say(f"Thank you for calling {clinic.name}. We are closed right now. "
                     "We will send you a text message so you can book or tell us what you need.")
        response.hangup()
    context.spawn(follow_up(context, outcome), name=f"follow-up {call_sid}")
    return _twiml(response)


@router.post("/dial-status")
async def dial_status(params: TwilioForm, context: Context) -> Response:
    """The Dial's action callback: how the attempt to reach the front desk ended."""
    call_sid, _, to, status = require(params, "CallSid", "From", "To", "DialCallStatus")
    # A voicemail or a screening whisper that was not accepted never bridges the caller.
    missed = status in MISSED_DIAL_STATUSES or params.get("DialBridged") == "false"
    response = VoiceResponse()
    with context.sessions() as session, session.begin():
        clinic = _clinic_for(session, to)
        caller = _caller(params, clinic)
        if not missed:
            record_answered_call(session, clinic=clinic, caller=caller, call_sid=call_sid,
                                 occurred_at=utcnow())
            return _twiml(response)
        outcome = record_missed_call(session, clinic=clinic, caller=caller, call_sid=call_sid,
                                     dial_status=status, source="twilio", occurred_at=utcnow())
    response.say(f"Sorry, nobody at {clinic.name} could take your call. "
                 "We are sending you a text message now.")
    response.hangup()
    context.spawn(follow_up(context, outcome), name=f"follow-up {call_sid}")
    return _twiml(response)


@router.post("/call-status")
async def call_status(params: TwilioForm, context: Context) -> Response:
    """Backstop on the parent call: a call that ended without any Dial outcome was missed."""
    call_sid, _, to, status = require(params, "CallSid", "From", "To", "CallStatus")
    if status not in ("completed", "busy", "no-answer", "failed", "canceled"):
        return Response(status_code=204)
    with context.sessions() as session, session.begin():
        clinic = _clinic_for(session, to)
        outcome = record_missed_call(session, clinic=clinic, caller=_caller(params, clinic),
                                     call_sid=call_sid, dial_status=f"call-{status}",
                                     source="twilio", occurred_at=utcnow())
    if outcome.is_new:
        context.spawn(follow_up(context, outcome), name=f"follow-up {call_sid}")
    return Response(status_code=204)


@router.post("/screen")
async def screen(params: TwilioForm, context: Context) -> Response:
    """The whisper the front desk hears: only a person pressing 1 bridges the caller."""
    require(params, "CallSid")
    response = VoiceResponse()
    gather = Gather(num_digits=1, action="/twilio/voice/screen-result", method="POST",
                    timeout=5)
    gather.say("Call from the clinic line. Press 1 to take this call.")
    response.append(gather)
    response.hangup()
    return _twiml(response)


@router.post("/screen-result")
async def screen_result(params: TwilioForm, context: Context) -> Response:
    response = VoiceResponse()
    if params.get("Digits") != "1":
        response.hangup()
    return _twiml(response)

