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


def asks_for_later(text: str) -> bool:
    """"Anything later?", "after those": later than the times just offered."""
    return bool(_LATER.search(text))


def asks_for_earlier(text: str) -> bool:
    """"Anything sooner?", "before that": earlier than the times just offered."""
    return bool(_EARLIER.search(text))


def mentions_booking(text: str) -> bool:
    """Booking words ("appointment", "come in", "slot"), with or without a request."""
    return bool(_BOOKING_WORDS.search(text))


def side_questions(text: str) -> list[str]:
    """The FAQ topics asked about alongside a booking step ("yes, how much is it?"), in the
    order they are answered: price, location, insurance, parking."""
    return [topic for topic, cue in _SIDE_QUESTIONS.items() if cue.search(text)]
