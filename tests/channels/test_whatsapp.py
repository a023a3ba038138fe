"""WhatsApp end to end: approved template outside the 24-hour window, free-form inside it, and
SMS when WhatsApp cannot reach the phone. The fake enforces WhatsApp's window as Twilio does."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from booking.models import Channel, Contact, Direction, Message, MessageStatus, Thread
from tests.channels.conftest import (
    CONTENT_SID,
    OPEN_NUMBER,
    OPEN_WHATSAPP,
    count,
    new_patient,
    wait_until,
)

pytestmark = pytest.mark.integration


def contact(db, phone: str) -> Contact:
    db.expire_all()
    return db.execute(select(Contact).where(Contact.phone == phone)).scalar_one()


def test_first_text_back_outside_the_window_is_the_approved_template(stack, channel_clinics):
    patient = new_patient()
    stack.phone.ring(caller=patient, clinic_number=OPEN_NUMBER)
    (text_back,) = stack.phone.wait_for(patient, count=1)
    assert text_back["to"] == f"whatsapp:{patient}"
    assert text_back["from"] == f"whatsapp:{OPEN_WHATSAPP}"
    assert text_back["content_sid"] == CONTENT_SID
    assert json.loads(text_back["content_variables"]) == {"1": "Allday Dental", "2": "there"}
    assert "Allday Dental" in text_back["body"] and "STOP" in text_back["body"]
    wait_until(lambda: stack.phone.sent_to(patient)[0]["status"] == "delivered",
               message="template delivered")


def test_inside_the_window_replies_are_free_form_and_delivered(stack, channel_clinics, db):
    patient = new_patient()
    stack.phone.ring(caller=patient, clinic_number=OPEN_NUMBER)
    stack.phone.wait_for(patient, count=1)
    reply = stack.phone.reply_and_wait(sender=patient, clinic_number=OPEN_WHATSAPP,
                                       body="what time do you open", channel="whatsapp")
    assert reply
    answer = stack.phone.sent_to(patient)[-1]
    assert answer["to"] == f"whatsapp:{patient}" and answer["content_sid"] is None
    wait_until(lambda: stack.phone.sent_to(patient)[-1]["status"] == "delivered",
               message="free-form reply delivered inside the window")
    assert contact(db, patient).last_whatsapp_inbound_at is not None



@pytest.mark.parametrize("error_code", [63016, 63003])
def test_whatsapp_undeliverable_falls_back_to_sms_once(stack, channel_clinics, db, error_code):
    patient = new_patient()
    stack.phone.whatsapp_undeliverable(patient, error_code=error_code)
    try:
        stack.phone.ring(caller=patient, clinic_number=OPEN_NUMBER)
        messages = stack.phone.wait_for(patient, count=2)
    finally:
        stack.phone.whatsapp_deliverable(patient)
    whatsapp, sms = messages
    assert whatsapp["to"] == f"whatsapp:{patient}" and whatsapp["content_sid"] == CONTENT_SID
    assert sms["to"] == patient and sms["from"] == OPEN_NUMBER
    assert "Allday Dental" in sms["body"] and "STOP" in sms["body"]
    wait_until(lambda: stack.phone.sent_to(patient)[0]["status"] == "undelivered",
               message="WhatsApp reported undelivered")
    db.expire_all()
    failed = db.execute(select(Message).where(Message.to_number == f"whatsapp:{patient}")
                        ).scalar_one()
    assert (failed.status, failed.error_code) == (MessageStatus.undelivered, str(error_code))
    assert contact(db, patient).whatsapp_unreachable
    thread = db.execute(select(Thread).join(Contact).where(Contact.phone == patient)).scalar_one()
    assert thread.channel == Channel.sms
    assert count(db, Message, Message.direction == Direction.outbound,
                 Message.to_number == patient) == 1

    # The patient answers the SMS: the conversation carries on by SMS.
    reply = stack.phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER,
                                       body="what time do you open")
    assert reply and stack.phone.sent_to(patient)[-1]["to"] == patient
