"""Reading who an appointment is for, matching them to the people on file, and the wording."""

from __future__ import annotations

import pytest

from booking.dialogue.family import (
    SELF,
    Person,
    candidates,
    choose_listed,
    label,
    needs_asking,
    possessive,
    read_people,
    who_question,
    whose_treatment,
)
from booking.models import Patient

SERVICE_WORDS = {"botox", "check", "up", "hygiene", "filler", "lip"}


@pytest.mark.parametrize("text, people", [
    ("can I also book a check up for my daughter Emma?", [Person("daughter", "Emma")]),
    ("it's for my husband John", [Person("husband", "John")]),
    ("for my son", [Person("son")]),
    ("for me and my son", [Person(SELF), Person("son")]),
    ("a check-up for my son and me please", [Person("son"), Person(SELF)]),
    ("my wife and I both need a clean", [Person("wife"), Person(SELF)]),
    ("for my daughter, Emma Taylor", [Person("daughter", "Emma", "Taylor")]),
    ("my kids Emma and Jack need check ups", [Person("child", "Emma"),
                                               Person("child", "Jack")]),
    ("check ups for my two boys", [Person("son"), Person("son")]),
    ("for Emma and Jack on Thursday", [Person(None, "Emma"), Person(None, "Jack")]),
    ("cancel Emma's appointment", [Person(None, "Emma")]),
    ("move my son's check up to Friday", [Person("son")]),
    ("could I book my mum in for a hygiene appointment", [Person("mother")]),
    ("book for my little boy", [Person("son")]),
    ("the check up for emma", [Person(None, "Emma")]),
    ("my son and daughter need check ups", [Person("son"), Person("daughter")]),
    ("book my mum and dad in together", [Person("mother"), Person("father")]),
])
def test_who_the_message_names(text, people):
    assert read_people(text, known_names=["Emma"], not_names=SERVICE_WORDS) == people


@pytest.mark.parametrize("text", [
    "book me a check-up", "can I book for Thursday", "It's Sam Taylor", "cancel my appointment",
    "for Botox please", "anything for Dr Patel?", "What's the earliest for tomorrow",
    "Let's do the second one", "for a check up", "yes please", "Monday's fine",
    "the second one works for me", "any time for me is fine", "that's too early for me",
])
def test_no_person_in_ordinary_booking_messages(text):
    assert read_people(text, known_names=["Emma"], not_names=SERVICE_WORDS) == []


def family() -> list[Patient]:
    return [Patient(id=1, relation=SELF, first_name="Sam"),
            Patient(id=2, relation="daughter", first_name="Emma"),
            Patient(id=3, relation="son", first_name=None)]


def test_people_are_matched_by_name_then_by_relation():
    sam, emma, son = family()
    assert candidates(Person(SELF), family())[0].id == sam.id
    assert [p.id for p in candidates(Person(None, "emma"), family())] == [emma.id]
    assert [p.id for p in candidates(Person("daughter"), family())] == [emma.id]
    # A nameless son on file is the son now named; a new name with no relation is new.
    assert [p.id for p in candidates(Person("son", "Jack"), family())] == [son.id]
    assert candidates(Person(None, "Lily"), family()) == []
    assert candidates(Person("mother"), family()) == []


def test_who_to_ask_only_when_someone_besides_the_owner_is_on_file():
    assert not needs_asking([])
    assert not needs_asking([Patient(relation=SELF, first_name="Sam")])
    assert needs_asking([Patient(relation="daughter", first_name="Emma")])
    assert needs_asking(family())


def test_wording_names_the_person():
    sam, emma, son = family()
    assert (label(sam), label(emma), label(son)) == ("you", "Emma", "your son")
    assert (possessive(sam), possessive(emma), possessive(son)) == ("your", "Emma's",
                                                                    "your son's")
    assert possessive(Patient(relation="son", first_name="James")) == "James'"
    assert whose_treatment(sam, "Check-up") == "your Check-up"
    assert whose_treatment(emma, "Check-up") == "Emma's check-up"
    assert whose_treatment(son, "MRI scan") == "your son's MRI scan"
    question = who_question(family())
    assert "1. You (Sam)\n2. Emma\n3. your son" in question
    assert choose_listed("2", family()).id == emma.id
    assert choose_listed("Emma", family()) is None


def test_a_son_or_daughter_may_be_a_child_on_file():
    kids = [Patient(id=4, relation="child", first_name="Emma"),
            Patient(id=5, relation="son", first_name="Leo")]
    assert [p.id for p in candidates(Person("son"), kids)] == [4, 5]
    assert [p.id for p in candidates(Person("child"), kids)] == [4, 5]
    assert [p.id for p in candidates(Person("daughter"), kids)] == [4]
    assert candidates(Person("mother"), kids) == []
