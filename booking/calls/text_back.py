"""The first message after a missed call, worded from the clinic's templates.

Templates are Jinja2, rendered in a sandbox because clinics write them. Every first message names
the practice and says how to opt out: carriers filter business texts that do not.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from jinja2 import Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from booking.clinics.opening_hours import is_open_at, next_opening
from booking.models import Clinic, Contact

DEFAULT_TEMPLATES = {
    "text_back_open": (
        "{% if first_name %}Hi {{ first_name }}, sorry{% else %}Sorry{% endif %} we missed your "
        "call at {{ clinic_name }}. Reply YES to book an appointment, or tell us what you need "
        "and we'll help by text. Reply STOP to opt out."
    ),
    "text_back_closed": (
        "{% if first_name %}Hi {{ first_name }}, sorry{% else %}Sorry{% endif %} we missed your "
        "call at {{ clinic_name }}. We're closed right now and open again at {{ next_opening }}. "
        "Reply YES to book an appointment, or tell us what you need. Reply STOP to opt out."
    ),
}
OPT_OUT_HINT = "Reply STOP to opt out."

_environment = SandboxedEnvironment(autoescape=False, keep_trailing_newline=False)
logger = logging.getLogger(__name__)


@lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    # Compiling is the slow part of rendering; a clinic's few templates are compiled once.
    return _environment.from_string(source)


def describe_opening(opening: datetime, now_local: datetime) -> str:
    """'8:00 today', '8:00 tomorrow' or '9:00 on Monday 3 March', in clinic-local time."""
    clock = f"{opening.hour}:{opening.minute:02d}"
    days_ahead = (opening.date() - now_local.date()).days
    if days_ahead == 0:
        return f"{clock} today"
    if days_ahead == 1:
        return f"{clock} tomorrow"
    if days_ahead < 7:
        return f"{clock} on {opening:%A}"
    return f"{clock} on {opening:%A} {opening.day} {opening:%B}"


def compose(*, clinic: Clinic, contact: Contact, now: datetime) -> str:
    templates = {**DEFAULT_TEMPLATES, **(clinic.settings or {}).get("templates", {})}
    now_local = now.astimezone(ZoneInfo(clinic.timezone))
    open_now = is_open_at(clinic, now)
    opening = None if open_now else next_opening(clinic, now)
    key = "text_back_open" if open_now or opening is None else "text_back_closed"
    values = {"clinic_name": clinic.name,
              "first_name": contact.first_name if contact.is_known_patient else None,
              "next_opening": describe_opening(opening, now_local) if opening else ""}
    try:
        text = _compiled(templates[key]).render(**values).strip()
    except TemplateError:
        # A clinic's broken template must not cost a patient their text-back.
        logger.warning("clinic %s: template %s does not render; using the default",
                       clinic.slug, key)
        text = _compiled(DEFAULT_TEMPLATES[key]).render(**values).strip()
    if clinic.name not in text:
        text = f"{clinic.name}: {text}"
    if "STOP" not in text:
        text = f"{text} {OPT_OUT_HINT}"
    return text
