"""Re-alerts, deferred alerts, email and webhook alerts: the gateway sweeper's function run
against the database at chosen instants, with real local servers for Twilio, SMTP and the hook."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from booking.db import make_engine, session_factory
from booking.escalation.escalations import acknowledge, hand_over
from booking.escalation.staff_alerts import EscalationAlerts
from booking.messaging.outbox import Outbox
from booking.models import (
    Escalation,
    EscalationAlert,
    EscalationReason,
    StaffMember,
)
from booking.settings import Settings
from tests.escalation.conftest import CONSOLE_URL, RIVERSIDE_CLOSED, RIVERSIDE_OPEN, start_thread

DR_PATEL, DR_HUGHES = "+447700900111", "+447700900222"


async def _escalate(sessions, settings, outbox, *, clinic_id, phone, said,
                    reason=EscalationReason.urgent, at=RIVERSIDE_OPEN) -> int:
    """What action_escalate does: hand over, then send the first alerts at once."""
    with sessions() as session, session.begin():
        thread = start_thread(session, clinic_id=clinic_id, phone=phone, said=[said], at=at)
        handover = hand_over(session, thread=thread, reason=reason, intent=reason.value,
                             red_flag=None, last_message=said, instant=at, settings=settings)
    await outbox.deliver(handover.alert_message_ids)
    return handover.escalation_id


def _ack_code(sessions, escalation_id: int) -> str:
    with sessions() as session:
        return session.get(Escalation, escalation_id).ack_code


def _alerts(sessions, escalation_id):
    with sessions() as session:
        return [(a.kind, a.channel, a.recipient, a.delivery_status)
                for a in session.execute(select(EscalationAlert).where(
                    EscalationAlert.escalation_id == escalation_id)
                    .order_by(EscalationAlert.id)).scalars()]


async def test_unacknowledged_alert_is_repeated_to_on_call_and_backup(
        sessions, clinics, settings, outbox, phones):
    escalation_id = await _escalate(sessions, settings, outbox, clinic_id=clinics["riverside"],
                              phone="+447700900411", said="my lip has gone white after filler")
    sweeper = EscalationAlerts(sessions=sessions, outbox=outbox, settings=settings)

    early = await sweeper.sweep(now=RIVERSIDE_OPEN + timedelta(minutes=9))
    assert early.alerted == []
    due = await sweeper.sweep(now=RIVERSIDE_OPEN + timedelta(minutes=10))
    assert due.alerted == [escalation_id]

    first_alert, repeat_to_patel = phones.sent_to(DR_PATEL)
    (repeat_to_hughes,) = phones.sent_to(DR_HUGHES)
    assert first_alert["body"].startswith("URGENT Riverside")
    for message in (repeat_to_patel, repeat_to_hughes):
        assert message["body"].startswith("REPEAT (2), not yet acknowledged: URGENT")
        assert f"Reply ACK {_ack_code(sessions, escalation_id)} to take it." in message["body"]
        assert f"{CONSOLE_URL}/console/threads/" in message["body"]
    assert _alerts(sessions, escalation_id) == [("alert", "sms", None, None),
                                                ("realert", "sms", None, None),
                                                ("realert", "sms", None, None)]
    with sessions() as session:
        escalation = session.get(Escalation, escalation_id)
        assert escalation.alert_count == 2
        assert escalation.next_alert_at == RIVERSIDE_OPEN + timedelta(minutes=20)

    # Acknowledged: nothing more, however late it gets.
    with sessions() as session, session.begin():
        escalation = session.get(Escalation, escalation_id)
        hughes = session.execute(select(StaffMember).where(
            StaffMember.phone == DR_HUGHES)).scalar_one()
        acknowledge(session, escalation=escalation, staff=hughes, channel="sms",
                    instant=RIVERSIDE_OPEN + timedelta(minutes=12))
    late = await sweeper.sweep(now=RIVERSIDE_OPEN + timedelta(hours=5))
    assert late.alerted == []
    assert len(phones.sent_to(DR_PATEL)) == 2
    await sweeper.aclose()
    await outbox.aclose()


async def test_pending_realert_survives_a_restart(sessions, clinics, settings, outbox, phones,
                                                  database_url):
    escalation_id = await _escalate(sessions, settings, outbox, clinic_id=clinics["riverside"],
                              phone="+447700900412", said="I cant stop the bleeding")

    # A new process: new engine, new sweeper; only the database remembers the escalation.
    await outbox.aclose()
    engine = make_engine(database_url)
    outbox = Outbox.from_settings(settings)
    sweeper = EscalationAlerts(sessions=session_factory(engine), outbox=outbox,
                               settings=settings)
    result = await sweeper.sweep(now=RIVERSIDE_OPEN + timedelta(minutes=11))
    assert result.alerted == [escalation_id]
    assert len(phones.sent_to(DR_HUGHES)) == 1
    await sweeper.aclose()
    await outbox.aclose()
    engine.dispose()


async def test_alerts_stop_at_the_clinics_cap(sessions, load_example, settings, outbox, phones):
    clinics = load_example(riverside={"max_alerts": 3, "ack_timeout_minutes": 5})
    escalation_id = await _escalate(sessions, settings, outbox, clinic_id=clinics["riverside"],
                              phone="+447700900413", said="severe swelling after filler")
    sweeper = EscalationAlerts(sessions=sessions, outbox=outbox, settings=settings)
    rounds = []
    for minutes in (5, 10, 15, 20, 25):
        rounds.append((await sweeper.sweep(now=RIVERSIDE_OPEN + timedelta(minutes=minutes)))
                      .alerted)
    assert rounds == [[escalation_id], [escalation_id], [], [], []]
    with sessions() as session:
        escalation = session.get(Escalation, escalation_id)
        assert escalation.alert_count == 3
        assert escalation.next_alert_at is None
    assert len(phones.sent_to(DR_PATEL)) == 3  # the first alert and two repeats
    await sweeper.aclose()
    await outbox.aclose()


async def test_two_gateways_sweeping_at_once_send_one_round(sessions, clinics, settings,
                                                            outbox, phones):
    escalation_id = await _escalate(sessions, settings, outbox, clinic_id=clinics["riverside"],
                              phone="+447700900414", said="my tooth was knocked out")
    first = EscalationAlerts(sessions=sessions, outbox=outbox, settings=settings)
    second = EscalationAlerts(sessions=sessions, outbox=outbox, settings=settings)
    now = RIVERSIDE_OPEN + timedelta(minutes=10)
    results = await asyncio.gather(first.sweep(now=now), second.sweep(now=now))
    assert sorted(len(r.alerted) for r in results) == [0, 1]
    assert len(phones.sent_to(DR_HUGHES)) == 1
    with sessions() as session:
        assert session.get(Escalation, escalation_id).alert_count == 2
    for sweeper in (first, second):
        await sweeper.aclose()
    await outbox.aclose()


async def test_deferred_alert_goes_out_when_the_clinic_opens(sessions, clinics, settings,
                                                             outbox, phones):
    escalation_id = await _escalate(sessions, settings, outbox, clinic_id=clinics["riverside"],
                              phone="+447700900415", said="can someone call me back",
                              reason=EscalationReason.human, at=RIVERSIDE_CLOSED)
    assert phones.sent_to(DR_PATEL) == []
    sweeper = EscalationAlerts(sessions=sessions, outbox=outbox, settings=settings)
    with sessions() as session:
        opens = session.get(Escalation, escalation_id).next_alert_at
    assert (await sweeper.sweep(now=opens - timedelta(minutes=1))).alerted == []
    assert (await sweeper.sweep(now=opens)).alerted == [escalation_id]
    (alert,) = phones.sent_to(DR_PATEL)
    assert alert["body"].startswith("Wants a person Riverside Dental & Aesthetics")
    assert _alerts(sessions, escalation_id) == [("alert", "sms", None, None)]
    await sweeper.aclose()
    await outbox.aclose()


async def test_email_and_webhook_alerts(sessions, load_example, settings, outbox, phones,
                                        smtp_server, webhook_receiver):
    port, mailbox = smtp_server
    settings = settings.copy(update={"smtp_host": "127.0.0.1", "smtp_port": port,
                                     "smtp_starttls": False,
                                     "smtp_from": "Ringback <alerts@ringback.example>"})
    clinics = load_example(riverside={"email_alerts": True,
                                      "email_to": ["duty-inbox@riverside.example"],
                                      "webhook_url": webhook_receiver.url})
    webhook_receiver.fail_next = 1  # the first post fails; the sweeper retries it
    escalation_id = await _escalate(sessions, settings, outbox, clinic_id=clinics["riverside"],
                              phone="+447700900416", said="my lip is white and cold after filler")
    assert _alerts(sessions, escalation_id) == [
        ("alert", "sms", None, None),
        ("alert", "email", "amara.patel@riverside.example", "pending"),
        ("alert", "email", "duty-inbox@riverside.example", "pending"),
        ("alert", "webhook", None, "pending"),
    ]
    sweeper = EscalationAlerts(sessions=sessions, outbox=outbox, settings=settings)
    first = await sweeper.sweep(now=RIVERSIDE_OPEN)
    assert (first.delivered, first.failed) == (2, 1)
    assert webhook_receiver.posts == []
    # The failed post is retried after a backoff, not at once.
    assert (await sweeper.sweep(now=RIVERSIDE_OPEN)).delivered == 0
    retry = await sweeper.sweep(now=RIVERSIDE_OPEN + timedelta(minutes=1))
    assert retry.delivered == 1

    assert sorted(envelope.rcpt_tos[0] for envelope in mailbox.messages) == [
        "amara.patel@riverside.example", "duty-inbox@riverside.example"]
    email = message_from_bytes(mailbox.messages[0].content, policy=policy.default)
    assert email["Subject"] == (f"[Ringback] URGENT: escalation {escalation_id} at Riverside "
                                "Dental & Aesthetics")
    assert "+447700900416" not in email["Subject"]
    body = email.get_content()
    assert f"ACK {_ack_code(sessions, escalation_id)}" in body
    assert f"{CONSOLE_URL}/console/threads/" in body
    # Minimum necessary by default in email: no words, no number, no name.
    assert "message from a new caller; open the console" in body
    assert "filler" not in body and "+447700900416" not in body

    (post,) = webhook_receiver.posts
    assert post["content_type"] == "application/json"
    text = post["json"]["text"]
    assert f"URGENT escalation {escalation_id} at Riverside Dental & Aesthetics" in text
    assert f"<{CONSOLE_URL}/console/threads/" in text
    # A team channel gets no health details: not the patient's words, not their number.
    assert "filler" not in text and "+447700900416" not in text

    states = [a[3] for a in _alerts(sessions, escalation_id)]
    assert states == [None, "sent", "sent", "sent"]
    with sessions() as session:
        webhook_row = session.execute(select(EscalationAlert).where(
            EscalationAlert.channel == "webhook")).scalar_one()
        assert webhook_row.attempts == 2
        assert "secret" not in (webhook_row.recipient or "") + webhook_row.detail
    await sweeper.aclose()
    await outbox.aclose()


async def test_billing_contact_without_a_phone_is_emailed(sessions, load_example, settings,
                                                          outbox, phones, smtp_server):
    port, mailbox = smtp_server
    settings = settings.copy(update={"smtp_host": "127.0.0.1", "smtp_port": port,
                                     "smtp_starttls": False})
    clinics = load_example()
    with sessions() as session, session.begin():
        priya = session.execute(select(StaffMember).where(
            StaffMember.clinic_id == clinics["riverside"],
            StaffMember.slug == "priya-shah")).scalar_one()
        priya.phone = None  # the billing contact is a shared accounts inbox
    escalation_id = await _escalate(sessions, settings, outbox, clinic_id=clinics["riverside"],
                              phone="+447700900417", said="why was I charged twice",
                              reason=EscalationReason.billing)
    sweeper = EscalationAlerts(sessions=sessions, outbox=outbox, settings=settings)
    assert (await sweeper.sweep(now=RIVERSIDE_OPEN)).delivered == 1
    assert [e.rcpt_tos for e in mailbox.messages] == [["accounts@riverside.example"]]
    assert _alerts(sessions, escalation_id) == [
        ("alert", "email", "accounts@riverside.example", "sent")]
    await sweeper.aclose()
    await outbox.aclose()


async def test_a_clinic_chooses_what_alerts_quote(sessions, load_example, settings, outbox,
                                                  phones, smtp_server):
    """Texts without the patient's words, email with them: each is the clinic's choice."""
    port, mailbox = smtp_server
    settings = settings.copy(update={"smtp_host": "127.0.0.1", "smtp_port": port,
                                     "smtp_starttls": False})
    clinics = load_example(riverside={"email_alerts": True, "patient_words_in_texts": False,
                                      "patient_words_in_email": True})
    escalation_id = await _escalate(sessions, settings, outbox, clinic_id=clinics["riverside"],
                                    phone="+447700900418", said="my cheek went white and numb")
    (text,) = phones.wait_for(DR_PATEL, count=1)
    assert text["body"] == (
        "URGENT Riverside Dental & Aesthetics: message from a new caller; open the console: "
        f"{CONSOLE_URL}/console/threads/{_thread_id(sessions, escalation_id)} "
        f"Reply ACK {_ack_code(sessions, escalation_id)} to take it.")
    sweeper = EscalationAlerts(sessions=sessions, outbox=outbox, settings=settings)
    assert (await sweeper.sweep(now=RIVERSIDE_OPEN)).delivered == 1
    body = message_from_bytes(mailbox.messages[0].content, policy=policy.default).get_content()
    assert "my cheek went white and numb" in body and "+447700900418" in body
    await sweeper.aclose()
    await outbox.aclose()


async def test_starttls_is_never_skipped_when_the_server_does_not_offer_it(
        sessions, load_example, settings, outbox, phones, smtp_server):
    port, mailbox = smtp_server  # a plain server: no STARTTLS on offer
    settings = settings.copy(update={"smtp_host": "127.0.0.1", "smtp_port": port,
                                     "smtp_starttls": True})
    clinics = load_example(riverside={"email_to": ["duty-inbox@riverside.example"]})
    escalation_id = await _escalate(sessions, settings, outbox, clinic_id=clinics["riverside"],
                                    phone="+447700900419", said="my lip is white after filler")
    sweeper = EscalationAlerts(sessions=sessions, outbox=outbox, settings=settings)
    assert (await sweeper.sweep(now=RIVERSIDE_OPEN)).failed == 1
    assert mailbox.messages == []
    assert ("alert", "email", "duty-inbox@riverside.example", "pending") in _alerts(
        sessions, escalation_id)
    await sweeper.aclose()
    await outbox.aclose()


def _thread_id(sessions, escalation_id: int) -> int:
    with sessions() as session:
        return session.get(Escalation, escalation_id).thread_id


def test_production_refuses_smtp_without_tls():
    secret = "s" * 40
    production = {"environment": "production", "twilio_auth_token": secret,
                  "missed_call_hmac_secret": secret, "session_secret": secret,
                  "rasa_token": secret, "action_server_token": secret,
                  "database_url": "postgresql+psycopg2://ringback@db.internal/ringback",
                  "gateway_public_url": "https://ringback.example",
                  "console_public_url": "https://ringback.example",
                  "smtp_host": "mail.example",
                  "field_encryption_keys": "k1:" + "f" * 43 + "="}
    with pytest.raises(ValidationError, match="SMTP_STARTTLS or SMTP_SSL must be on"):
        Settings(**production, smtp_starttls=False)
    assert Settings(**production, smtp_starttls=False, smtp_ssl=True).smtp_ssl
    assert Settings(**production).smtp_starttls  # the default: STARTTLS
