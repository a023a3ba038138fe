"""Rasa input/output channels for Twilio SMS and WhatsApp.

Compared with Rasa's built-in `twilio` channel, each inbound webhook here is signature-checked,
processed once per MessageSid, logged before the dialogue sees it, mapped to its clinic by the
`To` number, answered at once (the dialogue runs after the response), and kept from driving the
bot with "/intent" syntax. Keywords (STOP, START, HELP) are handled before the dialogue, so an
opted-out patient gets nothing from the bot whatever they send. Replies go through the outbox.
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
from booking.models import Channel, Consent
from booking.outbox import Outbox
from booking.phones import to_e164
from booking.settings import get_settings
from booking.twilio_signature import SIGNATURE_HEADER, is_valid

logger = logging.getLogger(__name__)

MAX_WEBHOOK_BYTES = 64 * 1024
# Rasa reads "/intent{...}" as a command; a patient must not be able to drive the bot that way.
COMMAND_PREFIX = "/"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@lru_cache(maxsize=1)
def outbox() -> Outbox:
    """One outbox per Rasa process, built inside its event loop on first use."""
    return Outbox.from_settings(get_settings())


def patient_text(body: str, *, media_count: int, has_location: bool) -> str:
    """What the dialogue reads: the body without command syntax, or a marker for media."""
    text = body.strip().lstrip(COMMAND_PREFIX).strip()
    if text:
        return text
    if has_location:
        return "[location]"
    if media_count:
        return "[photo]"
    return ""


@dataclass(frozen=True)
class Inbound:
    sender_id: str
    text: str
    metadata: dict[str, Any]
    reply_ids: tuple[int, ...]  # keyword replies stored by this webhook, to send now
    for_dialogue: bool


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

        @hook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @hook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if len(request.body or b"") > MAX_WEBHOOK_BYTES:
                return response.text("webhook body too large", status=413)
            if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
                return response.text("Twilio webhooks are form-encoded", status=415)
            params = {key: values[0] for key, values in request.form.items()}
            if not self._signed_by_twilio(request, params):
                return response.text("invalid Twilio signature", status=403)
            missing = [name for name in ("MessageSid", "From", "To") if not params.get(name)]
            if missing:
                return response.text(f"missing field(s): {', '.join(missing)}", status=400)
            try:
                inbound = await asyncio.to_thread(self._accept, params)
            except LookupError as exc:
                return response.text(str(exc), status=404)
            except ValueError as exc:
                return response.text(str(exc), status=400)
            if inbound is None:  # Twilio retried a message we already have
                return response.text(EMPTY_TWIML, content_type="application/xml")
            task = asyncio.create_task(self._handle(inbound, on_new_message))
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
        """Store the message once and decide whether the dialogue should see it."""
        to_number = params["To"].removeprefix("whatsapp:")
        with _session() as session, session.begin():
            clinic = find_clinic_by_number(session, to_number)
            if clinic is None or to_number != self._clinic_number(clinic):
                raise LookupError(f"no clinic receives {self.channel.value} at this number")
            phone = to_e164(params["From"].removeprefix("whatsapp:"),
                            default_region=clinic.country)
            # Staff texting the clinic number ("ACK 12") are not patients: never the dialogue.
            staff_replies_out = staff_replies.handle_staff_message(
                session, clinic=clinic, from_number=phone, body=params.get("Body", ""),
                channel=self.channel, to_number=params["To"], twilio_sid=params["MessageSid"])
            if staff_replies_out is not None:
                return Inbound(sender_id="", text="", metadata={"clinic": clinic.slug},
                               reply_ids=tuple(m.id for m in staff_replies_out),
                               for_dialogue=False)
            contact = get_or_create_contact(session, clinic=clinic, phone=phone)
            thread = get_or_create_thread(session, clinic=clinic, contact=contact,
                                          channel=self.channel)
            media_count = int(params.get("NumMedia") or 0)
            message = record_inbound(
                session, clinic=clinic, thread=thread, channel=self.channel,
                from_number=params["From"], to_number=params["To"],
                body=params.get("Body", ""), twilio_sid=params["MessageSid"],
                media_count=media_count,
            )
            if message is None:
                return None
            keyword = consent.keyword_in(params.get("Body", ""))
            replies = []
            if keyword == consent.Keyword.opt_out:
                replies = consent.opt_out(session, clinic=clinic, contact=contact, thread=thread)
            elif keyword == consent.Keyword.opt_in:
                replies = consent.opt_in(session, clinic=clinic, contact=contact, thread=thread)
            elif keyword == consent.Keyword.help:
                replies = consent.help_reply(session, clinic=clinic, contact=contact,
                                             thread=thread)
            has_location = bool(params.get("Latitude") and params.get("Longitude"))
            return Inbound(
                sender_id=thread.sender_id,
                text=patient_text(params.get("Body", ""), media_count=media_count,
                                  has_location=has_location),
                metadata={"clinic": clinic.slug, "channel": self.channel.value,
                          "message_id": message.id, "media_count": media_count},
                reply_ids=tuple(m.id for m in replies),
                for_dialogue=keyword is None and contact.consent != Consent.opted_out,
            )

    def _clinic_number(self, clinic) -> str | None:
        return clinic.whatsapp_number if self.channel == Channel.whatsapp else clinic.sms_number

    async def _handle(self, inbound: Inbound,
                      on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        try:
            if inbound.reply_ids:
                await outbox().deliver(inbound.reply_ids)
            if inbound.for_dialogue and inbound.text:
                await on_new_message(UserMessage(
                    inbound.text, TwilioOutput(), inbound.sender_id,
                    input_channel=self.name(), metadata=inbound.metadata,
                ))
        except Exception:  # a failure here must not vanish silently inside a task
            logger.exception("handling message %s failed", inbound.metadata.get("message_id"))


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
