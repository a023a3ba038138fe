"""The whole path once, through the real gateway, Rasa server and action server.

A missed call becomes a text-back, "yes" becomes offered slots, a pick becomes an appointment in
the database; an emergency reply reaches the on-call clinician with the transcript.
"""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from booking.models import (
    Appointment,
    AppointmentStatus,
    Contact,
    Escalation,
    EscalationReason,
    MissedCall,
    MissedCallStatus,
    Thread,
    ThreadState,
)

pytestmark = pytest.mark.integration

CLINIC_NUMBER = "+441632960001"
ON_CALL_CLINICIAN = "+447700900111"
_numbers = itertools.count(500)


def new_patient() -> str:
    return f"+447700900{next(_numbers):03d}"


@pytest.fixture
def db(stack):
    engine = create_engine(stack.database_url, future=True)
    with Session(engine) as session:
        yield session
    engine.dispose()


def test_missed_call_to_booked_appointment(stack, db):
    phone, patient = stack.phone, new_patient()

    call = phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    assert "<Dial" in call["twiml"] or "closed" in call["twiml"]
    text_back = phone.wait_for(patient, count=1)[0]
    assert "Riverside Dental & Aesthetics" in text_back["body"]
    assert "STOP" in text_back["body"]

    reply = phone.reply_and_wait(sender=patient, clinic_number=CLINIC_NUMBER, body="yes please")
    assert "Which treatment" in reply
    offer = phone.reply_and_wait(sender=patient, clinic_number=CLINIC_NUMBER,
                                 body="a check up please")
    assert "1." in offer and "2." in offer, offer
    ask_name = phone.reply_and_wait(sender=patient, clinic_number=CLINIC_NUMBER,
                                    body="the first one")
    assert "name" in ask_name.lower()
    confirmation = phone.reply_and_wait(sender=patient, clinic_number=CLINIC_NUMBER,
                                        body="It's Sam Taylor")
    assert "You're booked: Check-up" in confirmation
    assert "12 River Walk" in confirmation

    appointment = db.execute(
        select(Appointment).join(Contact).where(Contact.phone == patient)
    ).scalar_one()
    assert appointment.status == AppointmentStatus.booked
    assert appointment.service.slug == "check-up"
    assert appointment.contact.first_name == "Sam"
    assert appointment.contact.last_name == "Taylor"
    first_offer_line = offer.splitlines()[1]
    assert first_offer_line.startswith("1. ")
    assert first_offer_line[3:] in confirmation
    missed = db.execute(
        select(MissedCall).join(Contact).where(Contact.phone == patient)
    ).scalar_one()
    assert missed.status == MissedCallStatus.texted


def test_emergency_reply_reaches_on_call_clinician(stack, db):
    phone, patient = stack.phone, new_patient()
    phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    phone.wait_for(patient, count=1)
    alerts_before = len(phone.sent_to(ON_CALL_CLINICIAN))

    safety = phone.reply_and_wait(sender=patient, clinic_number=CLINIC_NUMBER,
                                  body="my lip is swollen and going white after filler")
    assert "999" in safety

    alert = phone.wait_for(ON_CALL_CLINICIAN, count=alerts_before + 1)[-1]["body"]
    assert "URGENT" in alert
    assert patient in alert
    assert "my lip is swollen and going white after filler" in alert
    escalation = db.execute(
        select(Escalation).join(Contact, Escalation.contact_id == Contact.id)
        .where(Contact.phone == patient)
    ).scalar_one()
    assert escalation.reason == EscalationReason.urgent
    assert escalation.red_flag_rule
    assert f"ACK {escalation.ack_code} " in alert
    assert any("swollen" in line["body"] for line in escalation.transcript)
    thread = db.execute(select(Thread).where(Thread.id == escalation.thread_id)).scalar_one()
    assert thread.state == ThreadState.handed_off
