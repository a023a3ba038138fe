"""Rough edges a patient noticed (issue 14), through the signed webhook to the real stack:
moving to a different day, moving what was just booked, treatments the clinic does not offer
(Riverside offers no facials and no Invisalign), and writing while staff hold the thread."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from booking.models import InboxState, Message, Thread
from tests.channels.conftest import wait_until

pytestmark = pytest.mark.integration

RIVERSIDE_TREATMENTS = ("Check-up", "Hygiene appointment", "Teeth whitening consultation",
                        "Lip filler", "Anti-wrinkle injections")


def test_moving_to_a_different_day_offers_no_time_on_the_same_day(patient, diary):
    yan = patient()
    booked = diary.book_soonest("riverside", phone=yan.number, service="check-up",
                                after=timedelta(days=1))
    offer = yan.says("can I move my appointment to a different day")
    assert offer.startswith("Sure, let's move your Check-up")
    booked_day = booked.starts_at.astimezone(yan.zone).date()
    offered_days = [s.starts_at.astimezone(yan.zone).date() for s in yan.offered()]
    assert offered_days and booked_day not in offered_days, offer
    # Turning those down keeps to other days too.
    yan.says("none of those work")
    assert booked_day not in [s.starts_at.astimezone(yan.zone).date() for s in yan.offered()]


def test_moving_an_appointment_booked_a_minute_ago_has_no_fee_warning(patient, diary):
    zoe = patient()
    diary.appointment_starting_in("riverside", phone=zoe.number, service="check-up", hours=5,
                                  booked_ago=timedelta(minutes=1))
    zoe.says("can I change my appointment")
    question = zoe.says("1")
    assert question.startswith("Just to check: move your Check-up from")
    assert "late-cancellation" not in question and "£25" not in question
    assert zoe.says("yes").startswith("Done, you're moved")


def test_booking_a_treatment_the_clinic_does_not_offer_says_so(patient):
    abe = patient()
    reply = abe.says("can I book a facial?")
    assert reply.startswith("Sorry, Riverside Dental & Aesthetics doesn't offer facial.")
    assert all(name in reply for name in RIVERSIDE_TREATMENTS)
    assert "talk to someone" in reply
    offer = abe.says("ok a check up then")
    assert offer.startswith("I can book Check-up")


def test_asking_about_a_treatment_the_clinic_does_not_list_offers_a_person(patient):
    bea = patient()
    reply = bea.says("Do you do Invisalign? And is there someone who speaks Spanish?")
    assert "doesn't offer Invisalign" in reply and "talk to someone" in reply
    handover = bea.says("talk to someone")
    assert "team" in handover
    assert [e.reason.value for e in bea.escalations()] == ["human"]



def test_after_a_handover_the_patient_hears_once_that_the_team_has_their_message(patient, db):
    dee = patient()
    handover = dee.says("can I speak to someone please")
    assert "team" in handover
    held = dee.says("what are your opening hours?")
    assert held == "Thanks, the Riverside Dental & Aesthetics team has this message too."
    before = len(dee.received())
    dee.stack.phone.text(sender=dee.number, clinic_number=dee.clinic_number, body="hello?")
    wait_until(lambda: dee.inbox_states()[-2:] == [InboxState.held] * 2,
               message="both messages held for staff")
    assert len(dee.received()) == before  # once, not on every message
    # Staff see both questions and what the patient was told, in the thread.
    db.expire_all()
    bodies = db.execute(select(Message.body).join(Thread, Thread.id == Message.thread_id)
                        .where(Thread.sender_id == dee.sender_id).order_by(Message.id)
                        ).scalars().all()
    assert bodies[-3:] == ["what are your opening hours?", held, "hello?"]
