"""Patients' texts through the real Rasa connector: signed, once per MessageSid, in order,
to the right clinic, and unable to drive the bot with "/intent" commands."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from booking.models import Clinic, Contact, Direction, Message, StaffMember
from tests.channels.conftest import (
    CLOSED_NUMBER,
    OPEN_NUMBER,
    STAFF_PHONE,
    count,
    new_patient,
    wait_until,
)

pytestmark = pytest.mark.integration


def tracker(stack, sender_id: str) -> dict:
    response = httpx.get(stack.rasa_api(f"/conversations/{quote(sender_id, safe=':+')}/tracker"),
                         timeout=30)
    response.raise_for_status()
    return response.json()


def user_turns(stack, sender_id: str) -> list[dict]:
    return [event for event in tracker(stack, sender_id)["events"] if event["event"] == "user"]


def wait_for_turns(stack, sender_id: str, n: int) -> list[dict]:
    return wait_until(lambda: (turns := user_turns(stack, sender_id)) and len(turns) >= n
                      and turns, message=f"{n} dialogue turns for {sender_id}")


def inbound_bodies(db, phone: str) -> list[str]:
    db.expire_all()
    return list(db.execute(select(Message.body).where(
        Message.direction == Direction.inbound, Message.from_number == phone)
        .order_by(Message.id)).scalars())


def test_a_reply_reaches_the_dialogue_and_the_answer_comes_back(stack, channel_clinics):
    patient = new_patient()
    reply = stack.phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER,
                                       body="what time do you open?")
    assert reply
    (turn,) = wait_for_turns(stack, f"allday:{patient}", 1)
    assert turn["text"] == "what time do you open?"
    assert turn["input_channel"] == "ringback"


@pytest.mark.parametrize("body", ["/deny@0.5", '/book{"service":"x"}', "  //affirm",
                                  '/inform{"service": "lip-filler"}', "/ /deny@0.5",
                                  '/ /ask_price{"service":"lip-filler"}'])
def test_slash_commands_from_patients_are_read_as_plain_text(stack, channel_clinics, db, body):
    patient = new_patient()
    stack.phone.text(sender=patient, clinic_number=OPEN_NUMBER, body=body)
    (turn,) = wait_for_turns(stack, f"allday:{patient}", 1)
    assert not turn["text"].startswith("/")
    assert turn["text"] == body.lstrip("/ ")
    # Rasa's "/intent" shortcut ranks one intent at confidence 1.0 and takes the entities as
    # given; here the model ranked the intents and every entity came from an extractor.
    parse = turn["parse_data"]
    assert len(parse["intent_ranking"]) > 1
    assert all(entity.get("extractor") for entity in parse.get("entities", []))
    assert ("service", "x") not in [(e["entity"], e["value"]) for e in parse.get("entities", [])]
    assert inbound_bodies(db, patient) == [body]  # the log keeps what they actually sent


def test_a_photo_alone_gets_a_plain_answer_and_does_not_reach_the_dialogue(stack,
                                                                          channel_clinics):
    patient = new_patient()
    stack.phone.text(sender=patient, clinic_number=OPEN_NUMBER, body="",
                     media_urls=["https://api.twilio.com/media/ME1"])
    (reply,) = stack.phone.wait_for(patient, count=1)
    assert "photo" in reply["body"] and "in words" in reply["body"]
    stack.phone.text(sender=patient, clinic_number=OPEN_NUMBER, body="",
                     latitude=51.5, longitude=-0.12)
    replies = stack.phone.wait_for(patient, count=2)
    assert "location" in replies[1]["body"]
    assert user_turns(stack, f"allday:{patient}") == []


def test_a_photo_with_words_goes_to_the_dialogue(stack, channel_clinics, db):
    patient = new_patient()
    stack.phone.text(sender=patient, clinic_number=OPEN_NUMBER, body="is this normal?",
                     media_urls=["https://api.twilio.com/media/ME2"])
    (turn,) = wait_for_turns(stack, f"allday:{patient}", 1)
    assert turn["text"] == "is this normal?" and turn["metadata"]["media_count"] == 1


def test_a_very_long_message_with_emoji_is_kept_whole_and_answered(stack, channel_clinics, db):
    patient = new_patient()
    body = ("My tooth hurts 😬🦷 when I drink something cold, " * 50)[:2000]
    stack.phone.text(sender=patient, clinic_number=OPEN_NUMBER, body=body)
    (turn,) = wait_for_turns(stack, f"allday:{patient}", 1)
    assert turn["text"] == body.strip()
    assert inbound_bodies(db, patient) == [body]
    stack.phone.wait_for(patient, count=1)  # the bot answered


def test_one_patients_messages_reach_the_dialogue_in_the_order_sent(stack, channel_clinics):
    patient = new_patient()
    said = ["hello", "what time do you open", "where are you", "how much is a check up",
            "thanks"]
    for body in said:
        stack.phone.text(sender=patient, clinic_number=OPEN_NUMBER, body=body)
    turns = wait_for_turns(stack, f"allday:{patient}", len(said))
    assert [turn["text"] for turn in turns] == said


def test_twilio_retrying_a_webhook_is_processed_once(stack, channel_clinics, db):
    patient = new_patient()
    sid = f"SMretry{patient[1:]}"
    results = [stack.phone.text(sender=patient, clinic_number=OPEN_NUMBER,
                                body="what time do you open", message_sid=sid)
               for _ in range(3)]
    assert {r["webhook_status"] for r in results} == {200}
    wait_for_turns(stack, f"allday:{patient}", 1)
    stack.phone.wait_for(patient, count=1)
    assert inbound_bodies(db, patient) == ["what time do you open"]
    assert len(user_turns(stack, f"allday:{patient}")) == 1


def test_the_clinic_is_found_by_the_number_texted(stack, channel_clinics, db):
    patient = new_patient()
    stack.phone.text(sender=patient, clinic_number=CLOSED_NUMBER, body="hello")
    wait_for_turns(stack, f"nightowl:{patient}", 1)
    db.expire_all()
    slugs = db.execute(select(Clinic.slug).join(Contact, Contact.clinic_id == Clinic.id)
                       .where(Contact.phone == patient)).scalars().all()
    assert slugs == ["nightowl"]


def test_staff_texting_the_clinic_number_never_reach_the_dialogue(stack, channel_clinics, db):
    before = count(db, Contact, Contact.phone == STAFF_PHONE)
    result = stack.phone.text(sender=STAFF_PHONE, clinic_number=OPEN_NUMBER, body="ACK 1")
    assert result["webhook_status"] == 200

    def logged_message() -> Message | None:
        db.expire_all()
        return db.execute(select(Message).where(Message.twilio_sid == result["sid"])
                          ).scalar_one_or_none()

    logged = wait_until(logged_message, message="the staff text logged")
    staff = db.execute(select(StaffMember).where(StaffMember.phone == STAFF_PHONE)).scalar_one()
    assert (logged.author, logged.body, logged.thread_id) == (f"staff:{staff.id}", "ACK 1", None)
    assert count(db, Contact, Contact.phone == STAFF_PHONE) == before
    assert user_turns(stack, f"allday:{STAFF_PHONE}") == []
