"""A local stand-in for Twilio: its Messages REST API, and the phone network around it.

It speaks Twilio's documented wire format both ways. Ringback's outbound messages arrive at
`POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form fields, HTTP basic auth) and are
answered with a Message resource; delivery is reported to each message's StatusCallback. Toward
Ringback it behaves like the network: a simulated caller rings the clinic (Twilio Voice webhook,
then the Dial action callback) or texts it (Messaging webhook), every request signed with
X-Twilio-Signature. Tests and the demo steer it through the `/_fake/...` endpoints: make it fail
or slow down, make WhatsApp undeliverable to a number, read what it received.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.etree import ElementTree

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel

from booking.twilio_signature import SIGNATURE_HEADER, sign

_templates = Environment(loader=PackageLoader("simulator", "templates"),
                         autoescape=select_autoescape())


@dataclass
class FakeConfig:
    account_sid: str
    auth_token: str
    gateway_url: str  # where the clinic's voice number points (Twilio Voice webhook)
    rasa_url: str  # where the clinic's messaging numbers point (Twilio Messaging webhook)
    state_file: Path | None = None  # survives a restart, so "down then up" tests lose nothing
    auto_status_callbacks: bool = True


@dataclass
class Failure:
    status: int = 503
    remaining: int = 0  # fail this many requests, then recover
    delay_seconds: float = 0.0


@dataclass
class Record:
    """One message as Twilio would show it in its log, in either direction."""

    sid: str
    direction: str  # "outbound-api" (Ringback sent it) or "inbound" (a phone sent it)
    to: str
    from_: str
    body: str
    status: str
    date_created: str
    content_sid: str | None = None
    content_variables: str | None = None
    status_callback: str | None = None
    error_code: int | None = None
    num_media: int = 0
    extra: dict = field(default_factory=dict)


class Control(BaseModel):
    fail_next: int = 0
    fail_status: int = 503
    delay_seconds: float = 0.0


class WhatsAppOutcome(BaseModel):
    number: str
    error_code: int = 63016


class Call(BaseModel):
    caller: str
    to: str
    outcome: str = "no-answer"  # DialCallStatus Twilio will report


class Inbound(BaseModel):
    from_: str
    to: str
    body: str = ""
    channel: str = "sms"
    media_urls: list[str] = []
    latitude: float | None = None
    longitude: float | None = None


_SID_COUNTER = itertools.count(1)


def _sid(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}{next(_SID_COUNTER):08x}"


def _now_rfc2822() -> str:
    return format_datetime(datetime.now(timezone.utc))


def create_app(config: FakeConfig) -> FastAPI:
    app = FastAPI(title="Twilio fake")
    records: list[Record] = _load(config.state_file)
    failure = Failure()
    undeliverable_whatsapp: dict[str, int] = {}
    background: set[asyncio.Task] = set()
    http = httpx.AsyncClient(timeout=10)

    def persist() -> None:
        if config.state_file:
            config.state_file.write_text(json.dumps([asdict(r) for r in records]))

    def spawn(coro) -> None:
        task = asyncio.create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    async def signed_post(url: str, params: dict[str, str]) -> httpx.Response:
        signature = sign(auth_token=config.auth_token, url=url, params=params)
        return await http.post(url, data=params, headers={SIGNATURE_HEADER: signature})

    async def report_delivery(record: Record) -> None:
        """Walk the message through sent → delivered (or undelivered), as Twilio's callbacks do."""
        await asyncio.sleep(0.05)
        outcomes = ["sent", "delivered"]
        bare_to = record.to.removeprefix("whatsapp:")
        if record.to.startswith("whatsapp:") and bare_to in undeliverable_whatsapp:
            record.error_code = undeliverable_whatsapp[bare_to]
            outcomes = ["sent", "undelivered"]
        for status in outcomes:
            record.status = status
            persist()
            if not record.status_callback:
                continue
            params = {"MessageSid": record.sid, "MessageStatus": status,
                      "AccountSid": config.account_sid, "To": record.to, "From": record.from_}
            if status == "undelivered" and record.error_code:
                params["ErrorCode"] = str(record.error_code)
            try:
                await signed_post(record.status_callback, params)
            except httpx.HTTPError:
                pass  # Twilio, too, gives up on a callback URL that does not answer

    @app.post("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def create_message(account_sid: str, request: Request):
        if failure.delay_seconds:
            await asyncio.sleep(failure.delay_seconds)
        if not _basic_auth_ok(request, config) or account_sid != config.account_sid:
            return _twilio_error(401, 20003, "Authenticate")
        if failure.remaining > 0:
            failure.remaining -= 1
            return _twilio_error(failure.status, 20500 if failure.status >= 500 else 20429,
                                 "Simulated failure")
        form = await request.form()
        to, from_ = form.get("To"), form.get("From")
        body, content_sid = form.get("Body"), form.get("ContentSid")
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not from_:
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if not body and not content_sid:
            return _twilio_error(400, 21602, "Message body is required.")
        if body and len(body) > 1600:
            return _twilio_error(400, 21617, "The concatenated message body exceeds the "
                                             "1600 character limit.")
        if to.startswith("whatsapp:") != from_.startswith("whatsapp:"):
            return _twilio_error(400, 63007, "Twilio could not find a Channel with the "
                                             "specified From address")
        record = Record(
            sid=_sid("SM"), direction="outbound-api", to=to, from_=from_, body=body or "",
            status="queued", date_created=_now_rfc2822(), content_sid=content_sid,
            content_variables=form.get("ContentVariables"),
            status_callback=form.get("StatusCallback"),
        )
        records.append(record)
        persist()
        if config.auto_status_callbacks:
            spawn(report_delivery(record))
        return JSONResponse(_resource(record, config.account_sid), status_code=201)

    @app.get("/_fake/messages")
    async def list_messages(number: str | None = None, direction: str | None = None):
        """What Twilio saw, oldest first; `number` matches either end, with or without whatsapp:."""
        found = [r for r in records
                 if (number is None or number in (r.to.removeprefix("whatsapp:"),
                                                  r.from_.removeprefix("whatsapp:")))
                 and (direction is None or r.direction == direction)]
        return [_resource(r, config.account_sid) for r in found]

    @app.post("/_fake/control")
    async def control(settings: Control):
        failure.remaining = settings.fail_next
        failure.status = settings.fail_status
        failure.delay_seconds = settings.delay_seconds
        return {"ok": True}

    @app.post("/_fake/whatsapp-undeliverable")
    async def whatsapp_undeliverable(outcome: WhatsAppOutcome):
        undeliverable_whatsapp[outcome.number] = outcome.error_code
        return {"ok": True}

    @app.post("/_fake/reset")
    async def reset():
        records.clear()
        undeliverable_whatsapp.clear()
        failure.remaining, failure.delay_seconds = 0, 0.0
        persist()
        return {"ok": True}

    @app.post("/_fake/calls")
    async def place_call(call: Call):
        """Ring the clinic the way Twilio Voice would, then report how the Dial ended."""
        call_sid = _sid("CA")
        params = {"CallSid": call_sid, "AccountSid": config.account_sid, "From": call.caller,
                  "To": call.to, "CallStatus": "ringing", "Direction": "inbound"}
        voice_url = f"{config.gateway_url}/twilio/voice"
        answer = await signed_post(voice_url, params)
        if answer.status_code != 200:
            raise HTTPException(502, f"voice webhook answered {answer.status_code}: {answer.text}")
        action_url = _dial_action(answer.text, base=config.gateway_url)
        result: dict = {"call_sid": call_sid, "twiml": answer.text, "dial_status": None}
        if action_url:
            dial_params = {**params, "CallStatus": "in-progress",
                           "DialCallStatus": call.outcome,
                           "DialBridged": "true" if call.outcome == "completed" else "false"}
            if call.outcome == "completed":
                dial_params["DialCallDuration"] = "42"
            dial = await signed_post(action_url, dial_params)
            result["dial_status"] = dial.status_code
        return result

    @app.post("/_fake/inbound")
    async def inbound(message: Inbound):
        """A phone texts the clinic: Twilio posts the Messaging webhook, signed."""
        whatsapp = message.channel == "whatsapp"
        prefix = "whatsapp:" if whatsapp else ""
        record = Record(sid=_sid("SM"), direction="inbound", to=prefix + message.to,
                        from_=prefix + message.from_, body=message.body, status="received",
                        date_created=_now_rfc2822(), num_media=len(message.media_urls))
        params = {"MessageSid": record.sid, "SmsMessageSid": record.sid,
                  "AccountSid": config.account_sid, "From": record.from_, "To": record.to,
                  "Body": message.body, "NumMedia": str(len(message.media_urls)),
                  "NumSegments": "1", "ApiVersion": "2010-04-01"}
        for index, url in enumerate(message.media_urls):
            params[f"MediaUrl{index}"] = url
            params[f"MediaContentType{index}"] = "image/jpeg"
        if message.latitude is not None and message.longitude is not None:
            params["Latitude"], params["Longitude"] = str(message.latitude), str(message.longitude)
        if whatsapp:
            params["ProfileName"] = "Simulated patient"
            params["WaId"] = message.from_.lstrip("+")
        channel = "twilio_whatsapp" if whatsapp else "twilio_sms"
        records.append(record)
        persist()
        response = await signed_post(f"{config.rasa_url}/webhooks/{channel}/webhook", params)
        return {"sid": record.sid, "webhook_status": response.status_code}

    @app.get("/phone", response_class=HTMLResponse)
    async def phone_page(clinic: str = "", patient: str = "+447700900123"):
        return _templates.get_template("phone.html").render(clinic=clinic, patient=patient)

    @app.on_event("shutdown")
    async def close_client() -> None:
        await http.aclose()

    return app


def _basic_auth_ok(request: Request, config: FakeConfig) -> bool:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return user == config.account_sid and secrets.compare_digest(password, config.auth_token)


def _twilio_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
         "status": status},
        status_code=status,
    )


def _resource(record: Record, account_sid: str) -> dict:
    body = record.body
    return {
        "sid": record.sid, "account_sid": account_sid, "api_version": "2010-04-01",
        "to": record.to, "from": record.from_, "body": body, "status": record.status,
        "direction": record.direction, "date_created": record.date_created,
        "num_segments": str(max(1, -(-len(body) // 153))) if body else "1",
        "num_media": str(record.num_media), "error_code": record.error_code,
        "content_sid": record.content_sid, "content_variables": record.content_variables,
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{record.sid}.json",
    }


def _dial_action(twiml: str, *, base: str) -> str | None:
    """The action URL of the <Dial> in a TwiML answer, absolute; None when there is no Dial."""
    try:
        root = ElementTree.fromstring(twiml)
    except ElementTree.ParseError as exc:
        raise HTTPException(502, f"voice webhook returned invalid TwiML: {exc}") from exc
    dial = root.find("Dial")
    if dial is None:
        return None
    action = dial.get("action", "")
    if re.match(r"https?://", action):
        return action
    return f"{base.rstrip('/')}/{action.lstrip('/')}"


def _load(state_file: Path | None) -> list[Record]:
    if state_file and state_file.exists():
        return [Record(**row) for row in json.loads(state_file.read_text() or "[]")]
    return []
