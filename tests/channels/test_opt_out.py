"""Opting out through the real stack: one confirmation, then nothing of any kind (not even a
text-back after a later missed call) until START. HELP always answers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from booking.models import Consent, Contact, Message, MissedCallStatus
from tests.channels.conftest import (
    CLOSED_NUMBER,
    OPEN_NUMBER,
    call_statuses,
    count,
    new_patient,
    outbound_rows,
    wait_until,
)

pytestmark = pytest.mark.integration

KEYWORDS = ["STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "REVOKE", "OPTOUT", "CANCEL"]


def consent_of(db, phone: str, clinic_number: str = OPEN_NUMBER) -> Consent:
    db.expire_all()
    from booking.models import Clinic

    return db.execute(select(Contact.consent).join(Clinic, Clinic.id == Contact.clinic_id)
                      .where(Contact.phone == phone, Clinic.sms_number == clinic_number)
                      ).scalar_one()


def test_stop_then_silence_even_after_a_missed_call_until_start(stack, channel_clinics, db):
    phone, patient = stack.phone, new_patient()
    phone.ring(caller=patient, clinic_number=CLOSED_NUMBER)
    phone.wait_for(patient, count=1)

    confirmation = phone.reply_and_wait(sender=patient, clinic_number=CLOSED_NUMBER,
                                        body="STOP")
    assert "unsubscribed" in confirmation and "Nightowl Physio" in confirmation
    assert consent_of(db, patient, CLOSED_NUMBER) == Consent.opted_out
    sent_after_stop = len(outbound_rows(db, patient))

    phone.text(sender=patient, clinic_number=CLOSED_NUMBER, body="yes please book me")
    phone.text(sender=patient, clinic_number=CLOSED_NUMBER, body="STOP")  # no 2nd confirmation
    phone.ring(caller=patient, clinic_number=CLOSED_NUMBER)

    wait_until(lambda: MissedCallStatus.pending not in call_statuses(db, patient),
               message="calls decided")
    assert call_statuses(db, patient) == [MissedCallStatus.texted, MissedCallStatus.opted_out]
    # Everything the patient sent was logged, and nothing at all was stored to send them.
    assert count(db, Message, Message.from_number == patient) == 3
    assert len(outbound_rows(db, patient)) == sent_after_stop == 2

    welcome = phone.reply_and_wait(sender=patient, clinic_number=CLOSED_NUMBER, body="start")
    assert "subscribed" in welcome
    assert consent_of(db, patient, CLOSED_NUMBER) == Consent.opted_in
    assert phone.reply_and_wait(sender=patient, clinic_number=CLOSED_NUMBER,
                                body="what time do you open")


@pytest.mark.parametrize("keyword", KEYWORDS[1:] + ["  cancel  ", "Stop"])
def test_every_opt_out_keyword_opts_out_with_one_confirmation(stack, channel_clinics, db,
                                                               keyword):
    patient = new_patient()
    confirmation = stack.phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER,
                                              body=keyword)
    assert "unsubscribed" in confirmation and "START" in confirmation
    assert consent_of(db, patient) == Consent.opted_out
    assert len(outbound_rows(db, patient)) == 1


def test_cancel_in_a_sentence_is_about_the_appointment_not_the_texts(stack, channel_clinics,
                                                                    db):
    patient = new_patient()
    reply = stack.phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER,
                                       body="cancel my appointment")
    assert "unsubscribed" not in reply
    assert consent_of(db, patient) == Consent.implied


def test_stop_texting_me_in_words_opts_out_through_the_dialogue(stack, channel_clinics, db):
    patient = new_patient()
    stack.phone.ring(caller=patient, clinic_number=CLOSED_NUMBER)
    stack.phone.wait_for(patient, count=1)
    confirmation = stack.phone.reply_and_wait(sender=patient, clinic_number=CLOSED_NUMBER,
                                              body="please stop texting me")
    assert "unsubscribed" in confirmation
    assert consent_of(db, patient, CLOSED_NUMBER) == Consent.opted_out
    stack.phone.text(sender=patient, clinic_number=CLOSED_NUMBER, body="hello?")
    wait_until(lambda: count(db, Message, Message.from_number == patient) == 2,
               message="second message logged")
    assert len(outbound_rows(db, patient)) == 2  # the text-back and the one confirmation


def test_opting_out_of_one_clinic_leaves_the_other(stack, channel_clinics, db):
    patient = new_patient()
    stack.phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER, body="STOP")
    stack.phone.ring(caller=patient, clinic_number=CLOSED_NUMBER)
    text_back = stack.phone.wait_for(patient, count=2)[-1]
    assert "Nightowl Physio" in text_back["body"]


def test_help_returns_the_clinics_contact_details(stack, channel_clinics, db):
    patient = new_patient()
    reply = stack.phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER, body="HELP")
    # The number as patients in the clinic's country dial it, not E.164 (issue 14).
    assert "Allday Dental" in reply and "01632 960701" in reply and "1 Test Street" in reply
    assert OPEN_NUMBER not in reply
    assert consent_of(db, patient) == Consent.implied
