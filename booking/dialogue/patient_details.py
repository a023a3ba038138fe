"""Who is coming: ask a new patient only what the clinic requires, and read their answers.

A clinic lists what it needs in `settings.required_patient_fields` (default: first name).
Known patients, and anyone who already gave a detail, are not asked again. Names and the date
of birth are the person's (a `Patient`: the phone's owner or someone they book for); the email
address is the phone owner's (the contact's).
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, time

import dateparser

from booking.dialogue.slot_choice import DAY_FIRST, MONTH_FIRST
from booking.models import Clinic, Contact, Patient

logger = logging.getLogger(__name__)

DEFAULT_REQUIRED = ("first_name",)
SUPPORTED_FIELDS = ("first_name", "last_name", "date_of_birth", "email")
NAME_FIELDS = ("first_name", "last_name")
CONTACT_FIELDS = ("email",)
OLDEST_BIRTH_YEAR = 1900
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_BIRTH_DATE_PATTERNS = (
    re.compile(r"\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b"),
    re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{2,4}}\b", re.I),
    re.compile(rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}}\b", re.I),
)
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)

_NAME_PREFIX = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|yes|yeah|ok|okay|sure)\b[,!.\s]*)*"
    r"(?:it'?s|i'?m|i am|my name is|my name'?s|name'?s|name is|this is|call me|"
    r"put it under|under|book it under|it is|"
    r"(?:his|her|their|[a-z]+'s) (?:full )?name(?: is|'s)|he'?s|she'?s|he is|she is)?\s*",
    re.IGNORECASE,
)
# A sign-off after the name ("Sam thanks", "Jo x"), never the end of the name itself ("Rita").
_NAME_SUFFIX = re.compile(r"(?:[,.!\s]+(?:thanks|thank you|cheers|please|pls|ta|x+))?[.!\s]*$",
                          re.IGNORECASE)
_NAME_WORD = re.compile(r"[^\W\d_][\w'’-]*")
# Replies that are not names, however they are capitalised.
NOT_NAMES = frozenset({
    "yes", "yeah", "yep", "no", "nope", "nah", "ok", "okay", "sure", "thanks", "thank", "cheers",
    "hi", "hello", "hey", "bye", "goodbye", "please", "what", "why", "how", "when", "where",
    "who", "which", "the", "a", "an", "and", "or", "but", "none", "neither", "first", "second",
    "third", "one", "two", "three", "today", "tomorrow", "morning", "afternoon", "evening",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "book",
    "booking", "appointment", "cancel", "reschedule", "stop", "help", "human", "person",
    "someone", "sorry", "maybe", "pardon", "urgent", "price", "cost", "hours", "open", "address",
    "insurance",
})


def required_fields(clinic: Clinic) -> list[str]:
    required = (clinic.settings or {}).get("required_patient_fields") or list(DEFAULT_REQUIRED)
    unknown = [field for field in required if field not in SUPPORTED_FIELDS]
    if unknown:  # the clinic loader accepts any name; only these can be asked by text
        logger.warning("clinic %s requires unsupported patient fields %s", clinic.slug, unknown)
    return [field for field in required if field in SUPPORTED_FIELDS]


def missing_fields(clinic: Clinic, patient: Patient | Contact,
                   contact: Contact | None = None) -> list[str]:
    """The required details we do not have yet, names first; none for a known patient.
    The email address is read from `contact` when given (the phone's owner)."""
    if patient.is_known_patient:
        return []

    def holder(field: str):
        return contact if contact is not None and field in CONTACT_FIELDS else patient

    missing = [field for field in required_fields(clinic)
               if not getattr(holder(field), field, None)]
    return sorted(missing, key=lambda field: field not in NAME_FIELDS)


def question(missing: list[str], *, date_order: str = DAY_FIRST, whose: str = "your") -> str:
    """The question for the next missing detail (a full name is asked for in one go);
    `whose` is "your", or "Emma's" / "your son's" when booking for someone else."""
    if {"first_name", "last_name"} <= set(missing):
        return f"What's {whose} full name, please (first name and surname)?"
    if "first_name" in missing:
        if whose == "your":
            return "What name should I put the booking under?"
        return f"What's {whose} name?"
    if "last_name" in missing:
        return f"And what's {whose} surname, please?"
    if missing and missing[0] == "date_of_birth":
        example = "03/14/1985" if date_order == MONTH_FIRST else "14/03/1985"
        return f"What's {whose} date of birth? (for example {example})"
    return "What's your email address?"


def parse_birth_date(text: str, *, date_order: str, today: date) -> date | None:
    """A date of birth written the clinic's way ("14/03/1985", "14 March 1985"), or None."""
    # dateparser reads a date, not a sentence around one: pick the date out first.
    fragment = next((m.group(0) for pattern in _BIRTH_DATE_PATTERNS
                     if (m := pattern.search(text))), text.strip())
    parsed = dateparser.parse(fragment, languages=["en"], settings={
        "DATE_ORDER": date_order, "PREFER_DATES_FROM": "past",
        "RELATIVE_BASE": datetime.combine(today, time(12)),
        "REQUIRE_PARTS": ["day", "month", "year"]})
    if parsed is None or parsed.year < OLDEST_BIRTH_YEAR or parsed.date() >= today:
        return None
    return parsed.date()


def parse_name(text: str) -> tuple[str, str | None] | None:
    """('Sam', 'Taylor') from "It's Sam Taylor"; None when the reply does not look like a name."""
    cleaned = _NAME_SUFFIX.sub("", _NAME_PREFIX.sub("", text.strip(), count=1)).strip(" .,!")
    words = cleaned.split()
    if not words or len(words) > 4 or not all(_NAME_WORD.fullmatch(w) for w in words):
        return None
    if any(word.lower().strip("'’") in NOT_NAMES for word in words):
        return None
    first, *rest = (word[:1].upper() + word[1:] for word in words)
    return first, " ".join(rest) or None


def read_answer(missing: list[str], text: str, *, date_order: str = DAY_FIRST,
                today: date | None = None) -> dict | None:
    """The details this reply gives, as contact fields; None when it gives none of them."""
    if missing and missing[0] == "date_of_birth":
        born = parse_birth_date(text, date_order=date_order, today=today or date.today())
        return {"date_of_birth": born} if born else None
    if missing and missing[0] == "email":
        found = _EMAIL.search(text)
        return {"email": found.group(0).lower()} if found else None
    name = parse_name(text)
    if name is None:
        return None
    first, last = name
    if missing and missing[0] == "last_name" and "first_name" not in missing and last is None:
        return {"last_name": first}  # asked for the surname alone: "Taylor"
    if "last_name" in missing and "first_name" in missing and last is None:
        return {"first_name": first}  # the surname is asked for next
    details = {"first_name": first}
    if last:
        details["last_name"] = last
    return details
