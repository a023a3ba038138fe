"""Patient details, appointment changes and FAQ answers: the rules behind the conversation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from booking.dialogue.appointment_changes import (
    answer_is_yes,
    cancel_question,
    choose_appointment,
    is_late_notice,
    reschedule_question,
    which_question,
)
from booking.dialogue.faq import answer, hours_answer, topics_in
from booking.dialogue.patient_details import missing_fields, parse_name, question, read_answer

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)  # Monday 09:00 in London


# -- who is coming -------------------------------------------------------------------------


@pytest.mark.parametrize("text, name", [
    ("It's Sam Taylor", ("Sam", "Taylor")), ("sam", ("Sam", None)),
    ("my name is jo bloggs thanks", ("Jo", "Bloggs")), ("Hi, it's Ana", ("Ana", None)),
    ("yes it's Mary-Jane O'Brien", ("Mary-Jane", "O'Brien")), ("I'm Alex.", ("Alex", None)),
    ("Rita x", ("Rita", None)), ("Rita Patel, thanks", ("Rita", "Patel")),
])
def test_names_are_read_from_what_people_write(text, name):
    assert parse_name(text) == name


@pytest.mark.parametrize("text", ["yes", "no thanks", "the first one", "Thursday at 10",
                                  "how much is it?", "bye", "2", "hello", ""])
def test_replies_that_are_not_names(text):
    assert parse_name(text) is None


def contact(**fields):
    base = {"first_name": None, "last_name": None, "is_known_patient": False}
    return SimpleNamespace(**{**base, **fields})


def clinic(required=None):
    settings = {} if required is None else {"required_patient_fields": required}
    return SimpleNamespace(slug="test", settings=settings)


def test_only_the_fields_a_clinic_requires_are_asked_for():
    assert missing_fields(clinic(), contact()) == ["first_name"]
    assert missing_fields(clinic(["first_name", "last_name"]), contact(first_name="Sam")) == \
        ["last_name"]
    assert missing_fields(clinic(["first_name"]), contact(first_name="Sam")) == []
    assert missing_fields(clinic(["first_name", "last_name"]),
                          contact(is_known_patient=True)) == []
    assert missing_fields(clinic(["first_name", "favourite_colour"]), contact()) == \
        ["first_name"]


def test_asking_for_a_full_name_then_a_surname():
    missing = ["first_name", "last_name"]
    assert "full name" in question(missing)
    assert read_answer(missing, "Ray") == {"first_name": "Ray"}
    assert read_answer(missing, "Ray Ortiz") == {"first_name": "Ray", "last_name": "Ortiz"}
    assert "surname" in question(["last_name"])
    assert read_answer(["last_name"], "ortiz") == {"last_name": "Ortiz"}


# -- moving and cancelling -----------------------------------------------------------------


def appointment(id_, service_name, hours_from_now, slug="check-up", patient=None,
                booked_ago=timedelta(days=7)):
    """`patient`: who it is for; None is the phone's owner (keyed in without a person)."""
    service = SimpleNamespace(id=hash(slug) % 1000, name=service_name, slug=slug,
                              synonyms=[])
    return SimpleNamespace(id=id_, service=service, service_id=service.id,
                           starts_at=NOW + timedelta(hours=hours_from_now), patient=patient,
                           patient_id=patient.id if patient is not None else None,
                           created_at=NOW - booked_ago)


RIVERSIDE = SimpleNamespace(
    name="Riverside", country="GB", timezone="Europe/London",
    settings={"cancellation": {"notice_hours": 24, "late_fee": "Late cancellations cost £25."}})


def test_the_late_cancellation_fee_is_mentioned_only_within_the_notice_period():
    soon, later = appointment(1, "Check-up", 5), appointment(2, "Check-up", 49)
    assert is_late_notice(soon, clinic=RIVERSIDE, now=NOW)
    assert not is_late_notice(later, clinic=RIVERSIDE, now=NOW)
    assert "Late cancellations cost £25." in cancel_question(soon, clinic=RIVERSIDE, now=NOW)
    assert "£25" not in cancel_question(later, clinic=RIVERSIDE, now=NOW)
    moving = reschedule_question(soon, NOW + timedelta(days=3), clinic=RIVERSIDE, now=NOW)
    assert "late-cancellation policy" in moving
    assert cancel_question(later, clinic=RIVERSIDE, now=NOW).startswith(
        "Just to check: cancel your Check-up on Wed 25 Nov at 10:00?")


def test_an_appointment_booked_moments_ago_changes_without_the_fee_warning():
    just_booked = appointment(1, "Check-up", 5, booked_ago=timedelta(minutes=1))
    assert not is_late_notice(just_booked, clinic=RIVERSIDE, now=NOW)
    assert "£25" not in cancel_question(just_booked, clinic=RIVERSIDE, now=NOW)
    assert "late-cancellation" not in reschedule_question(
        just_booked, NOW + timedelta(days=3), clinic=RIVERSIDE, now=NOW)
    an_hour_ago = appointment(2, "Check-up", 5, booked_ago=timedelta(minutes=61))
    assert is_late_notice(an_hour_ago, clinic=RIVERSIDE, now=NOW)


def test_choosing_which_appointment_by_number_day_or_treatment():
    check_up = appointment(1, "Check-up", 26)  # Tue 24 Nov 11:00
    hygiene = appointment(2, "Hygiene appointment", 74, slug="hygiene")  # Thu 26 Nov 11:00
    both = [check_up, hygiene]

    def chosen(text):
        found = choose_appointment(text, both, clinic=RIVERSIDE, now=NOW)
        return found.id if found else None

    assert chosen("2") == 2
    assert chosen("the first one") == 1
    assert chosen("thursday's") == 2
    assert chosen("the hygiene one") == 2
    assert chosen("check-up please") == 1
    assert chosen("whichever") is None
    assert "1. Check-up on Tue 24 Nov at 11:00" in which_question(both, clinic=RIVERSIDE,
                                                                  kind="cancel")


def test_a_family_s_appointments_say_whose_they_are():
    sam = SimpleNamespace(id=1, relation="self", first_name="Sam")
    emma = SimpleNamespace(id=2, relation="daughter", first_name="Emma")
    son = SimpleNamespace(id=3, relation="son", first_name=None)
    mine, hers = appointment(1, "Check-up", 26, patient=sam), appointment(2, "Check-up", 27,
                                                                           patient=emma)
    listed = which_question([mine, hers, appointment(3, "Check-up", 74, patient=son)],
                            clinic=RIVERSIDE, kind="cancel")
    assert ("1. Your check-up on Tue 24 Nov at 11:00\n2. Emma's check-up on Tue 24 Nov at 12:00\n"
            "3. Your son's check-up on Thu 26 Nov at 11:00") in listed
    assert cancel_question(hers, clinic=RIVERSIDE, now=NOW).startswith(
        "Just to check: cancel Emma's check-up on Tue 24 Nov at 12:00?")
    assert cancel_question(mine, clinic=RIVERSIDE, now=NOW).startswith(
        "Just to check: cancel your Check-up on Tue 24 Nov at 11:00?")
    assert question(["first_name"], whose="your son's") == "What's your son's name?"
    assert question(["first_name", "last_name"], whose="Emma's") == \
        "What's Emma's full name, please (first name and surname)?"
    assert question(["date_of_birth"], whose="Emma's").startswith("What's Emma's date of birth?")
    assert question(["first_name"]) == "What name should I put the booking under?"
    assert parse_name("Emma's name is Emma Taylor") == ("Emma", "Taylor")
    assert parse_name("his name is Jack") == ("Jack", None)


@pytest.mark.parametrize("text, meaning", [
    ("yes", True), ("Yes please cancel it", True), ("yep", True), ("ok go ahead", True),
    ("no", False), ("no keep it", False), ("nope", False), ("don't", False),
    ("maybe", None), ("what time was it?", None),
])
def test_yes_or_no(text, meaning):
    assert answer_is_yes(text) is meaning


# -- FAQ ---------------------------------------------------------------------------------------


def test_every_topic_in_a_message_is_found_the_intents_first():
    assert topics_in("how much is lip filler and where are you?", intent="ask_price") == \
        ["price", "location"]
    assert topics_in("can I pay by card?", intent="ask_insurance") == ["payment"]
    assert topics_in("do you take denplan", intent="ask_insurance") == ["insurance"]
    assert topics_in("what time do you close today", intent="ask_hours") == ["hours"]


def test_faq_answers_come_from_clinic_configuration(diary_clinics):
    _, clinics = diary_clinics
    riverside = clinics["riverside"]
    both = answer("ask_price", clinic=riverside, text="how much is lip filler and where are you",
                  now=NOW)
    assert "Lip filler: £180-£320" in both and "12 River Walk" in both
    assert "Check-up: £55" in answer("ask_price", clinic=riverside, text="how much is it?",
                                     current_service=riverside.services[0], now=NOW)
    assert "free" in answer("ask_price", clinic=riverside, text="how much is whitening",
                            now=NOW)
    assert "Denplan" in answer("ask_insurance", clinic=riverside, text="insurance?", now=NOW)
    filler = next(s for s in riverside.services if s.slug == "lip-filler")
    assert "Avoid alcohol" in answer(None, clinic=riverside, text="what should I bring?",
                                     current_service=filler, now=NOW)


def test_opening_hours_today_in_clinic_time(diary_clinics):
    _, clinics = diary_clinics
    riverside, northside = clinics["riverside"], clinics["northside"]
    assert hours_answer(riverside, NOW).startswith("We're open now, until 18:00 today.")
    saturday_evening = datetime(2026, 11, 28, 18, 0, tzinfo=timezone.utc)
    assert hours_answer(riverside, saturday_evening).startswith(
        "We're closed now; we open Monday at 08:00.")
    sunday = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
    assert hours_answer(riverside, sunday).startswith(
        "We're closed today; we open tomorrow at 08:00.")
    early = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)
    assert hours_answer(riverside, early).startswith(
        "We're closed right now; we open again today at 08:00.")
    friday_night = datetime(2026, 11, 21, 1, 0, tzinfo=timezone.utc)  # Fri 20:00 in New York
    text = hours_answer(northside, friday_night)
    assert text.startswith("We're closed now; we open Monday at 7 AM.")
    assert "Thanksgiving" not in text and "Fri 7 AM-3 PM" in text


def test_date_of_birth_and_email_when_a_clinic_requires_them():
    from datetime import date

    from booking.dialogue.slot_choice import DAY_FIRST, MONTH_FIRST

    required = clinic(["email", "first_name", "date_of_birth"])
    assert missing_fields(required, contact()) == ["first_name", "email", "date_of_birth"]
    assert "14/03/1985" in question(["date_of_birth"], date_order=DAY_FIRST)
    assert "03/14/1985" in question(["date_of_birth"], date_order=MONTH_FIRST)
    today = date(2026, 11, 23)
    assert read_answer(["date_of_birth"], "3/4/1985", date_order=DAY_FIRST, today=today) == \
        {"date_of_birth": date(1985, 4, 3)}
    assert read_answer(["date_of_birth"], "3/4/1985", date_order=MONTH_FIRST, today=today) == \
        {"date_of_birth": date(1985, 3, 4)}
    assert read_answer(["date_of_birth"], "born 14 March 1985", today=today) == \
        {"date_of_birth": date(1985, 3, 14)}
    for not_a_birth_date in ("tomorrow", "14 March", "1/1/1850", "sam"):
        assert read_answer(["date_of_birth"], not_a_birth_date, today=today) is None
    assert read_answer(["email"], "it's Sam.Taylor@Example.com thanks", today=today) == \
        {"email": "sam.taylor@example.com"}
    assert read_answer(["email"], "sam at example", today=today) is None
