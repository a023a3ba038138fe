"""Alerting staff about an escalation: text (SMS/WhatsApp), email, a Slack-style webhook.

Texts go through the outbox like every other message. Email and webhook alerts are stored as
`EscalationAlert` rows with a delivery state and sent by the gateway's escalation sweeper, so
slow mail servers never hold up the patient's reply or the on-call text. The same sweeper
repeats alerts nobody acknowledged (`Escalation.next_alert_at` is in the database, so a
restart loses none) and sends the first alert of non-urgent escalations that arrived while
the clinic was closed, when it opens.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import httpx
from pydantic import ValidationError
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from booking.clinics.config import EscalationSettings
from booking.escalation.on_call import alert_recipients, realert_recipients
from booking.messaging.outbox import Outbox, enqueue
from booking.models import (
    Channel,
    Clinic,
    Escalation,
    EscalationAlert,
    EscalationReason,
    EscalationStatus,
    StaffMember,
    Thread,
    utcnow,
)
from booking.settings import Settings, get_settings

logger = logging.getLogger(__name__)

LABEL = {EscalationReason.urgent: "URGENT", EscalationReason.human: "Wants a person",
         EscalationReason.not_understood: "Bot could not help",
         EscalationReason.bot_unavailable: "Bot unavailable",
         EscalationReason.billing: "Billing"}

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
# A claimed email/webhook not finished within this lease belongs to a crashed sender.
SENDING_LEASE = timedelta(minutes=2)
MAX_DELIVERY_ATTEMPTS = 8


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escalation_policy(clinic: Clinic) -> dict:
    """The clinic's `settings.escalation`, with the defaults of clinic_config filled in.

    Never raises: a handover must not fail on a settings row written by another version; the
    defaults are safe (alerts by text, the standard wording).
    """
    raw = (clinic.settings or {}).get("escalation") or {}
    try:
        return EscalationSettings.parse_obj(raw).dict()
    except ValidationError as exc:
        logger.error("clinic %s: invalid escalation settings, using defaults: %s", clinic.slug,
                     exc)
        return EscalationSettings().dict()


def ack_timeout(clinic: Clinic, reason: EscalationReason) -> timedelta:
    policy = escalation_policy(clinic)
    minutes = (policy["billing_ack_timeout_minutes"] if reason == EscalationReason.billing
               else policy["ack_timeout_minutes"])
    return timedelta(minutes=minutes)


def thread_link(thread_id: int, settings: Settings | None = None) -> str:
    base = (settings or get_settings()).console_public_url.rstrip("/")
    return f"{base}/console/threads/{thread_id}"


# -- wording ------------------------------------------------------------------------------


def alert_text(*, escalation: Escalation, thread: Thread, repeat: bool = False,
               settings: Settings | None = None, patient_words: bool = True) -> str:
    """The text staff get: who, what they said, what the bot told them, how to take it; without
    `patient_words`, only what kind of caller it is and the link (minimum necessary)."""
    contact = thread.contact
    prefix = f"REPEAT ({escalation.alert_count + 1}), not yet acknowledged: " if repeat else ""
    if not patient_words:
        caller = "a known patient" if contact.is_known_patient else "a new caller"
        return (f"{prefix}{LABEL[escalation.reason]} {thread.clinic.name}: message from "
                f"{caller}; open the console: {thread_link(thread.id, settings)} "
                f"{ack_instruction(escalation)}")
    who = " ".join(filter(None, [contact.first_name, contact.last_name])) or "New caller"
    known = "known patient" if contact.is_known_patient else "not on file"
    recent = [line for line in escalation.transcript if line["author"] == "patient"][-3:]
    said = " / ".join(clip(line["body"], 160) for line in recent)
    return (f"{prefix}{LABEL[escalation.reason]} {thread.clinic.name}: {who} ({contact.phone}, "
            f"{known}). Said: \"{said}\". Bot told them: "
            f"\"{clip(escalation.bot_told_patient, 160)}\". "
            f"{ack_instruction(escalation)} {thread_link(thread.id, settings)}")


def ack_instruction(escalation: Escalation) -> str:
    if escalation.ack_code is None:  # opened before acknowledgement codes existed
        return "Open the console to take it."
    return f"Reply ACK {escalation.ack_code} to take it."


def email_subject(*, escalation: Escalation, clinic: Clinic) -> str:
    # No patient details in a subject line: it shows on lock screens and in mail logs.
    return f"[Ringback] {LABEL[escalation.reason]}: escalation {escalation.id} at {clinic.name}"


def webhook_payload(*, escalation: Escalation, clinic: Clinic, repeat: bool,
                    settings: Settings | None = None) -> dict:
    """Slack-compatible incoming-webhook JSON. A team channel is wider than one phone, so it
    names the escalation and links to the console, without the patient's words or number."""
    again = " (repeat: not yet acknowledged)" if repeat else ""
    local = escalation.opened_at.astimezone(ZoneInfo(clinic.timezone))
    return {"text": (f"{LABEL[escalation.reason]} escalation {escalation.id} at {clinic.name}, "
                     f"opened {local:%H:%M} ({escalation.reason.value}, priority "
                     f"{escalation.priority}){again}. "
                     f"<{thread_link(escalation.thread_id, settings)}|Open the thread in the "
                     "console>")}


# -- queueing -----------------------------------------------------------------------------


def queue_alerts(session: Session, *, escalation: Escalation, thread: Thread,
                 recipients: list[StaffMember], kind: str, instant: datetime,
                 settings: Settings | None = None) -> tuple[int, ...]:
    """Store this round of alerts; returns the outbox message ids to send now.

    Texts go to recipients with a phone on their alert channel. Email goes to recipients
    without a phone, to every recipient when the clinic asks for email alerts, and to the
    clinic's extra addresses, if SMTP is configured. The clinic's webhook gets one post.
    """
    settings = settings or get_settings()
    clinic = thread.clinic
    policy = escalation_policy(clinic)
    repeat = kind == "realert"
    text = alert_text(escalation=escalation, thread=thread, repeat=repeat, settings=settings,
                      patient_words=policy["patient_words_in_texts"])
    message_ids: list[int] = []
    for staff in recipients:
        if not staff.phone:
            continue
        channel = staff.alert_channel or Channel.sms
        if channel == Channel.whatsapp and not clinic.whatsapp_number:
            channel = Channel.sms
        messages = enqueue(session, clinic=clinic, channel=channel, to_number=staff.phone,
                           body=text, author="system")
        session.add(EscalationAlert(escalation_id=escalation.id, staff_id=staff.id, kind=kind,
                                    channel=channel.value, message_id=messages[0].id,
                                    created_at=instant))
        message_ids.extend(m.id for m in messages)

    if settings.smtp_host:
        addresses: dict[str, int | None] = {}
        for staff in recipients:
            if staff.email and (not staff.phone or policy["email_alerts"]):
                addresses.setdefault(staff.email.lower(), staff.id)
        for address in policy["email_to"]:
            addresses.setdefault(address.lower(), None)
        for address, staff_id in addresses.items():
            session.add(EscalationAlert(
                escalation_id=escalation.id, staff_id=staff_id, kind=kind, channel="email",
                recipient=address, delivery_status=PENDING, next_attempt_at=instant,
                created_at=instant))
    if policy["webhook_url"]:
        session.add(EscalationAlert(
            escalation_id=escalation.id, kind=kind, channel="webhook",
            detail="clinic webhook", delivery_status=PENDING, next_attempt_at=instant,
            created_at=instant))
    session.flush()
    return tuple(message_ids)


def schedule_next_alert(escalation: Escalation, *, clinic: Clinic, sent_at: datetime) -> None:
    """After a round of alerts: when to repeat it, unless acknowledged; never past the cap."""
    if escalation.alert_count >= escalation_policy(clinic)["max_alerts"]:
        escalation.next_alert_at = None
    else:
        escalation.next_alert_at = sent_at + ack_timeout(clinic, escalation.reason)


# -- the sweeper --------------------------------------------------------------------------


def send_email(settings: Settings, *, to: str, subject: str, body: str) -> None:
    """One message over SMTP (blocking; run it in a thread)."""
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    tls = ssl.create_default_context()
    if settings.smtp_ssl:  # SMTPS: TLS from the first byte (usually port 465)
        connection = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port,
                                      timeout=settings.smtp_timeout_seconds, context=tls)
    else:
        connection = smtplib.SMTP(settings.smtp_host, settings.smtp_port,
                                  timeout=settings.smtp_timeout_seconds)
    with connection as smtp:
        if settings.smtp_starttls and not settings.smtp_ssl:
            # Raises when the server does not offer STARTTLS: never falls back to plain text.
            smtp.starttls(context=tls)
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password or "")
        smtp.send_message(message)


class DeliveryError(Exception):
    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass
class SweepResult:
    alerted: list[int] = field(default_factory=list)  # escalations given a (re-)alert round
    delivered: int = 0  # email/webhook alerts sent
    failed: int = 0


@dataclass(frozen=True)
class _Delivery:
    alert_id: int
    channel: str
    recipient: str | None
    subject: str
    body: str
    webhook_url: str | None
    payload: dict | None


class EscalationAlerts:
    """Sends due re-alerts (and deferred first alerts) and pending email/webhook alerts."""

    def __init__(self, *, sessions: sessionmaker, outbox: Outbox, settings: Settings,
                 http: httpx.AsyncClient | None = None):
        self._sessions = sessions
        self._outbox = outbox
        self._settings = settings
        self._http = http or httpx.AsyncClient(timeout=10.0)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def run(self, *, interval: float) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the loop must outlive one bad row or a database blip
                logger.exception("escalation sweep failed")
            await asyncio.sleep(interval)

    async def sweep(self, *, now: datetime | None = None) -> SweepResult:
        """One pass; `now` lets a test stand at a later instant instead of waiting."""
        now = now or utcnow()
        result = SweepResult()
        for escalation_id in await asyncio.to_thread(self._due_escalations, now):
            message_ids = await asyncio.to_thread(self._alert_again, escalation_id, now)
            if message_ids is None:
                continue  # acknowledged meanwhile, or another gateway took it
            result.alerted.append(escalation_id)
            await self._outbox.deliver(message_ids)
        for delivery in await asyncio.to_thread(self._claim_deliveries, now):
            if await self._deliver(delivery, now=now):
                result.delivered += 1
            else:
                result.failed += 1
        return result

    def _due_escalations(self, now: datetime) -> list[int]:
        with self._sessions() as session:
            return list(session.execute(
                select(Escalation.id)
                .where(Escalation.status == EscalationStatus.open,
                       Escalation.next_alert_at.is_not(None), Escalation.next_alert_at <= now)
                .order_by(Escalation.priority, Escalation.next_alert_at).limit(50)
            ).scalars())

    def _alert_again(self, escalation_id: int, now: datetime) -> tuple[int, ...] | None:
        with self._sessions() as session, session.begin():
            escalation = session.get(Escalation, escalation_id)
            if (escalation is None or escalation.status != EscalationStatus.open
                    or escalation.next_alert_at is None or escalation.next_alert_at > now):
                return None
            # Compare-and-set on the alert count: of several gateways, one sends this round.
            claimed = session.execute(
                update(Escalation)
                .where(Escalation.id == escalation_id,
                       Escalation.alert_count == escalation.alert_count,
                       Escalation.status == EscalationStatus.open)
                .values(alert_count=Escalation.alert_count + 1)
                .execution_options(synchronize_session=False)
            ).rowcount
            if not claimed:
                return None
            thread, clinic = escalation.thread, escalation.thread.clinic
            first_round = escalation.alert_count == 0  # deferred until the clinic opened
            pick = alert_recipients if first_round else realert_recipients
            recipients = pick(session, clinic=clinic, reason=escalation.reason, instant=now)
            message_ids = queue_alerts(session, escalation=escalation, thread=thread,
                                       recipients=recipients,
                                       kind="alert" if first_round else "realert",
                                       instant=now, settings=self._settings)
            session.refresh(escalation, ["alert_count"])
            schedule_next_alert(escalation, clinic=clinic, sent_at=now)
            logger.info("escalation %s: alert round %s to %s staff", escalation.id,
                        escalation.alert_count, len(recipients))
            return message_ids

    def _claim_deliveries(self, now: datetime) -> list[_Delivery]:
        claimed: list[_Delivery] = []
        with self._sessions() as session, session.begin():
            due = session.execute(
                select(EscalationAlert)
                .where(EscalationAlert.delivery_status.in_([PENDING, SENDING]),
                       or_(EscalationAlert.next_attempt_at.is_(None),
                           EscalationAlert.next_attempt_at <= now))
                .order_by(EscalationAlert.id).limit(50)
            ).scalars().all()
            for alert in due:
                won = session.execute(
                    update(EscalationAlert)
                    .where(EscalationAlert.id == alert.id,
                           EscalationAlert.delivery_status == alert.delivery_status,
                           EscalationAlert.attempts == alert.attempts)
                    .values(delivery_status=SENDING, attempts=EscalationAlert.attempts + 1,
                            next_attempt_at=now + SENDING_LEASE)
                    .execution_options(synchronize_session=False)
                ).rowcount
                if not won:
                    continue
                escalation = session.get(Escalation, alert.escalation_id)
                thread = escalation.thread
                clinic = thread.clinic
                repeat = alert.kind == "realert"
                claimed.append(_Delivery(
                    alert_id=alert.id, channel=alert.channel, recipient=alert.recipient,
                    subject=email_subject(escalation=escalation, clinic=clinic),
                    body=alert_text(escalation=escalation, thread=thread, repeat=repeat,
                                    settings=self._settings,
                                    patient_words=escalation_policy(clinic)[
                                        "patient_words_in_email"]),
                    webhook_url=escalation_policy(clinic)["webhook_url"],
                    payload=webhook_payload(escalation=escalation, clinic=clinic,
                                            repeat=repeat, settings=self._settings),
                ))
        return claimed

    async def _deliver(self, delivery: _Delivery, *, now: datetime) -> bool:
        try:
            if delivery.channel == "email":
                if not self._settings.smtp_host:
                    raise DeliveryError("SMTP_HOST is not set", retryable=False)
                try:
                    await asyncio.to_thread(send_email, self._settings, to=delivery.recipient,
                                            subject=delivery.subject, body=delivery.body)
                except smtplib.SMTPResponseException as exc:
                    raise DeliveryError(f"SMTP {exc.smtp_code}",
                                        retryable=exc.smtp_code >= 400 and exc.smtp_code < 500
                                        ) from exc
                except (OSError, smtplib.SMTPException) as exc:
                    raise DeliveryError(f"SMTP: {type(exc).__name__}", retryable=True) from exc
            elif delivery.channel == "webhook":
                if not delivery.webhook_url:
                    raise DeliveryError("the clinic has no webhook_url", retryable=False)
                try:
                    response = await self._http.post(delivery.webhook_url, json=delivery.payload)
                except httpx.HTTPError as exc:
                    raise DeliveryError(f"webhook: {type(exc).__name__}", retryable=True) from exc
                if response.status_code >= 300:
                    raise DeliveryError(f"webhook answered HTTP {response.status_code}",
                                        retryable=response.status_code == 429
                                        or response.status_code >= 500)
            else:
                raise DeliveryError(f"unknown alert channel {delivery.channel}", retryable=False)
        except DeliveryError as exc:
            await asyncio.to_thread(self._record, delivery.alert_id, error=exc, now=now)
            return False
        await asyncio.to_thread(self._record, delivery.alert_id, error=None, now=now)
        return True

    def _record(self, alert_id: int, *, error: DeliveryError | None, now: datetime) -> None:
        with self._sessions() as session, session.begin():
            alert = session.get(EscalationAlert, alert_id)
            if error is None:
                alert.delivery_status, alert.sent_at, alert.next_attempt_at = SENT, now, None
                return
            alert.detail = str(error)[:500]
            if error.retryable and alert.attempts < MAX_DELIVERY_ATTEMPTS:
                alert.delivery_status = PENDING
                alert.next_attempt_at = now + timedelta(seconds=min(600, 5 * 2 ** alert.attempts))
                logger.warning("%s alert %s not sent (attempt %s), will retry: %s",
                               alert.channel, alert_id, alert.attempts, error)
            else:
                alert.delivery_status, alert.next_attempt_at = FAILED, None
                logger.error("%s alert %s failed for good: %s", alert.channel, alert_id, error)
