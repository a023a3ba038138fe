"""Cues read from a patient's words: leaving it for now, later or sooner, booking words, and
questions asked alongside a booking step."""

from __future__ import annotations

import pytest

from booking.dialogue.cues import (
    asks_for_another_day,
    asks_for_earlier,
    asks_for_later,
    done_for_now,
    mentions_booking,
    side_questions,
    wants_to_book,
    wrong_number,
)


@pytest.mark.parametrize("text", [
    "Can I book a check-up?", "booking please", "I'd like to BOOK in",
    "can i come in tomorrow", "Can I get an appointment this week?",
])
def test_wants_to_book(text):
    assert wants_to_book(text)


@pytest.mark.parametrize("text", [
    "I have an appointment on Friday", "bookings are annoying", "where are you?", "",
])
def test_not_asking_to_book(text):
    assert not wants_to_book(text)


@pytest.mark.parametrize("text", [
    "no thanks", "No thank you", "not now", "Maybe later", "I'll call you", "ill ring tomorrow",
    "nevermind", "never mind, all good", "that's all", "Don't worry about it", "I'm fine",
    "not interested", "no need", "forget it",
])
def test_done_for_now(text):
    assert done_for_now(text)


@pytest.mark.parametrize("text", ["yes please", "the second one", "nothing later?", "no", "2"])
def test_not_done_for_now(text):
    assert not done_for_now(text)


@pytest.mark.parametrize("text", [
    "anything later?", "after those please", "something further out", "Later in the week",
])
def test_asks_for_later(text):
    assert asks_for_later(text)
    assert not asks_for_earlier(text)


@pytest.mark.parametrize("text", ["anything earlier?", "SOONER please", "before that?"])
def test_asks_for_earlier(text):
    assert asks_for_earlier(text)
    assert not asks_for_later(text)


def test_neither_later_nor_earlier():
    assert not asks_for_later("Thursday at 10") and not asks_for_earlier("Thursday at 10")


@pytest.mark.parametrize("text", [
    "an appointment thursday", "can I come in at 5", "any slot on Monday", "to see someone",
])
def test_mentions_booking(text):
    assert mentions_booking(text)


def test_no_booking_words():
    assert not mentions_booking("thursday afternoon")


@pytest.mark.parametrize("text,topics", [
    ("yes, how much is it?", ["price"]),
    ("What's the cost", ["price"]),
    ("what does it cost and is there parking?", ["price", "parking"]),
    ("Where are you? Do you take Denplan", ["location", "insurance"]),
    ("parking and how much", ["price", "parking"]),  # always in the same order
    ("are you in-network for Aetna?", ["insurance"]),
    ("the 2nd one please", []),
])
def test_side_questions(text, topics):
    assert side_questions(text) == topics


@pytest.mark.parametrize("text", [
    "wrong number sorry", "You have the wrong number.", "wrong person", "I never called you",
    "I didn't ring a clinic", "not the person you're looking for",
])
def test_wrong_number(text):
    assert wrong_number(text)


@pytest.mark.parametrize("text", [
    "what's your number", "my number is wrong on my records", "I called you yesterday", "",
])
def test_not_a_wrong_number(text):
    assert not wrong_number(text)


@pytest.mark.parametrize("text", [
    "can I move my appointment to a different day", "another day please",
    "rebook me on another date", "not that day", "not on the same day",
])
def test_asks_for_another_day(text):
    assert asks_for_another_day(text)


@pytest.mark.parametrize("text", ["can I move it to later that day", "another time please"])
def test_not_asking_for_another_day(text):
    assert not asks_for_another_day(text)
