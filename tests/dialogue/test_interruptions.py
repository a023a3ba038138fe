"""Interruptions, questions, small talk, not understanding and long pauses, mid-conversation."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from booking.models import AppointmentStatus, EscalationReason, InboxState, ThreadState
from tests.channels.conftest import wait_until

pytestmark = pytest.mark.integration


def offering(patient, service: str = "check up") -> str:
    """Ring, say yes, name the treatment: the patient now has three times to choose from."""
    patient.ring()
    patient.says("yes")
    return patient.says(service)


def thread_state(patient, db) -> ThreadState:
    from sqlalchemy import select

    from booking.models import Thread

    db.expire_all()
    return db.execute(select(Thread.state).where(Thread.sender_id == patient.sender_id)).scalar()


# -- questions answered from clinic configuration ------------------------------------------


def test_a_price_question_mid_booking_is_answered_and_the_booking_carries_on(patient):
    ada = patient()
    offer = offering(ada)
    offered = ada.offered()
    answer = ada.says("how much is it?")
    assert answer.startswith("Prices: Check-up: £55.")
    assert "Would one of these times suit you?" in answer
    assert offer.splitlines()[1] in answer  # the same times, listed again
    assert ada.offered() == offered
    ada.says("2")
    ada.says("Ada")
    (appointment,) = ada.appointments()
    assert appointment.starts_at == offered[1].starts_at


def test_two_questions_in_one_message_get_both_answers(patient):
    bo = patient()
    bo.ring()
    answer = bo.says("how much is lip filler and where are you?")
    assert "Lip filler: £180-£320" in answer
    assert "12 River Walk, Riverside, RS1 2AB" in answer
    assert "Free parking behind the practice" in answer


def test_opening_hours_come_from_the_clinic_configuration(patient):
    cy = patient()
    cy.ring()
    answer = cy.says("what are your opening hours?")
    assert ("We're open now" in answer) or ("We're closed" in answer)
    assert "Mon 08:00-18:00" in answer and "Thu 08:00-20:00" in answer
    assert "Sun closed" in answer


def test_us_opening_hours_are_in_12_hour_time(patient):
    di = patient("northside")
    di.ring()
    answer = di.says("when are you open?")
    assert "Mon 7 AM-7 PM" in answer and "Fri 7 AM-3 PM" in answer


def test_insurance_and_payment_answers(patient):
    ed = patient()
    ed.ring()
    assert "Denplan" in ed.says("do you take insurance?")
    assert "Apple Pay" in ed.says("can i pay by card?")


def test_a_question_while_asked_for_a_name_asks_for_the_name_again(patient):
    flo = patient()
    offering(flo)
    flo.says("1")
    answer = flo.says("where is the clinic?")
    assert "12 River Walk" in answer
    assert "What name should I put the booking under?" in answer
    assert flo.says("Flo").startswith("You're booked")


# -- handing over and closing ----------------------------------------------------------------


def test_an_emergency_mid_booking_goes_straight_to_the_clinician(patient, db):
    gil = patient()
    offering(gil, "lip filler")
    safety = gil.says("my lip has gone white and is really painful after filler")
    assert "999" in safety
    (escalation,) = gil.escalations()
    assert escalation.reason == EscalationReason.urgent
    assert thread_state(gil, db) == ThreadState.handed_off
    # The gateway escalated it as it arrived: the dialogue never read it, so never twice.
    assert gil.tracker()["latest_message"]["text"] != "my lip has gone white and is really " \
        "painful after filler"
    assert gil.appointments() == []


def test_asking_for_a_person_mid_booking_hands_the_thread_over(patient, db):
    hal = patient()
    offering(hal)
    reply = hal.says("can I just talk to someone please")
    assert "team" in reply
    (escalation,) = hal.escalations()
    assert escalation.reason == EscalationReason.human
    assert thread_state(hal, db) == ThreadState.handed_off


def test_no_thanks_to_the_text_back_closes_politely(patient):
    ian = patient()
    ian.ring()
    assert ian.says("no thanks") == "No problem. If you need us later, just reply here."
    assert ian.escalations() == [] and ian.appointments() == []


def test_no_thanks_while_choosing_a_time_closes_politely(patient):
    jan = patient()
    offering(jan)
    assert jan.says("no thanks, I'll leave it").startswith("No problem.")
    assert jan.slot("awaiting") is None
    assert jan.says("yes actually").startswith("Happy to help you book.")


def test_goodbye_ends_the_booking_attempt(patient):
    kit = patient()
    offering(kit)
    assert kit.says("ok bye").startswith("Thanks for getting in touch")
    assert kit.slot("offered_slots") is None


# -- not understanding -------------------------------------------------------------------


def test_a_message_not_understood_twice_goes_to_staff_and_the_bot_stops(patient, db):
    lou = patient()
    lou.ring()
    clarify = lou.says("zxqv plorb wug")
    assert "You can reply YES to book" in clarify
    assert '"talk to someone"' in clarify
    assert "CANCEL" not in clarify and "STOP" not in clarify
    handover = lou.says("blarg fnord qux")
    assert "team" in handover
    (escalation,) = lou.escalations()
    assert escalation.reason == EscalationReason.not_understood
    assert thread_state(lou, db) == ThreadState.handed_off
    # Staff have the thread now: the bot only says, once, that the team has the message.
    assert lou.says("hello??") == "Thanks, the Riverside Dental & Aesthetics team has this " \
        "message too."
    before = len(lou.received())
    lou.stack.phone.text(sender=lou.number, clinic_number=lou.clinic_number, body="hello???")
    wait_until(lambda: lou.inbox_states()[-2:] == [InboxState.held] * 2, timeout=20,
               message="the messages held for staff")
    assert len(lou.received()) == before


def test_one_miss_then_a_clear_answer_carries_on_without_staff(patient):
    meg = patient()
    offering(meg)
    again = meg.says("zxqv plorb wug")
    assert again.startswith("Sorry, I didn't") or again.startswith("Which time suits you?")
    meg.says("the first one")
    assert meg.says("Meg").startswith("You're booked")
    assert meg.escalations() == []


def test_typos_and_text_speak_still_book(patient):
    ned = patient()
    ned.ring()
    ned.says("yea pls")
    offer = ned.says("teeth whitning")
    assert offer.startswith("I can book Teeth whitening consultation")
    ned.says("the 1st one pls")
    assert ned.says("its ned").startswith("You're booked")


# -- a reply hours later ---------------------------------------------------------------------


def _age_conversation(patient, hours: float) -> None:
    """Move every stored event of this conversation `hours` into the past, as if it had."""
    with sqlite3.connect(patient.stack.run_dir / "rasa_tracker.db") as tracker_db:
        tracker_db.execute("UPDATE events SET timestamp = timestamp - ? WHERE sender_id = ?",
                           (hours * 3600, patient.sender_id))


def test_a_reply_hours_later_continues_the_same_conversation(patient):
    oli = patient()
    offering(oli)
    offered = oli.offered()
    _age_conversation(oli, hours=6)
    oli.says("sorry was at work, number 3 please")
    assert oli.says("Oli").startswith("You're booked")
    (appointment,) = oli.appointments()
    assert appointment.starts_at == offered[2].starts_at
    events = oli.tracker()["events"]
    assert sum(e.get("name") == "action_session_start" for e in events) == 1


def test_a_time_that_passed_while_the_patient_was_away_gets_fresh_offers(patient):
    pam = patient()
    offering(pam)
    stale = pam.offered()[0]
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    moved = {**stale.to_dict(), "starts_at": an_hour_ago.isoformat(),
             "ends_at": (an_hour_ago + timedelta(minutes=30)).isoformat()}
    # What the tracker would hold had the offer been made the day before.
    httpx.post(pam.stack.rasa_api(f"/conversations/{pam.sender_id}/tracker/events"),
               json={"event": "slot", "name": "offered_slots",
                     "value": [moved] + [s.to_dict() for s in pam.offered()[1:]]},
               timeout=10).raise_for_status()
    reply = pam.says("1")
    assert reply.startswith("Sorry, that time has passed now.")
    assert all(s.starts_at > datetime.now(timezone.utc) for s in pam.offered())
    pam.says("1")
    pam.says("Pam")
    (appointment,) = pam.appointments(AppointmentStatus.booked)
    assert appointment.starts_at > datetime.now(timezone.utc)


# -- opting out in words -------------------------------------------------------------------


def test_stop_texting_me_in_words_opts_out(patient):
    from booking.models import Consent

    quin = patient()
    quin.ring()
    assert "unsubscribed" in quin.says("please stop texting me")
    assert quin.contact().consent == Consent.opted_out


def test_a_short_name_is_never_taken_for_an_opt_out(patient):
    """Asked for a name, "Pam" was once classified opt_out (0.51): it must book, not unsubscribe."""
    from booking.models import Consent

    pam = patient()
    offering(pam)
    pam.says("1")
    assert pam.says("Pam").startswith("You're booked")
    assert pam.contact().consent != Consent.opted_out
