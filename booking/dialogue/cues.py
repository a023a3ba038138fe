"""Cues in a patient's words that steer a booking: "no thanks", "later", "sooner", "book", and
questions asked alongside ("how much is it?"). Plain text in, a yes/no or a topic out; the
actions decide what to do with them.
"""

from __future__ import annotations

import re

_WANTS_TO_BOOK = re.compile(r"\b(?:book|booking)\b|\bcan i (?:come in|get an appointment)\b",
                            re.IGNORECASE)
_DONE_FOR_NOW = re.compile(
    r"\b(?:no thanks?|no thank you|not now|not at the moment|leave it|forget it|never ?mind|"
    r"don'?t worry|i'?m (?:fine|ok|good)|i'?ll (?:call|ring)|maybe later|not interested|"
    r"all good|that'?s all|no need)\b", re.IGNORECASE)
# Relative to the times just offered.
_LATER = re.compile(r"\b(?:later|after th(?:at|ose|em)|further (?:out|ahead))\b", re.IGNORECASE)
_EARLIER = re.compile(r"\b(?:earlier|sooner|before th(?:at|ose|em))\b", re.IGNORECASE)
_BOOKING_WORDS = re.compile(r"\b(?:book|booking|appointment|come in|see someone|slot)\b",
                            re.IGNORECASE)
# "Can't make it": to a reminder, a change is needed (a cancellation, unless a time is named).
_CANNOT_COME = re.compile(
    r"\b(?:can'?t|cannot|can not|won'?t|will not|unable to|not able to|no longer)\s+"
    r"(?:be able to\s+)?(?:make|come|attend|do|go)\b|\b(?:won'?t|not) make it\b",
    re.IGNORECASE)
# Someone who never called the clinic: they get an apology and no more texts.
_WRONG_NUMBER = re.compile(
    r"\bwrong (?:number|person|phone)\b|\bnot (?:the person|who) you(?:'re| are) "
    r"(?:looking for|after)\b|\bi (?:never|didn'?t|did not) (?:call|ring|phone)(?:ed)? (?:you|"
    r"a clinic|any clinic)\b", re.IGNORECASE)
# Moving an appointment "to a different day": nothing on the day it is now.
_ANOTHER_DAY = re.compile(r"\b(?:different|another|other|new|separate) (?:day|date)\b|"
                          r"\bnot (?:on )?(?:that|the same) day\b", re.IGNORECASE)
# Questions worth answering even when the message is mainly about booking.
_SIDE_QUESTIONS = {
    "price": re.compile(r"\b(?:how much|what(?:'s| is| does) (?:the |it )?cost|price)\b", re.I),
    "location": re.compile(r"\b(?:where are you|your address|where is the clinic)\b", re.I),
    "insurance": re.compile(r"\b(?:insurance|denplan|in[- ]network)\b", re.I),
    "parking": re.compile(r"\bparking\b", re.I),
}


def wants_to_book(text: str) -> bool:
    """"Can I book a check-up?", "booking please", "can I come in tomorrow?"."""
    return bool(_WANTS_TO_BOOK.search(text))


def done_for_now(text: str) -> bool:
    """"No thanks", "maybe later", "I'll call": the patient is leaving it for now."""
    return bool(_DONE_FOR_NOW.search(text))


def wrong_number(text: str) -> bool:
    """"Wrong number sorry", "I never called you": not a patient of this clinic."""
    return bool(_WRONG_NUMBER.search(text))


def asks_for_another_day(text: str) -> bool:
    """"Can I move my appointment to a different day": not the day it is booked for."""
    return bool(_ANOTHER_DAY.search(text))


def asks_for_later(text: str) -> bool:
    """"Anything later?", "after those": later than the times just offered."""
    return bool(_LATER.search(text))


def asks_for_earlier(text: str) -> bool:
    """"Anything sooner?", "before that": earlier than the times just offered."""
    return bool(_EARLIER.search(text))


def mentions_booking(text: str) -> bool:
    """Booking words ("appointment", "come in", "slot"), with or without a request."""
    return bool(_BOOKING_WORDS.search(text))


def cannot_come(text: str) -> bool:
    return bool(_CANNOT_COME.search(text))


def side_questions(text: str) -> list[str]:
    """The FAQ topics asked about alongside a booking step ("yes, how much is it?"), in the
    order they are answered: price, location, insurance, parking."""
    return [topic for topic, cue in _SIDE_QUESTIONS.items() if cue.search(text)]
