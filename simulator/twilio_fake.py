"""A local stand-in for Twilio: its Messages REST API, and the phone network around it.

It speaks Twilio's documented wire format both ways. Ringback's outbound messages arrive at
`POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form fields, HTTP basic auth) and are
answered with a Message resource; `GET` on the same URL lists them (To, From, DateSent>
filters, paged). Delivery is reported to each message's StatusCallback. WhatsApp rules are
kept: free-form text outside the 24-hour customer-service window is undelivered (63016), and an
approved template (ContentSid) is rendered with its ContentVariables.

Toward Ringback it behaves like the network: a simulated caller rings the clinic (Twilio Voice
webhook, the Dial action callback, the call's status callback) or texts it (Messaging webhook),
every request signed with X-Twilio-Signature.

Tests and the demo steer it through the `/_fake/...` endpoints: fail or slow down the next
requests, take a message and then not answer (a timeout whose message exists), make WhatsApp
undeliverable to a number, read what it received. With a state file it survives a restart, so
"Twilio down, then back" loses nothing on its side either.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.etree import ElementTree

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel

from booking.messaging.twilio_signature import SIGNATURE_HEADER, sign

_templates = Environment(loader=PackageLoader("simulator", "templates"),
                         autoescape=select_autoescape())

MAX_BODY_UNITS = 1600  # UTF-16 code units, as Twilio counts them
WHATSAPP_WINDOW = timedelta(hours=24)
# Approved WhatsApp templates the fake knows, as Twilio's Content API would render them.
DEFAULT_CONTENT = {
    "HX00000000000000000000000000000001": (
        "Sorry we missed your call at {{1}}. Hi {{2}}, reply YES to book an appointment, or "
        "tell us what you need. Reply STOP to opt out."),
    "HX00000000000000000000000000000002": (
        "Sorry we missed your call at {{1}}. Hi {{2}}, we're closed now and open again at "
        "{{3}}. Reply YES to book an appointment, or tell us what you need. Reply STOP to opt "
        "out."),
}


@dataclass
class FakeConfig:
    account_sid: str
    auth_token: str
    gateway_url: str  # where the clinic's numbers point (Twilio Voice and Messaging webhooks)
    state_file: Path | None = None  # survives a restart, so "down then up" tests lose nothing
    auto_status_callbacks: bool = True
    enforce_whatsapp_window: bool = True


@dataclass
class Failure:
    status: int = 503
    remaining: int = 0  # fail this many requests, then recover
    delay_seconds: float = 0.0  # before handling each create request
    # Take this many messages (they exist at "Twilio") and then keep the sender waiting this
    # long for the answer, so a client with a shorter timeout never learns the SID.
    hang_after_create: int = 0
    hang_seconds: float = 0.0
    status_callbacks: bool = True  # off: messages stay "queued" and nobody is told


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
    created_epoch: float = 0.0  # when the fake stored it (for benchmarks and the 24 h window)
    extra: dict = field(default_factory=dict)


class Control(BaseModel):
    fail_next: int = 0
    fail_status: int = 503
    delay_seconds: float = 0.0
    hang_after_create: int = 0
    hang_seconds: float = 0.0
    status_callbacks: bool = True


class WhatsAppOutcome(BaseModel):
    number: str
    error_code: int = 63016


class Content(BaseModel):
    sid: str
    body: str


class Call(BaseModel):
    caller: str
    to: str
    outcome: str = "no-answer"  # DialCallStatus Twilio will report
    # With call screening on: did the person at the desk press 1? (None: no screening)
    screen_accepted: bool | None = None
    # The caller hangs up while the desk is still ringing: no Dial outcome, only the call's
    # status callback reports the end.
    caller_hangs_up: bool = False
    status_callback: bool = True  # report the call's end to /twilio/voice/call-status


class Inbound(BaseModel):
    from_: str
    to: str
    body: str = ""
    channel: str = "sms"
    media_urls: list[str] = []
    latitude: float | None = None
    longitude: float | None = None
    message_sid: str | None = None  # reuse a SID to play Twilio retrying a webhook


_SID_COUNTER = itertools.count(1)


def _sid(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}{next(_SID_COUNTER):08x}"


def _now_rfc2822() -> str:
    return format_datetime(datetime.now(timezone.utc), usegmt=True)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def render_content(template: str, variables: str | None) -> str:
    try:
        values = json.loads(variables) if variables else {}
    except ValueError:
        values = {}
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(values.get(m.group(1), "")), template)


def create_app(config: FakeConfig) -> FastAPI:
    app = FastAPI(title="Twilio fake")
    records: list[Record] = _load(config.state_file)
    failure = Failure()
    undeliverable_whatsapp: dict[str, int] = {}
    content = dict(DEFAULT_CONTENT)
    background: set[asyncio.Task] = set()
    http = httpx.AsyncClient(timeout=10)

    def persist() -> None:
        if config.state_file:
            temporary = config.state_file.with_suffix(".tmp")
            temporary.write_text(json.dumps([asdict(r) for r in records]))
            temporary.replace(config.state_file)

    def spawn(coro) -> None:
        task = asyncio.create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    async def signed_post(url: str, params: dict[str, str]) -> httpx.Response:
        signature = sign(auth_token=config.auth_token, url=url, params=params)
        return await http.post(url, data=params, headers={SIGNATURE_HEADER: signature})

    def in_whatsapp_window(business: str, user: str) -> bool:
        horizon = time.time() - WHATSAPP_WINDOW.total_seconds()
        return any(r.direction == "inbound" and r.from_ == user and r.to == business
                   and r.created_epoch >= horizon for r in records)

    def delivery_error(record: Record) -> int | None:
        if not record.to.startswith("whatsapp:"):
            return None
        bare_to = record.to.removeprefix("whatsapp:")
        if bare_to in undeliverable_whatsapp:
            return undeliverable_whatsapp[bare_to]
        if (config.enforce_whatsapp_window and not record.content_sid
                and not in_whatsapp_window(record.from_, record.to)):
            return 63016  # free-form message outside the 24-hour window
        return None

    async def report_delivery(record: Record) -> None:
        """Walk the message through sent → delivered (or undelivered), as Twilio's callbacks do."""
        await asyncio.sleep(0.05)
        outcomes = ["sent", "delivered"]
        error = delivery_error(record)
        if error is not None:
            record.error_code = error
            outcomes = ["sent", "undelivered"]
        for status in outcomes:
            record.status = status
            persist()
            if not record.status_callback:
                continue
            params = {"MessageSid": record.sid, "SmsSid": record.sid, "MessageStatus": status,
                      "SmsStatus": status, "AccountSid": config.account_sid, "To": record.to,
                      "From": record.from_, "ApiVersion": "2010-04-01"}
            if status == "undelivered" and record.error_code:
                params["ErrorCode"] = str(record.error_code)
            # Twilio, too, gives up on a callback URL that does not answer.
            with contextlib.suppress(httpx.HTTPError):
                await signed_post(record.status_callback, params)

    def authorised(request: Request, account_sid: str) -> bool:
        return _basic_auth_ok(request, config) and account_sid == config.account_sid

    @app.post("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def create_message(account_sid: str, request: Request):
        if failure.delay_seconds:
            await asyncio.sleep(failure.delay_seconds)
        if not authorised(request, account_sid):
            return _twilio_error(401, 20003, "Authenticate")
        if failure.remaining > 0:
            failure.remaining -= 1
            return _twilio_error(failure.status, 20429 if failure.status == 429 else 20500,
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
        if body and utf16_units(body) > MAX_BODY_UNITS:
            return _twilio_error(400, 21617, "The concatenated message body exceeds the "
                                             "1600 character limit.")
        if to.startswith("whatsapp:") != from_.startswith("whatsapp:"):
            return _twilio_error(400, 63007, "Twilio could not find a Channel with the "
                                             "specified From address")
        if content_sid:
            if content_sid not in content:
                return _twilio_error(400, 21655, "The ContentSid is Invalid")
            body = render_content(content[content_sid], form.get("ContentVariables"))
        record = Record(
            sid=_sid("SM"), direction="outbound-api", to=to, from_=from_, body=body or "",
            status="queued", date_created=_now_rfc2822(), content_sid=content_sid,
            content_variables=form.get("ContentVariables"),
            status_callback=form.get("StatusCallback"), created_epoch=time.time(),
        )
        records.append(record)
        persist()
        if config.auto_status_callbacks and failure.status_callbacks:
            spawn(report_delivery(record))
        if failure.hang_after_create > 0:
            failure.hang_after_create -= 1
            await asyncio.sleep(failure.hang_seconds)
        return JSONResponse(_resource(record, config.account_sid), status_code=201)

    @app.get("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def list_api_messages(account_sid: str, request: Request):
        """Twilio's message list, newest first, filtered the way Ringback asks."""
        if not authorised(request, account_sid):
            return _twilio_error(401, 20003, "Authenticate")
        query = request.query_params
        to, from_ = query.get("To"), query.get("From")
        since = query.get("DateSent>")
        since_epoch = (datetime.fromisoformat(since[:10]).replace(tzinfo=timezone.utc)
                       .timestamp() if since else None)
        page_size = min(int(query.get("PageSize") or 50), 1000)
        page = int(query.get("Page") or 0)
        found = [r for r in reversed(records)
                 if r.direction == "outbound-api"
                 and (to is None or r.to == to) and (from_ is None or r.from_ == from_)
                 and (since_epoch is None or r.created_epoch >= since_epoch)]
        chunk = found[page * page_size:(page + 1) * page_size]
        base = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
        more = (page + 1) * page_size < len(found)
        keep = "&".join(f"{k}={v}" for k, v in query.items() if k not in ("Page", "PageSize"))
        return {
            "messages": [_resource(r, config.account_sid) for r in chunk],
            "page": page, "page_size": page_size, "start": page * page_size,
            "end": page * page_size + len(chunk), "uri": str(request.url.path),
            "first_page_uri": f"{base}?{keep}&PageSize={page_size}&Page=0",
            "next_page_uri": (f"{base}?{keep}&PageSize={page_size}&Page={page + 1}"
                              if more else None),
            "previous_page_uri": None,
        }

    @app.get("/_fake/messages")
    async def list_messages(number: str | None = None, direction: str | None = None):
        """What Twilio saw, oldest first; `number` matches either end, with or without whatsapp:."""
        found = [r for r in records
                 if (number is None or number in (r.to.removeprefix("whatsapp:"),
                                                  r.from_.removeprefix("whatsapp:")))
                 and (direction is None or r.direction == direction)]
        return [_resource(r, config.account_sid) | {"created_epoch": r.created_epoch}
                for r in found]

    @app.post("/_fake/control")
    async def control(settings: Control):
        failure.remaining = settings.fail_next
        failure.status = settings.fail_status
        failure.delay_seconds = settings.delay_seconds
        failure.hang_after_create = settings.hang_after_create
        failure.hang_seconds = settings.hang_seconds
        failure.status_callbacks = settings.status_callbacks
        return {"ok": True}

    @app.post("/_fake/whatsapp-undeliverable")
    async def whatsapp_undeliverable(outcome: WhatsAppOutcome):
        undeliverable_whatsapp[outcome.number] = outcome.error_code
        return {"ok": True}

    @app.post("/_fake/whatsapp-deliverable")
    async def whatsapp_deliverable(outcome: WhatsAppOutcome):
        undeliverable_whatsapp.pop(outcome.number, None)
        return {"ok": True}

    @app.post("/_fake/content")
    async def add_content(template: Content):
        content[template.sid] = template.body
        return {"ok": True}

    @app.post("/_fake/reset")
    async def reset():
        records.clear()
        undeliverable_whatsapp.clear()
        failure.remaining, failure.delay_seconds = 0, 0.0
        failure.hang_after_create, failure.hang_seconds = 0, 0.0
        failure.status_callbacks = True
        persist()
        return {"ok": True}

    @app.post("/_fake/calls")
    async def place_call(call: Call):
        """Ring the clinic the way Twilio Voice would, then report how the Dial ended."""
        call_sid = _sid("CA")
        params = {"CallSid": call_sid, "AccountSid": config.account_sid, "From": call.caller,
                  "To": call.to, "CallStatus": "ringing", "Direction": "inbound",
                  "ApiVersion": "2010-04-01"}
        voice_url = f"{config.gateway_url}/twilio/voice"
        answer = await signed_post(voice_url, params)
        if answer.status_code != 200:
            raise HTTPException(502, f"voice webhook answered {answer.status_code}: {answer.text}")
        dial = _dial(answer.text, base=config.gateway_url)
        result: dict = {"call_sid": call_sid, "twiml": answer.text, "dial_status": None,
                        "dial_twiml": None, "screen_twiml": None, "call_status": None}
        outcome, bridged = call.outcome, call.outcome == "completed"
        if dial is not None and dial["screen_url"] and call.outcome == "completed":
            # The desk picked up: Twilio plays the whisper to them before bridging anyone.
            whisper = await signed_post(dial["screen_url"], {**params, "CallStatus": "in-progress"})
            result["screen_twiml"] = whisper.text
            gather = _gather_action(whisper.text, base=config.gateway_url)
            if gather and call.screen_accepted:
                accepted = await signed_post(gather, {**params, "Digits": "1",
                                                      "CallStatus": "in-progress"})
                bridged = "<Hangup" not in accepted.text
            else:
                bridged = False  # voicemail or nobody pressed 1: the whisper hangs up
        if dial is not None and not call.caller_hangs_up:
            dial_params = {**params, "CallStatus": "in-progress", "DialCallStatus": outcome,
                           "DialCallSid": _sid("CA"),
                           "DialBridged": "true" if bridged else "false"}
            if bridged:
                dial_params["DialCallDuration"] = "42"
            action = await signed_post(dial["action"], dial_params)
            result["dial_status"], result["dial_twiml"] = action.status_code, action.text
        if call.status_callback:
            # Twilio answered the inbound call itself (it ran our TwiML), so the parent call
            # always ends "completed", whatever happened to the Dial.
            final = {**params, "CallStatus": "completed", "CallDuration": "30"}
            status = await signed_post(f"{config.gateway_url}/twilio/voice/call-status", final)
            result["call_status"] = status.status_code
        return result

    @app.post("/_fake/inbound")
    async def inbound(message: Inbound):
        """A phone texts the clinic: Twilio posts the Messaging webhook, signed."""
        whatsapp = message.channel == "whatsapp"
        prefix = "whatsapp:" if whatsapp else ""
        sid = message.message_sid or _sid("SM")
        record = Record(sid=sid, direction="inbound", to=prefix + message.to,
                        from_=prefix + message.from_, body=message.body, status="received",
                        date_created=_now_rfc2822(), num_media=len(message.media_urls),
                        created_epoch=time.time())
        params = {"MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid,
                  "AccountSid": config.account_sid, "From": record.from_, "To": record.to,
                  "Body": message.body, "NumMedia": str(len(message.media_urls)),
                  "NumSegments": str(max(1, -(-utf16_units(message.body) // 153))),
                  "SmsStatus": "received", "ApiVersion": "2010-04-01"}
        for index, url in enumerate(message.media_urls):
            params[f"MediaUrl{index}"] = url
            params[f"MediaContentType{index}"] = "image/jpeg"
        if message.latitude is not None and message.longitude is not None:
            params["Latitude"], params["Longitude"] = str(message.latitude), str(message.longitude)
        if whatsapp:
            params["ProfileName"] = "Simulated patient"
            params["WaId"] = message.from_.lstrip("+")
            if message.latitude is not None:
                params["MessageType"] = "location"
            elif message.media_urls:
                params["MessageType"] = "image"
            else:
                params["MessageType"] = "text"
        if message.message_sid is None or not any(r.sid == sid for r in records):
            records.append(record)
            persist()
        response = await signed_post(
            f"{config.gateway_url}/twilio/messaging/{'whatsapp' if whatsapp else 'sms'}", params)
        return {"sid": sid, "webhook_status": response.status_code}

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
        "date_sent": record.date_created, "date_updated": record.date_created,
        "num_segments": str(max(1, -(-utf16_units(body) // 153))) if body else "1",
        "num_media": str(record.num_media), "error_code": record.error_code,
        "error_message": None, "price": None, "price_unit": "USD",
        "messaging_service_sid": None,
        "content_sid": record.content_sid, "content_variables": record.content_variables,
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{record.sid}.json",
    }


def _absolute(url: str, base: str) -> str:
    if re.match(r"https?://", url):
        return url
    return f"{base.rstrip('/')}/{url.lstrip('/')}"


def _parse(twiml: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(twiml)
    except ElementTree.ParseError as exc:
        raise HTTPException(502, f"voice webhook returned invalid TwiML: {exc}") from exc


def _dial(twiml: str, *, base: str) -> dict | None:
    """The <Dial>'s action URL (absolute) and its <Number url> whisper, if any; None: no Dial."""
    dial = _parse(twiml).find("Dial")
    if dial is None:
        return None
    number = dial.find("Number")
    screen = number.get("url") if number is not None else None
    return {"action": _absolute(dial.get("action", ""), base),
            "timeout": int(dial.get("timeout", "30")),
            "screen_url": _absolute(screen, base) if screen else None}


def _gather_action(twiml: str, *, base: str) -> str | None:
    gather = _parse(twiml).find("Gather")
    if gather is None or not gather.get("action"):
        return None
    return _absolute(gather.get("action"), base)


def _load(state_file: Path | None) -> list[Record]:
    if state_file and state_file.exists():
        known = {f.name for f in fields(Record)}
        return [Record(**{k: v for k, v in row.items() if k in known})
                for row in json.loads(state_file.read_text() or "[]")]
    return []
