"""What the messages Ringback starts say: a follow-up after an unanswered text-back, a reminder
of an appointment, an offer to rebook after a no-show or a cancellation.

Templates are the clinic's own where it has them (`settings.templates`, Jinja2 in a sandbox, as
for the text-back), else the defaults here. Each message must fit the recipient's length limit
(160 characters for US health care): the composer tries the fullest wording first and drops
detail (address, clinician, how to change) until it fits; the gate still checks the result.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from booking.calls.text_back import describe_opening, render, with_clinic_and_opt_out
from booking.clinics.opening_hours import is_open_at, next_opening
from booking.dialogue.appointment_booking import clock_text, describe, describe_day
from booking.dialogue.family import whose_treatment
from booking.messaging.outbox import text_length
from booking.models import Appointment, Clinic, Contact

DEFAULT_TEMPLATES = {
    "follow_up": (
        "{% if first_name %}Hi {{ first_name }}, just{% else %}Just{% endif %} checking in after "
        "your call to {{ clinic_name }}. {% if step > 0 %}We're still happy to help: {% endif %}"
        "Reply YES to book{% if next_opening %} (we open {{ next_opening }}){% endif %}, or tell "
        "us what you need. Reply STOP to opt out."
    ),
    "reminder": (
        "{% if first_name %}Hi {{ first_name }}, reminder{% else %}Reminder{% endif %}: "
        "{{ what }}{% if clinician %} with {{ clinician }}{% endif %} at {{ clinic_name }} "
        "on {{ when }}{% if address %}, {{ address }}{% endif %}. Reply YES to confirm"
        "{% if how_to_change %} or tell us to move or cancel{% endif %}. Reply STOP to opt out."
    ),
    # Several people on one phone with appointments the same day: one message.
    "reminder_family": (
        "{% if first_name %}Hi {{ first_name }}, reminder{% else %}Reminder{% endif %} for "
        "{{ day }} at {{ clinic_name }}{% if address %}, {{ address }}{% endif %}: "
        "{{ visits }}. Reply YES to confirm{% if how_to_change %} or tell us what to move or "
        "cancel{% endif %}. Reply STOP to opt out."
    ),
    "rebooking_no_show": (
        "{% if first_name %}Hi {{ first_name }}, we{% else %}We{% endif %} missed you at "
        "{{ clinic_name }} for your {{ service }}. Would you like a new time? Reply YES and "
        "we'll find one. Reply STOP to opt out."
    ),
    "rebooking_cancelled": (
        "{% if first_name %}Hi {{ first_name }}, would{% else %}Would{% endif %} you like to "
        "book another {{ service }} at {{ clinic_name }}? Reply YES and we'll find a time. "
        "Reply STOP to opt out."
    ),
}


def _known_name(contact: Contact) -> str | None:
    """A caller is greeted by name only when the clinic knows them (as in the text-back)."""
    return contact.first_name if contact.is_known_patient else None


def _fitting(clinic: Clinic, key: str, variants: list[dict], max_chars: int | None) -> str:
    """The first variant (fullest first) whose text fits; else the shortest one."""
    text = ""
    for values in variants:
        text = with_clinic_and_opt_out(render(clinic, key, values, defaults=DEFAULT_TEMPLATES),
                                       clinic=clinic)
        if max_chars is None or text_length(text) <= max_chars:
            return text
    return text


def follow_up(*, clinic: Clinic, contact: Contact, step: int, now: datetime,
              max_chars: int | None) -> str:
    opening = None if is_open_at(clinic, now) else next_opening(clinic, now)
    base = {"clinic_name": clinic.name, "step": step,
            "next_opening": (describe_opening(opening, now.astimezone(ZoneInfo(clinic.timezone)))
                             if opening else "")}
    return _fitting(clinic, "follow_up", [
        {**base, "first_name": _known_name(contact)},
        {**base, "first_name": None},
        {**base, "first_name": None, "next_opening": "", "step": 0},
    ], max_chars)


def reminder(*, clinic: Clinic, contact: Contact, appointments: list[Appointment],
             max_chars: int | None) -> str:
    """One appointment's reminder, or one for the several a phone's family has that day."""
    first = appointments[0]
    # Whoever booked gave their name: a reminder may use it.
    full = {"clinic_name": clinic.name, "first_name": contact.first_name,
            "address": clinic.address, "how_to_change": True}
    if len(appointments) == 1:
        key = "reminder"
        full.update(what=whose_treatment(first.patient, first.service.name),
                    when=describe(first.starts_at, clinic=clinic),
                    clinician=first.provider.name if first.provider else None)
    else:
        key = "reminder_family"
        zone = ZoneInfo(clinic.timezone)
        full.update(day=describe_day(first.starts_at.astimezone(zone).date(), clinic=clinic),
                    visits=" and ".join(
                        f"{whose_treatment(a.patient, a.service.name)} at "
                        f"{clock_text(a.starts_at.astimezone(zone), clinic=clinic)}"
                        for a in appointments),
                    clinician=None)
    # Least needed first: the address is in the booking confirmation.
    shorter: list[Callable[[dict], dict]] = [
        lambda v: {**v, "address": None},
        lambda v: {**v, "first_name": None},
        lambda v: {**v, "clinician": None},
        lambda v: {**v, "how_to_change": False},
    ]
    variants = [full]
    for shorten in shorter:
        variants.append(shorten(variants[-1]))
    return _fitting(clinic, key, variants, max_chars)


def rebooking_offer(*, clinic: Clinic, contact: Contact, appointment: Appointment,
                    max_chars: int | None) -> str:
    key = "rebooking_no_show" if appointment.status.value == "no_show" else "rebooking_cancelled"
    values = {"clinic_name": clinic.name, "first_name": contact.first_name,
              "service": appointment.service.name}
    return _fitting(clinic, key, [values, {**values, "first_name": None}], max_chars)
