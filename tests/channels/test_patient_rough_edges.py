"""Rough edges a patient noticed (issue 14), each played through the signed Twilio webhooks to
the real gateway, Rasa, action server and database: Spanish, a wrong number, an emergency while
the clinic is closed, the WhatsApp template a closed clinic sends."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from booking.models import (
    Consent,
    Contact,
    Escalation,
    MissedCallStatus,
)
from tests.channels.conftest import (
    CLOSED_CONTENT_SID,
    CLOSED_NUMBER,
    OPEN_NUMBER,
    SHUT_NUMBER,
    call_statuses,
    new_patient,
    outbound_rows,
    wait_until,
)

pytestmark = pytest.mark.integration

CLARIFY_WORDS = "didn't quite get that"


def _contact(db, phone: str, clinic_number: str) -> Contact:
    from booking.models import Clinic

    db.expire_all()
    return db.execute(select(Contact).join(Clinic, Clinic.id == Contact.clinic_id)
                      .where(Contact.phone == phone, Clinic.sms_number == clinic_number)
                      ).scalar_one()


def test_spanish_words_in_an_english_thread_are_understood(stack, channel_clinics):
    phone, patient = stack.phone, new_patient()
    phone.ring(caller=patient, clinic_number=OPEN_NUMBER)
    phone.wait_for(patient, count=1)
    reply = phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER, body="si")
    assert CLARIFY_WORDS not in reply and "English" not in reply
    assert phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER,
                                body="gracias").startswith("You're welcome")


def test_a_message_wholly_in_spanish_is_told_the_clinic_answers_in_english(
        stack, channel_clinics, db):
    phone, patient = stack.phone, new_patient()
    reply = phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER,
                                 body="Hola, quiero una cita para mañana por la tarde")
    assert "inglés" in reply and "English" in reply
    assert CLARIFY_WORDS not in reply
    # Once more: the same short answer, never the clarify-then-hand-over loop.
    again = phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER,
                                 body="no entiendo, ¿hablan español?")
    assert again == reply
    db.expire_all()
    contact = _contact(db, patient, OPEN_NUMBER)
    assert db.execute(select(Escalation).where(Escalation.contact_id == contact.id)
                      ).scalars().all() == []


def test_a_clinic_can_pass_spanish_messages_to_staff(stack, channel_clinics, db):
    phone, patient = stack.phone, new_patient()
    reply = phone.reply_and_wait(sender=patient, clinic_number=CLOSED_NUMBER,
                                 body="buenas tardes, necesito cambiar mi cita")
    assert "Hemos pasado su mensaje" in reply and "team" in reply

    def escalations() -> list[Escalation]:
        db.expire_all()
        contact = _contact(db, patient, CLOSED_NUMBER)
        return db.execute(select(Escalation).where(Escalation.contact_id == contact.id)
                          ).scalars().all()

    wait_until(escalations, message="the Spanish message handed to staff")
    (escalation,) = escalations()
    assert "necesito cambiar mi cita" in escalation.summary


def test_wrong_number_gets_an_apology_and_no_more_texts(stack, channel_clinics, db):
    phone, patient = stack.phone, new_patient()
    phone.ring(caller=patient, clinic_number=OPEN_NUMBER)
    phone.wait_for(patient, count=1)
    reply = phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER,
                                 body="wrong number sorry")
    assert reply.startswith("Sorry") and CLARIFY_WORDS not in reply
    assert "won't get any more texts from Allday Dental" in reply
    assert _contact(db, patient, OPEN_NUMBER).consent == Consent.opted_out
    sent = len(outbound_rows(db, patient))

    phone.ring(caller=patient, clinic_number=OPEN_NUMBER)

    def second_call_decided() -> bool:
        statuses = call_statuses(db, patient)
        return len(statuses) == 2 and MissedCallStatus.pending not in statuses

    wait_until(second_call_decided, message="the second call decided")
    assert call_statuses(db, patient)[-1] == MissedCallStatus.opted_out
    assert len(outbound_rows(db, patient)) == sent


def test_an_emergency_while_closed_gets_one_clear_message(stack, channel_clinics, db):
    phone, patient = stack.phone, new_patient()
    reply = phone.reply_and_wait(sender=patient, clinic_number=CLOSED_NUMBER,
                                 body="my lip has gone white and really painful after filler")
    assert "call you back" in reply
    assert "closed" not in reply and "first thing" not in reply


def test_the_whatsapp_template_says_we_are_closed_and_is_stored_as_received(
        stack, channel_clinics, db):
    phone, patient = stack.phone, new_patient()
    phone.ring(caller=patient, clinic_number=SHUT_NUMBER)
    (received,) = phone.wait_for(patient, count=1)
    assert received["to"] == f"whatsapp:{patient}"
    assert received["content_sid"] == CLOSED_CONTENT_SID
    assert "we're closed now and open again at 0:00 on" in received["body"]
    # The database (and so the console) holds exactly what the phone showed.
    (stored,) = outbound_rows(db, patient)
    assert stored.body == received["body"]
    assert stored.content_sid == CLOSED_CONTENT_SID
