"""Answers to patients' common questions, from the clinic's configuration at run time.

A clinic changes its hours, prices or insurance answer in its YAML and the next answer uses
it; nothing is retrained. One message may ask two things ("how much is filler and where are
you?"), so every topic the text mentions is answered, the classified intent's first.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from booking.clinics.lookups import match_service
from booking.clinics.opening_hours import (
    closed_days,
    current_closing,
    is_closed_on,
    is_open_at,
    next_opening,
    weekly_table,
)
from booking.models import Clinic, Service, utcnow

DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
CURRENCY_SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€"}

TOPIC_FOR_INTENT = {"ask_hours": "hours", "ask_location": "location", "ask_price": "price",
                    "ask_insurance": "insurance"}
# Words that show a topic was asked about, for the second question in one message.
TOPIC_CUES = {
    "hours": r"\b(?:open(?:ing)?|close[sd]?|closing|hours|what time do you)\b",
    "location": r"\b(?:where (?:are|is)|address|located|location|find you|directions|"
                r"post ?code|zip)\b",
    "parking": r"\bpark(?:ing)?\b",
    "price": r"\b(?:how much|price[sd]?|pricing|costs?|fees?|charge)\b|[£$€]",
    "insurance": r"\b(?:insurance|insurer|insured|cover(?:ed)?|in[- ]network|denplan|"
                 r"aetna|cigna|bluecross|nhs)\b",
    "payment": r"\b(?:pay(?:ment|ing)?|card|cash|apple pay|google pay|finance|hsa|fsa)\b",
    "preparation": r"\b(?:bring|prepare|preparation|get ready|what (?:should|do) i wear|"
                   r"need to do before|before (?:my|the) (?:appointment|treatment))\b",
}
TOPIC_ORDER = ("hours", "location", "parking", "price", "insurance", "payment", "preparation")


def _clock(value: time, clinic: Clinic) -> str:
    if value == time.max:
        return "midnight"
    if clinic.country == "US":
        return f"{value:%I:%M %p}".lstrip("0").replace(":00 ", " ")
    return f"{value:%H:%M}"


def weekly_hours(clinic: Clinic) -> str:
    table = weekly_table(clinic.opening_hours)
    return ", ".join(
        f"{DAY_NAMES[day]} " + (" & ".join(f"{_clock(a, clinic)}-{_clock(b, clinic)}"
                                           for a, b in table[day]) or "closed")
        for day in range(7))


def hours_answer(clinic: Clinic, now: datetime) -> str:
    """Whether we are open now, today's hours, and the week."""
    zone = ZoneInfo(clinic.timezone)
    local = now.astimezone(zone)
    today = weekly_table(clinic.opening_hours)[local.weekday()]
    if is_closed_on(local.date(), closed_days(clinic.closures)):
        today = []
    if is_open_at(clinic, now):
        closing = current_closing(clinic, now)
        first = f"We're open now, until {_clock(closing.time(), clinic)} today."
    else:
        opening = next_opening(clinic, now)
        if opening is None:
            first = "We're closed now."
        elif opening.date() == local.date():
            first = ("We're closed right now; we open again today at "
                     f"{_clock(opening.time(), clinic)}.")
        elif opening.date() == local.date() + timedelta(days=1):
            first = (f"We're closed {'now' if today else 'today'}; we open tomorrow at "
                     f"{_clock(opening.time(), clinic)}.")
        else:
            first = (f"We're closed now; we open {opening:%A} at "
                     f"{_clock(opening.time(), clinic)}.")
    return f"{first} Our hours: {weekly_hours(clinic)}."


def _price_span(service: Service) -> str:
    symbol = CURRENCY_SYMBOLS.get(service.currency or "", "")
    if not service.price_max and not service.price_min:
        return "free"
    if service.price_max in (None, service.price_min):
        return f"{symbol}{service.price_min}"
    return f"{symbol}{service.price_min}-{symbol}{service.price_max}"


def price_answer(clinic: Clinic, service: Service | None) -> str:
    services = [service] if service else [s for s in clinic.services if s.price_min is not None]
    services = [s for s in services if s.price_min is not None]
    if not services:
        return f"Prices depend on your treatment; the {clinic.name} team can give you a quote."
    lines = "; ".join(f"{item.name}: {_price_span(item)}" for item in services)
    return f"Prices: {lines}. Your clinician confirms the exact cost."


def topics_in(text: str, *, intent: str | None = None) -> list[str]:
    """The questions a message asks, the classified intent's topic first."""
    lowered = text.lower()
    topics = [TOPIC_FOR_INTENT[intent]] if intent in TOPIC_FOR_INTENT else []
    if topics == ["insurance"] and re.search(TOPIC_CUES["payment"], lowered) and not re.search(
            TOPIC_CUES["insurance"], lowered):
        topics = ["payment"]  # one intent covers both; "can I pay by card?" is about payment
    for topic in TOPIC_ORDER:
        if topic not in topics and re.search(TOPIC_CUES[topic], lowered):
            topics.append(topic)
    return topics


def answer_topic(topic: str, *, clinic: Clinic, service: Service | None, now: datetime) -> str:
    faq = (clinic.settings or {}).get("faq") or {}
    if topic == "hours":
        return faq.get("hours") or hours_answer(clinic, now)
    if topic == "location":
        location = faq.get("location") or f"We're at {clinic.address}."
        return f"{location} {faq['parking']}" if faq.get("parking") else location
    if topic == "parking":
        return faq.get("parking") or f"We're at {clinic.address}; ask us about parking nearby."
    if topic == "price":
        return faq.get("price") or price_answer(clinic, service)
    if topic == "insurance":
        return faq.get("insurance") or "Ask us about insurance and payment when you come in."
    if topic == "preparation":
        if service is not None:
            notes = (service.preparation_notes or "").strip()
            return (f"For {service.name}: {notes}" if notes
                    else f"Nothing special to prepare for {service.name}.") + \
                " Please arrive 5 minutes early."
        return "Please arrive 5 minutes early; we'll text you anything your treatment needs."
    if topic == "payment":
        return faq.get("payment") or faq.get("insurance") or \
            "Ask us about payment options when you come in."
    return f"The {clinic.name} team can answer that; call us on {clinic.voice_number}."


def answer(intent: str | None, *, clinic: Clinic, text: str = "", service: str | None = None,
           current_service: Service | None = None, now: datetime | None = None) -> str:
    """Every question the message asks, answered from clinic config, in one reply.

    `service` is what the patient named ("lip filler"); `current_service` the one being booked,
    used for "how much is it?".
    """
    now = now or utcnow()
    named = match_service(services=clinic.services, text=" ".join(filter(None, [service, text])))
    topics = topics_in(text, intent=intent)
    if "location" in topics and "parking" in topics:
        topics.remove("parking")  # the location answer includes parking
    if not topics:
        return answer_topic("other", clinic=clinic, service=None, now=now)
    answers = []
    for topic in topics:
        reply = answer_topic(topic, clinic=clinic, service=named or current_service, now=now)
        if reply not in answers:
            answers.append(reply)
    return " ".join(answers)
