"""The inbound pieces on their own: command neutralising, form parsing and signatures, the
staff seam, and logs that never carry what patients wrote."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from booking.calls.recovery import record_missed_call
from booking.escalation.staff_replies import handle_staff_message
from booking.messaging import consent
from booking.messaging.conversations import (
    get_or_create_contact,
    get_or_create_thread,
    record_inbound,
)
from booking.messaging.inbox import patient_text, storable
from booking.messaging.outbox import apply_status_callback, enqueue
from booking.messaging.twilio_signature import is_valid, parse_form, sign
from booking.models import Channel, Contact, Message, MessageStatus
from tests.channels.conftest import STAFF_PHONE, new_patient
from tests.channels.test_outbox import drain, make_outbox, rows
from tests.stack import AUTH_TOKEN


@pytest.mark.parametrize(("body", "text"), [
    ("/urgent", "urgent"), ('/book{"service":"x"}', 'book{"service":"x"}'),
    ("  // affirm ", "affirm"), ("yes /please", "yes /please"), ("", ""), ("😀", "😀"),
    ("/ /deny@0.5", "deny@0.5"), ('/ /ask_price{"service":"lip-filler"}',
                                  'ask_price{"service":"lip-filler"}'),
    ("\t/\n /  /urgent", "urgent"),
])
def test_command_syntax_is_neutralised_however_many_slashes_and_spaces_lead(body, text):
    assert patient_text(body) == text


def test_a_nul_byte_is_dropped_and_the_rest_of_the_message_kept():
    assert storable("my tooth\x00 hurts") == "my tooth hurts"


def test_parse_form_accepts_twilio_bodies_and_refuses_anything_else():
    assert parse_form(b"Body=Hi+%F0%9F%98%80&From=%2B447700900001&Empty=") == {
        "Body": "Hi 😀", "From": "+447700900001", "Empty": ""}
    assert parse_form(b"") == {}
    for bad in (b"From=1&From=2", b"no-equals-sign", b"Body=\xff"):
        with pytest.raises(ValueError):
            parse_form(bad)


def test_signatures_cover_the_url_and_every_parameter():
    url, params = "https://rb.example/webhooks/twilio_sms/webhook", {"Body": "hi", "To": "+1"}
    good = sign(auth_token=AUTH_TOKEN, url=url, params=params)
    assert is_valid(auth_token=AUTH_TOKEN, url=url, params=params, signature=good)
    assert not is_valid(auth_token=AUTH_TOKEN, url=url + "?x=1", params=params, signature=good)
    assert not is_valid(auth_token=AUTH_TOKEN, url=url, params={**params, "Body": "hI"},
                        signature=good)
    assert not is_valid(auth_token="other", url=url, params=params, signature=good)
    assert not is_valid(auth_token=AUTH_TOKEN, url=url, params=params, signature=None)


def test_staff_are_recognised_by_phone_within_their_clinic_only(sessions, clinics):
    with sessions() as session, session.begin():
        allday, nightowl = session.merge(clinics["allday"]), session.merge(clinics["nightowl"])
        replies = handle_staff_message(session, clinic=allday, from_number=STAFF_PHONE,
                                       body="ACK 12", twilio_sid="SMstaff1")
        assert isinstance(replies, list)  # staff: staff_replies' call
        again = handle_staff_message(session, clinic=allday, from_number=STAFF_PHONE,
                                     body="ACK 12", twilio_sid="SMstaff1")
        assert again == []  # Twilio retrying: logged once
        assert handle_staff_message(session, clinic=nightowl, from_number=STAFF_PHONE,
                                    body="ACK 12") is None
        assert handle_staff_message(session, clinic=allday, from_number=new_patient(),
                                    body="hello") is None
        logged = session.execute(select(Message).where(Message.twilio_sid == "SMstaff1")
                                 ).scalars().all()
        assert [(m.author.startswith("staff:"), m.body) for m in logged] == [(True, "ACK 12")]
        assert session.execute(select(Contact).where(Contact.phone == STAFF_PHONE)).first() \
            is None


async def test_nothing_patients_write_reaches_the_logs_at_info_or_above(sessions, clinics,
                                                                      fake_twilio, caplog):
    """Health data stays out of the logs; the message log in the database is the record."""
    secret = "my lip is swollen SECRET-7731 after filler"
    patient = new_patient()
    caplog.set_level(logging.DEBUG)
    with sessions() as session, session.begin():
        clinic = session.merge(clinics["allday"])
        contact = get_or_create_contact(session, clinic=clinic, phone=patient)
        thread = get_or_create_thread(session, clinic=clinic, contact=contact,
                                      channel=Channel.sms)
        record_inbound(session, clinic=clinic, thread=thread, channel=Channel.sms,
                       from_number=patient, to_number=clinic.sms_number, body=secret,
                       twilio_sid=f"SMlog{patient[1:]}")
        handle_staff_message(session, clinic=clinic, from_number=STAFF_PHONE, body=secret)
        ids = [m.id for m in enqueue(session, clinic=clinic, channel=Channel.sms,
                                     to_number=patient, body=f"We read: {secret}",
                                     author="bot", thread=thread, contact=contact)]
        ids += [m.id for m in consent.help_reply(session, clinic=clinic, contact=contact,
                                                 thread=thread)]
        record_missed_call(session, clinic=clinic, caller=patient, call_sid=f"CAlog{patient}",
                           dial_status="no-answer", source="twilio",
                           occurred_at=thread.opened_at)
    fake_twilio.phone.control(fail_next=1, fail_status=500)
    outbox = make_outbox(sessions, fake_twilio.url)
    try:
        await outbox.deliver(ids)
        await drain(outbox, until=lambda: all(
            row.status == MessageStatus.queued for row in rows(sessions, ids)))
    finally:
        fake_twilio.phone.control()
        await outbox.aclose()
    with sessions() as session, session.begin():
        for message_id in ids:
            apply_status_callback(session, message_sid=session.get(Message, message_id).twilio_sid,
                                  status="failed", error_code="30003")
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert loud, "expected some logging to inspect"
    assert not [r.getMessage() for r in loud if "SECRET-7731" in r.getMessage()]
