"""Answers to patients' common questions, from the clinic's configuration at run time."""

from __future__ import annotations

from datetime import datetime

from booking.clinics import match_service
from booking.models import Clinic, utcnow
from booking.opening_hours import is_open_at, next_opening

DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def weekly_hours(clinic: Clinic) -> str:
    by_day: dict[int, list[str]] = {}
    for hours in clinic.opening_hours:
        by_day.setdefault(hours.weekday, []).append(f"{hours.opens:%H:%M}-{hours.closes:%H:%M}")
    return ", ".join(f"{DAY_NAMES[day]} {' & '.join(by_day[day])}" if day in by_day
                     else f"{DAY_NAMES[day]} closed" for day in range(7))


def hours_answer(clinic: Clinic, now: datetime) -> str:
    if is_open_at(clinic, now):
        today = "We're open now."
    else:
        opening = next_opening(clinic, now)
        today = (f"We're closed now; we open {opening:%A} at {opening:%H:%M}." if opening
                 else "We're closed now.")
    return f"{today} Our hours: {weekly_hours(clinic)}."


def price_answer(clinic: Clinic, service_mention: str | None) -> str:
    service = match_service(services=clinic.services, text=service_mention or "")
    services = [service] if service else [s for s in clinic.services if s.price_min is not None]
    if not services:
        return f"Prices depend on your treatment; the {clinic.name} team can give you a quote."
    lines = []
    for item in services:
        if item.price_min is None:
            continue
        symbol = {"GBP": "£", "USD": "$", "EUR": "€"}.get(item.currency or "", "")
        span = (f"{symbol}{item.price_min}" if item.price_max in (None, item.price_min)
                else f"{symbol}{item.price_min}-{symbol}{item.price_max}")
        lines.append(f"{item.name}: {span}")
    return "Prices: " + "; ".join(lines) + ". Your clinician confirms the exact cost."


def answer(intent: str | None, *, clinic: Clinic, service: str | None = None,
           now: datetime | None = None) -> str:
    now = now or utcnow()
    faq = (clinic.settings or {}).get("faq", {})
    if intent == "ask_hours":
        return hours_answer(clinic, now)
    if intent == "ask_location":
        return faq.get("location", f"We're at {clinic.address}.")
    if intent == "ask_price":
        return faq.get("price", price_answer(clinic, service))
    if intent == "ask_insurance":
        return faq.get("insurance", "Ask us about payment options when you come in.")
    return f"The {clinic.name} team can answer that; call us on {clinic.voice_number}."



