"""Rasa input/output channels for Twilio SMS and WhatsApp.

Compared with Rasa's built-in `twilio` channel, each inbound webhook here is signature-checked,
processed once per MessageSid, logged before the dialogue sees it, mapped to its clinic by the
`To` number, answered at once (the dialogue runs after the response, one message at a time per
patient, in the order the webhooks arrived), and kept from driving the bot with "/intent"
syntax. Staff texting the clinic number go to `booking.staff_replies`, never to the dialogue.
Keywords (STOP, START, HELP) are handled before the dialogue, so an opted-out patient gets
nothing from the bot whatever they send. Replies go through the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from booking import consent, staff_replies
from booking.clinics import find_clinic_by_number
from booking.conversations import (
    get_or_create_contact,
    get_or_create_thread,
    record_inbound,
    store_bot_reply,
)
from booking.db import get_engine, session_factory
from booking.models import Channel, Consent, Thread, ThreadState
from booking.outbox import Outbox, enqueue
from booking.phones import to_e164
from booking.settings import get_settings
from booking.twilio_signature import SIGNATURE_HEADER, is_valid, parse_form

logger = logging.getLogger(__name__)

MAX_WEBHOOK_BYTES = 64 * 1024
# Rasa reads "/intent{...}" as a command; a patient must not be able to drive the bot that way.
COMMAND_PREFIX = "/"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
# What the bot says to a photo or a location with no words: it cannot read either.
NO_WORDS_REPLY = ("Thanks, {clinic} received your {what}, but we can only read text here. "
                  "Please tell us in words what you need, or reply YES to book.")


@lru_cache(maxsize=1)
def outbox() -> Outbox:
    """One outbox per Rasa process, built inside its event loop on first use."""
    return Outbox.from_settings(get_settings())


def patient_text(body: str) -> str:
    """What the dialogue reads: the body with any leading command syntax neutralised."""
    return body.strip().lstrip(COMMAND_PREFIX).strip()


@dataclass(frozen=True)
class Inbound:
    sender_id: str
    text: str
    metadata: dict[str, Any]
    reply_ids: tuple[int, ...]  # replies stored by this webhook (keywords, staff), to send now
    for_dialogue: bool


class InOrder:
    """Runs each sender's jobs one after another, in the order they were reserved.

    A webhook reserves its place the moment it arrives, before any await, so two texts from
    one patient reach the dialogue in the order Twilio delivered them even when the second
    one's database work finishes first. Different senders do not wait for each other.
    """

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future] = {}

    def reserve(self, key: str) -> tuple[asyncio.Future | None, asyncio.Future]:
        previous = self._tails.get(key)
        mine = asyncio.get_running_loop().create_future()
        self._tails[key] = mine
        return previous, mine

    async def run(self, key: str, previous: asyncio.Future | None, mine: asyncio.Future,
                  job: Callable[[], Awaitable[None]] | None) -> None:
        try:
            if previous is not None:
                await asyncio.shield(previous)
            if job is not None:
                await job()
        finally:
            mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]


class TwilioInput(InputChannel):
    channel: Channel

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        # Credentials come from the environment (booking.settings), never from credentials.yml.
        return cls()

    def get_output_channel(self) -> OutputChannel:
        return TwilioOutput()

    def blueprint(
        self, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> Blueprint:
        hook = Blueprint(f"{self.name()}_webhook", __name__)
        pending: set[asyncio.Task] = set()
        in_order = InOrder()

        @hook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @hook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            declared = request.headers.get("content-length", "")
            if ((declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES)
                    or len(request.body or b"") > MAX_WEBHOOK_BYTES):
                return response.text("webhook body too large", status=413)
            if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
                return response.text("Twilio webhooks are form-encoded", status=415)
            try:
                params = parse_form(request.body or b"")
            except ValueError:
                return response.text("malformed form body", status=400)
            if not self._signed_by_twilio(request, params):
                return response.text("invalid Twilio signature", status=403)
            missing = [name for name in ("MessageSid", "From", "To") if not params.get(name)]
            if missing:
                return response.text(f"missing field(s): {', '.join(missing)}", status=400)
            key = f"{params['To']}|{params['From']}"
            previous, mine = in_order.reserve(key)
            inbound: Inbound | None = None
            try:
                inbound = await asyncio.to_thread(self._accept, params)
            except LookupError as exc:
                return response.text(str(exc), status=404)
            except ValueError as exc:
                return response.text(str(exc), status=400)
            finally:
                # The dialogue work runs after this answer, queued behind the sender's earlier
                # messages; a refused or repeated webhook still takes (and frees) its place.
                job = None if inbound is None else (
                    lambda inbound=inbound: self._handle(inbound, on_new_message))
                task = asyncio.create_task(in_order.run(key, previous, mine, job))
                pending.add(task)
                task.add_done_callback(pending.discard)
            return response.text(EMPTY_TWIML, content_type="application/xml")

        return hook

    def _signed_by_twilio(self, request: Request, params: dict[str, str]) -> bool:
        settings = get_settings()
        url = settings.rasa_public_url.rstrip("/") + request.path
        if request.query_string:
            url += "?" + request.query_string
        return is_valid(auth_token=settings.twilio_auth_token, url=url, params=params,
                        signature=request.headers.get(SIGNATURE_HEADER))

    def _accept(self, params: dict[str, str]) -> Inbound | None:
        """Store the message once and decide whether the dialogue should see it.

        None when Twilio retried a message we already have.
        """
        to_number = params["To"].removeprefix("whatsapp:")
        body = params.get("Body", "")
        with _session() as session, session.begin():
            clinic = find_clinic_by_number(session, to_number)
            if clinic is None or to_number != self._clinic_number(clinic):
                raise LookupError(f"no clinic receives {self.channel.value} at this number")
            phone = to_e164(params["From"].removeprefix("whatsapp:"),
                            default_region=clinic.country)
            # Staff texting the clinic number ("ACK 12") are not patients: never the dialogue.
            staff_out = staff_replies.handle_staff_message(
                session, clinic=clinic, from_number=phone, body=body, channel=self.channel,
                to_number=params["To"], twilio_sid=params["MessageSid"])
            if staff_out is not None:
                return Inbound(sender_id="", text="", metadata={"clinic": clinic.slug},
                               reply_ids=tuple(m.id for m in staff_out), for_dialogue=False)
            contact = get_or_create_contact(session, clinic=clinic, phone=phone)
            thread = get_or_create_thread(session, clinic=clinic, contact=contact,
                                          channel=self.channel)
            media_count = _int(params.get("NumMedia"))
            message = record_inbound(
                session, clinic=clinic, thread=thread, channel=self.channel,
                from_number=params["From"], to_number=params["To"], body=body,
                twilio_sid=params["MessageSid"], media_count=media_count,
            )
            if message is None:
                return None
            if self.channel == Channel.whatsapp:
                contact.whatsapp_unreachable = False  # they just wrote to us on WhatsApp
            keyword = consent.keyword_in(body)
            replies = []
            if keyword == consent.Keyword.opt_out:
                replies = consent.opt_out(session, clinic=clinic, contact=contact, thread=thread)
            elif keyword == consent.Keyword.opt_in:
                replies = consent.opt_in(session, clinic=clinic, contact=contact, thread=thread)
            elif keyword == consent.Keyword.help:
                replies = consent.help_reply(session, clinic=clinic, contact=contact,
                                             thread=thread)
            text = patient_text(body)
            listening = keyword is None and contact.consent != Consent.opted_out
            if listening and not text:
                replies = self._no_words_reply(session, thread=thread, params=params,
                                               media_count=media_count)
            return Inbound(
                sender_id=thread.sender_id, text=text,
                metadata={"clinic": clinic.slug, "channel": self.channel.value,
                          "message_id": message.id, "media_count": media_count},
                reply_ids=tuple(m.id for m in replies),
                for_dialogue=listening and bool(text),
            )

    def _no_words_reply(self, session, *, thread: Thread, params: dict[str, str],
                        media_count: int) -> list:
        """A photo or a location alone: say we cannot read it (unless staff have the thread)."""
        if thread.state == ThreadState.handed_off:
            return []
        if params.get("Latitude") and params.get("Longitude"):
            what = "location"
        elif media_count:
            what = "photo" if media_count == 1 else "photos"
        else:
            return []  # an empty text: nothing to answer
        return enqueue(session, clinic=thread.clinic, channel=thread.channel,
                       to_number=thread.contact.phone, author="bot", thread=thread,
                       contact=thread.contact,
                       body=NO_WORDS_REPLY.format(clinic=thread.clinic.name, what=what))

    def _clinic_number(self, clinic) -> str | None:
        return clinic.whatsapp_number if self.channel == Channel.whatsapp else clinic.sms_number

    async def _handle(self, inbound: Inbound,
                      on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        try:
            if inbound.reply_ids:
                await outbox().deliver(inbound.reply_ids)
            if inbound.for_dialogue:
                await on_new_message(UserMessage(
                    inbound.text, TwilioOutput(), inbound.sender_id,
                    input_channel=self.name(), metadata=inbound.metadata,
                ))
        except Exception:  # a failure here must not vanish silently inside a task
            logger.exception("handling message %s failed", inbound.metadata.get("message_id"))


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


class TwilioSMSInput(TwilioInput):
    channel = Channel.sms

    @classmethod
    def name(cls) -> str:
        return "twilio_sms"


class TwilioWhatsAppInput(TwilioInput):
    channel = Channel.whatsapp

    @classmethod
    def name(cls) -> str:
        return "twilio_whatsapp"


class TwilioOutput(OutputChannel):
    """Bot replies: stored in the outbox on the thread's current channel, then sent."""

    @classmethod
    def name(cls) -> str:
        return "twilio"

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await send_text(sender_id=recipient_id, text=text)

    async def send_text_with_buttons(self, recipient_id: str, text: str,
                                     buttons: list[dict[str, Any]], **kwargs: Any) -> None:
        options = "\n".join(f"{index}. {button['title']}"
                            for index, button in enumerate(buttons, start=1))
        await send_text(sender_id=recipient_id, text=f"{text}\n{options}")

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        await send_text(sender_id=recipient_id, text=image)


def _session():
    return session_factory(get_engine(get_settings().database_url))()


async def send_text(*, sender_id: str, text: str) -> None:
    def store() -> list[int]:
        with _session() as session, session.begin():
            return [m.id for m in store_bot_reply(session, sender_id=sender_id, text=text)]

    await outbox().deliver(await asyncio.to_thread(store))
