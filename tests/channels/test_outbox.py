"""The outbox against the Twilio fake over real HTTP: stored first, retried, in order, once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from booking.messaging.outbox import (
    IN_DOUBT,
    Backoff,
    Outbox,
    apply_status_callback,
    enqueue,
    split_body,
    text_length,
)
from booking.messaging.twilio_rest import TwilioMessagesClient
from booking.models import Channel, Consent, Contact, Message, MessageStatus, Thread, utcnow
from tests.channels.conftest import new_patient
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, free_port

FAST = Backoff(first_delay=0.05, max_delay=0.2, max_attempts=6)


def make_outbox(sessions, url: str, *, timeout: float = 5.0, backoff: Backoff = FAST) -> Outbox:
    client = TwilioMessagesClient(base_url=url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN,
                                  timeout=timeout)
    return Outbox(session_factory=sessions, client=client, status_callback_url=None,
                  backoff=backoff)


def store(sessions, clinic, *bodies: str, to: str | None = None,
          channel: Channel = Channel.sms) -> list[int]:
    to = to or new_patient()
    with sessions() as session, session.begin():
        clinic = session.merge(clinic)
        return [m.id for body in bodies for m in enqueue(
            session, clinic=clinic, channel=channel, to_number=to, body=body, author="bot")]


def rows(sessions, ids: list[int]) -> list[Message]:
    with sessions() as session:
        return [session.get(Message, i) for i in ids]


async def drain(outbox: Outbox, *, until, timeout: float = 10.0) -> None:
    """Run the sweeper's step until `until()` holds (no sleeping on a fixed guess)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not until():
        if loop.time() > deadline:
            raise TimeoutError("outbox did not settle")
        await outbox.deliver_due()
        await asyncio.sleep(0.02)


# -- splitting ---------------------------------------------------------------------------------


def test_split_keeps_parts_within_twilio_limit_counting_emoji_as_two_units():
    body = ("Your appointment details 😀 " * 120).strip()  # > 1600 UTF-16 units
    parts = split_body(body)
    assert len(parts) >= 2
    assert all(text_length(part) <= 1600 for part in parts)
    assert " ".join(parts) == body  # split at spaces, nothing lost
    assert all(not part.startswith(" ") and not part.endswith(" ") for part in parts)


def test_split_breaks_an_unbroken_run_hard_and_leaves_short_text_alone():
    assert split_body("hello") == ["hello"]
    parts = split_body("x" * 3500)
    assert [len(p) for p in parts] == [1600, 1600, 300]
    emoji = split_body("🦷" * 900)  # 1800 units
    assert [text_length(p) for p in emoji] == [1600, 200]


# -- sending -------------------------------------------------------------------------------------


async def test_long_message_arrives_in_order_in_parts(sessions, clinics, fake_twilio):
    patient = new_patient()
    body = " ".join(f"word{i}" for i in range(700))  # about 5,400 characters
    ids = store(sessions, clinics["allday"], body, to=patient)
    outbox = make_outbox(sessions, fake_twilio.url)
    try:
        await outbox.deliver(ids)
    finally:
        await outbox.aclose()
    received = fake_twilio.outbound(patient)
    assert len(received) == len(ids) == 4
    assert " ".join(m["body"] for m in received) == body
    assert all(r.status == MessageStatus.queued and r.twilio_sid for r in rows(sessions, ids))


@pytest.mark.parametrize("status", [503, 500, 429])
async def test_retryable_errors_are_retried_with_backoff_and_arrive_once(
        sessions, clinics, fake_twilio, status):
    patient = new_patient()
    ids = store(sessions, clinics["allday"], "Sorry we missed your call", to=patient)
    fake_twilio.phone.control(fail_next=2, fail_status=status)
    outbox = make_outbox(sessions, fake_twilio.url)
    try:
        await outbox.deliver(ids)
        (row,) = rows(sessions, ids)
        assert row.status == MessageStatus.pending and row.next_attempt_at > row.created_at
        await drain(outbox, until=lambda: rows(sessions, ids)[0].status == MessageStatus.queued)
    finally:
        fake_twilio.phone.control()
        await outbox.aclose()
    assert len(fake_twilio.outbound(patient)) == 1
    assert rows(sessions, ids)[0].attempts == 3


async def test_a_refused_message_fails_for_good_without_retrying(sessions, clinics,
                                                                 fake_twilio):
    with sessions() as session, session.begin():
        clinic = session.merge(clinics["allday"])
        (message,) = enqueue(session, clinic=clinic, channel=Channel.whatsapp,
                             to_number=new_patient(), body="x", author="bot",
                             content_sid="HXnot-a-template", content_variables={"1": "x"})
        ids = [message.id]
    outbox = make_outbox(sessions, fake_twilio.url)
    try:
        await outbox.deliver(ids)
        assert await outbox.deliver_due() == 0
    finally:
        await outbox.aclose()
    (row,) = rows(sessions, ids)
    assert (row.status, row.error_code, row.attempts) == (MessageStatus.failed, "21655", 1)


async def test_twilio_unreachable_leaves_the_message_pending_and_certainly_unsent(
        sessions, clinics):
    ids = store(sessions, clinics["allday"], "hello")
    outbox = make_outbox(sessions, f"http://127.0.0.1:{free_port()}")  # nobody listens
    try:
        await outbox.deliver(ids)
    finally:
        await outbox.aclose()
    (row,) = rows(sessions, ids)
    assert row.status == MessageStatus.pending
    assert row.error_code is None  # not in doubt: the request never left
    assert row.next_attempt_at is not None


async def test_a_timeout_after_twilio_took_the_message_does_not_send_it_twice(
        sessions, clinics, fake_twilio):
    patient = new_patient()
    ids = store(sessions, clinics["allday"], "Sorry we missed your call", to=patient)
    # Twilio stores the message, then the answer never comes back within our timeout.
    fake_twilio.phone.control(hang_after_create=1, hang_seconds=1.5)
    outbox = make_outbox(sessions, fake_twilio.url, timeout=0.4)
    try:
        await outbox.deliver(ids)
        (row,) = rows(sessions, ids)
        assert (row.status, row.error_code) == (MessageStatus.pending, IN_DOUBT)
        await drain(outbox, until=lambda: rows(sessions, ids)[0].status == MessageStatus.queued)
    finally:
        fake_twilio.phone.control()
        await outbox.aclose()
    received = fake_twilio.outbound(patient)
    assert len(received) == 1
    (row,) = rows(sessions, ids)
    assert row.twilio_sid == received[0]["sid"] and row.error_code is None


async def test_a_timeout_before_twilio_took_it_is_sent_again(sessions, clinics, fake_twilio):
    patient = new_patient()
    ids = store(sessions, clinics["allday"], "hello", to=patient)
    fake_twilio.phone.control(delay_seconds=0.6)  # slower than our timeout
    outbox = make_outbox(sessions, fake_twilio.url, timeout=0.2)
    try:
        await outbox.deliver(ids)
        fake_twilio.phone.control()
        await drain(outbox, until=lambda: rows(sessions, ids)[0].status == MessageStatus.queued)
    finally:
        fake_twilio.phone.control()
        await outbox.aclose()
    # We had hung up before the fake read the slow request, so it never took it: the settle
    # step found nothing there, and the second attempt's message is the only one.
    assert len(fake_twilio.outbound(patient)) == 1
    assert rows(sessions, ids)[0].attempts == 2


async def test_messages_to_one_recipient_keep_their_order_across_a_retry(
        sessions, clinics, fake_twilio):
    patient = new_patient()
    ids = store(sessions, clinics["allday"], "first", "second", "third", to=patient)
    fake_twilio.phone.control(fail_next=1)
    outbox = make_outbox(sessions, fake_twilio.url)
    try:
        await outbox.deliver(ids)  # "first" fails; the others must wait for it
        assert fake_twilio.outbound(patient) == []
        await drain(outbox, until=lambda: all(
            r.status == MessageStatus.queued for r in rows(sessions, ids)))
    finally:
        fake_twilio.phone.control()
        await outbox.aclose()
    assert [m["body"] for m in fake_twilio.outbound(patient)] == ["first", "second", "third"]


async def test_two_senders_racing_send_each_message_once(sessions, clinics, fake_twilio):
    patients = [new_patient() for _ in range(8)]
    ids = [i for p in patients for i in store(sessions, clinics["allday"], "a", "b", to=p)]
    first, second = make_outbox(sessions, fake_twilio.url), make_outbox(sessions,
                                                                         fake_twilio.url)
    try:
        for _ in range(3):
            await asyncio.gather(first.deliver_due(), second.deliver_due(),
                                 first.deliver(ids), second.deliver(reversed(ids)))
    finally:
        await first.aclose()
        await second.aclose()
    for patient in patients:
        assert [m["body"] for m in fake_twilio.outbound(patient)] == ["a", "b"]


async def test_opted_out_contacts_get_nothing_stored_for_sending(sessions, clinics):
    with sessions() as session, session.begin():
        clinic = session.merge(clinics["allday"])
        contact = Contact(clinic_id=clinic.id, phone=new_patient(), consent=Consent.opted_out)
        session.add(contact)
        session.flush()
        (message,) = enqueue(session, clinic=clinic, channel=Channel.sms,
                             to_number=contact.phone, body="hi", author="bot", contact=contact)
        assert (message.status, message.next_attempt_at) == (MessageStatus.suppressed, None)


# -- delivery reports --------------------------------------------------------------------------


def _sent_whatsapp(sessions, clinic, patient: str) -> tuple[int, int]:
    with sessions() as session, session.begin():
        clinic = session.merge(clinic)
        contact = Contact(clinic_id=clinic.id, phone=patient)
        session.add(contact)
        session.flush()
        thread = Thread(clinic_id=clinic.id, contact_id=contact.id, sender_id=f"t:{patient}",
                        channel=Channel.whatsapp)
        session.add(thread)
        session.flush()
        (message,) = enqueue(session, clinic=clinic, channel=Channel.whatsapp,
                             to_number=patient, body="Sorry we missed you", author="bot",
                             thread=thread, contact=contact)
        message.status, message.twilio_sid = MessageStatus.queued, f"SM{patient[1:]}"
        return message.id, thread.id


def test_undeliverable_whatsapp_is_resent_by_sms_once(sessions, clinics):
    patient = new_patient()
    message_id, thread_id = _sent_whatsapp(sessions, clinics["allday"], patient)
    for status in ("sent", "undelivered", "undelivered", "failed"):  # Twilio may repeat
        with sessions() as session, session.begin():
            apply_status_callback(session, message_sid=f"SM{patient[1:]}", status=status,
                                  error_code="63016" if status != "sent" else None)
    with sessions() as session:
        copies = session.execute(select(Message).where(Message.to_number == patient)).scalars()
        assert [(m.channel, m.body, m.status) for m in copies] == [
            (Channel.sms, "Sorry we missed you", MessageStatus.pending)]
        assert session.get(Message, message_id).status == MessageStatus.undelivered
        assert session.get(Thread, thread_id).channel == Channel.sms
        contact = session.execute(select(Contact).where(Contact.phone == patient)).scalar_one()
        assert contact.whatsapp_unreachable


def test_status_reports_never_move_backwards_and_find_rows_before_the_sid(sessions, clinics):
    patient = new_patient()
    (message_id,) = store(sessions, clinics["allday"], "hello", to=patient)
    with sessions() as session, session.begin():
        session.get(Message, message_id).status = MessageStatus.sending  # answer not back yet
    with sessions() as session, session.begin():
        # The report overtook the API's answer: found by our id in the callback URL.
        assert apply_status_callback(session, message_sid="SMearly", status="delivered",
                                     error_code=None, message_id=message_id) is not None
    with sessions() as session, session.begin():
        apply_status_callback(session, message_sid="SMearly", status="sent", error_code=None)
    with sessions() as session:
        row = session.get(Message, message_id)
        assert (row.twilio_sid, row.status) == ("SMearly", MessageStatus.delivered)


def test_a_report_for_someone_elses_message_id_does_not_hijack_it(sessions, clinics):
    (message_id,) = store(sessions, clinics["allday"], "hello")
    with sessions() as session, session.begin():
        session.get(Message, message_id).twilio_sid = "SMours"
    with sessions() as session, session.begin():
        assert apply_status_callback(session, message_sid="SMother", status="failed",
                                     error_code="30003", message_id=message_id) is None
    with sessions() as session:
        assert session.get(Message, message_id).status == MessageStatus.pending


def test_twilio_stop_list_refusal_marks_the_contact_opted_out(sessions, clinics):
    patient = new_patient()
    with sessions() as session, session.begin():
        clinic = session.merge(clinics["allday"])
        contact = Contact(clinic_id=clinic.id, phone=patient)
        session.add(contact)
        session.flush()
        (message,) = enqueue(session, clinic=clinic, channel=Channel.sms, to_number=patient,
                             body="hi", author="bot", contact=contact)
        message.twilio_sid = "SMstop"
    with sessions() as session, session.begin():
        apply_status_callback(session, message_sid="SMstop", status="failed",
                              error_code="21610")
    with sessions() as session:
        contact = session.execute(select(Contact).where(Contact.phone == patient)).scalar_one()
        assert contact.consent == Consent.opted_out
        assert contact.consent_changed_at <= utcnow()


def test_backoff_grows_exponentially_with_jitter_up_to_the_ceiling():
    backoff = Backoff(first_delay=2.0, max_delay=300.0)
    assert 1.0 <= backoff.delay(1) <= 2.0
    assert 4.0 <= backoff.delay(3) <= 8.0
    assert 150.0 <= backoff.delay(30) <= 300.0


def test_backoff_comes_from_settings():
    from booking.settings import Settings

    backoff = Backoff.from_settings(Settings(outbox_first_retry_seconds=0.25,
                                             outbox_max_attempts=4))
    assert (backoff.first_delay, backoff.max_attempts) == (0.25, 4)

