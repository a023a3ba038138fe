"""Twilio Voice through the real gateway: dial the desk, and every way it fails is a missed call
texted back once. Calls are placed by the Twilio fake, signed like Twilio's."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest
from sqlalchemy import select

from booking.models import Contact, Direction, Message, MissedCall, MissedCallStatus
from tests.channels.conftest import (
    CLOSED_NUMBER,
    OPEN_DESK,
    OPEN_NUMBER,
    SCREENED_DESK,
    SCREENED_NUMBER,
    count,
    new_patient,
    twilio_post,
    wait_until,
)

pytestmark = pytest.mark.integration


def calls_from(db, caller: str, *, expected: int = 1) -> list[MissedCall]:
    """The caller's calls once all `expected` are stored and decided (texted, duplicate...)."""
    def decided() -> list[MissedCall]:
        db.expire_all()
        calls = list(db.execute(select(MissedCall).join(Contact)
                                .where(Contact.phone == caller)
                                .order_by(MissedCall.id)).scalars())
        done = len(calls) == expected and all(
            c.status != MissedCallStatus.pending for c in calls)
        return calls if done else []

    return wait_until(decided, message=f"{expected} decided call(s) from {caller}")


def sent_to(db, caller: str) -> int:
    return count(db, Message, Message.direction == Direction.outbound,
                 Message.to_number.in_([caller, f"whatsapp:{caller}"]))


def test_open_clinic_rings_the_desk_below_voicemail_pickup(stack, channel_clinics, db):
    caller = new_patient()
    call = stack.phone.ring(caller=caller, clinic_number=OPEN_NUMBER, outcome="completed")
    dial = ElementTree.fromstring(call["twiml"]).find("Dial")
    assert dial.get("timeout") == "20"  # configured 30 s: voicemail would have answered
    assert dial.get("action") == f"{stack.gateway}/twilio/voice/dial-status"
    assert dial.find("Number").text == OPEN_DESK
    assert dial.find("Number").get("url") is None  # no screening at this clinic
    assert call["dial_status"] == 200 and call["call_status"] == 204
    (answered,) = calls_from(db, caller)
    assert answered.status == MissedCallStatus.answered
    assert sent_to(db, caller) == 0  # recorded before Twilio got its answer: no text-back


@pytest.mark.parametrize("outcome", ["no-answer", "busy", "failed", "canceled"])
def test_every_way_the_dial_fails_is_a_missed_call_texted_back_once(stack, channel_clinics, db,
                                                                    outcome):
    caller = new_patient()
    call = stack.phone.ring(caller=caller, clinic_number=OPEN_NUMBER, outcome=outcome)
    assert "text message" in call["dial_twiml"]
    (missed,) = calls_from(db, caller)
    assert (missed.status, missed.dial_status) == (MissedCallStatus.texted, outcome)
    (text_back,) = stack.phone.wait_for(caller, count=1)
    assert "Allday Dental" in text_back["body"] and "STOP" in text_back["body"]
    # The parent call's status callback came afterwards and changed nothing.
    assert call["call_status"] == 204
    assert len(calls_from(db, caller)) == 1 and sent_to(db, caller) == 1


def test_screened_desk_must_press_1_or_the_call_counts_as_missed(stack, channel_clinics, db):
    declined, accepted = new_patient(), new_patient()
    call = stack.phone.ring(caller=declined, clinic_number=SCREENED_NUMBER,
                            outcome="completed", screen_accepted=False)
    number = ElementTree.fromstring(call["twiml"]).find("Dial/Number")
    assert number.text == SCREENED_DESK
    assert number.get("url") == f"{stack.gateway}/twilio/voice/screen"
    assert "Press 1" in call["screen_twiml"]
    # Voicemail "answered" (DialCallStatus=completed) but nobody pressed 1: not bridged.
    (missed,) = calls_from(db, declined)
    assert missed.status == MissedCallStatus.texted
    stack.phone.wait_for(declined, count=1)

    stack.phone.ring(caller=accepted, clinic_number=SCREENED_NUMBER, outcome="completed",
                     screen_accepted=True)
    (answered,) = calls_from(db, accepted)
    assert answered.status == MissedCallStatus.answered and sent_to(db, accepted) == 0


def test_screening_allows_a_longer_ring(stack, channel_clinics):
    call = stack.phone.ring(caller=new_patient(), clinic_number=SCREENED_NUMBER,
                            outcome="completed", screen_accepted=True)
    assert ElementTree.fromstring(call["twiml"]).find("Dial").get("timeout") == "25"


def test_closed_clinic_skips_the_dial_says_so_and_texts_back(stack, channel_clinics, db):
    caller = new_patient()
    call = stack.phone.ring(caller=caller, clinic_number=CLOSED_NUMBER)
    answer = ElementTree.fromstring(call["twiml"])
    assert answer.find("Dial") is None
    assert "closed" in answer.find("Say").text and answer.find("Hangup") is not None
    (missed,) = calls_from(db, caller)
    assert (missed.status, missed.dial_status) == (MissedCallStatus.texted, "after-hours")
    (text_back,) = stack.phone.wait_for(caller, count=1)
    assert text_back["body"].startswith("Sorry we missed your call at Nightowl Physio.")


def test_caller_hanging_up_mid_ring_is_caught_by_the_call_status_backstop(stack,
                                                                          channel_clinics, db):
    caller = new_patient()
    call = stack.phone.ring(caller=caller, clinic_number=OPEN_NUMBER, caller_hangs_up=True)
    assert call["dial_status"] is None and call["call_status"] == 204
    (missed,) = calls_from(db, caller)
    assert (missed.status, missed.dial_status) == (MissedCallStatus.texted, "call-completed")
    stack.phone.wait_for(caller, count=1)
    assert sent_to(db, caller) == 1


def test_call_status_alone_is_idempotent_on_call_sid(stack, channel_clinics, db):
    caller = new_patient()
    params = {"CallSid": f"CAbackstop{caller[1:]}", "From": caller, "To": OPEN_NUMBER,
              "CallStatus": "completed", "AccountSid": "AC", "CallDuration": "3"}
    url = f"{stack.gateway}/twilio/voice/call-status"
    assert [twilio_post(url, params).status_code for _ in range(3)] == [204, 204, 204]
    # A call still in progress is not an outcome.
    assert twilio_post(url, {**params, "CallSid": "CAringing",
                             "CallStatus": "in-progress"}).status_code == 204
    assert len(calls_from(db, caller)) == 1 and sent_to(db, caller) == 1


def test_same_caller_ringing_three_times_in_ten_minutes_gets_one_text_back(stack,
                                                                           channel_clinics, db):
    caller = new_patient()
    for _ in range(3):
        stack.phone.ring(caller=caller, clinic_number=OPEN_NUMBER)
    assert [c.status for c in calls_from(db, caller, expected=3)] == [
        MissedCallStatus.texted, MissedCallStatus.duplicate, MissedCallStatus.duplicate]
    stack.phone.wait_for(caller, count=1)
    assert sent_to(db, caller) == 1


def test_withheld_caller_hears_a_message_and_nothing_is_stored(stack, channel_clinics, db):
    before = count(db, MissedCall), count(db, Contact)
    call = stack.phone.ring(caller="anonymous", clinic_number=CLOSED_NUMBER)
    assert "call back" in call["twiml"]
    for url in ("dial-status", "call-status"):
        response = twilio_post(f"{stack.gateway}/twilio/voice/{url}", {
            "CallSid": f"CAanon{url}", "From": "anonymous", "To": OPEN_NUMBER,
            "DialCallStatus": "no-answer", "CallStatus": "completed"})
        assert response.status_code in (200, 204)
    assert (count(db, MissedCall), count(db, Contact)) == before
