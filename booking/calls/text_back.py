"""The first message after a missed call, worded from the clinic's templates.

Templates are Jinja2, rendered in a sandbox because clinics write them. Every first message names
the practice and says how to opt out: carriers filter business texts that do not.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
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
# A WhatsApp Content API variable in an approved template: {{1}}, {{ 2 }}.
_TEMPLATE_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")

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


def render(clinic: Clinic, key: str, values: dict, *, defaults: dict[str, str]) -> str:
    """The clinic's template `key` (its own, else the default), rendered with `values`."""
    source = (clinic.settings or {}).get("templates", {}).get(key) or defaults[key]
    try:
        return _compiled(source).render(**values).strip()
    except TemplateError:
        # A clinic's broken template must not cost a patient their message.
        logger.warning("clinic %s: template %s does not render; using the default",
                       clinic.slug, key)
        return _compiled(defaults[key]).render(**values).strip()


def with_clinic_and_opt_out(text: str, *, clinic: Clinic) -> str:
    """Carriers filter business texts that do not name the sender or say how to opt out."""
    if clinic.name not in text:
        text = f"{clinic.name}: {text}"
    if "STOP" not in text:
        text = f"{text} {OPT_OUT_HINT}"
    return text


def _next_opening_words(clinic: Clinic, now: datetime) -> str | None:
    """When a closed clinic opens ('8:00 tomorrow'); None while open or with nothing ahead."""
    if is_open_at(clinic, now):
        return None
    opening = next_opening(clinic, now)
    return (describe_opening(opening, now.astimezone(ZoneInfo(clinic.timezone)))
            if opening else None)


def compose(*, clinic: Clinic, contact: Contact, now: datetime) -> str:
    opening = _next_opening_words(clinic, now)
    key = "text_back_closed" if opening else "text_back_open"
    values = {"clinic_name": clinic.name,
              "first_name": contact.first_name if contact.is_known_patient else None,
              "next_opening": opening or ""}
    return with_clinic_and_opt_out(render(clinic, key, values, defaults=DEFAULT_TEMPLATES),
                                   clinic=clinic)


@dataclass(frozen=True)
class WhatsAppTemplate:
    content_sid: str
    content_variables: dict[str, str]
    body: str  # the approved text with the variables filled in: what the patient reads


def whatsapp_template(*, clinic: Clinic, contact: Contact, now: datetime
                      ) -> WhatsAppTemplate | None:
    """The clinic's approved WhatsApp text-back for now (open or closed), or None without one.

    Outside WhatsApp's 24-hour window only an approved template is delivered; it carries what
    the free-form text would (closed, and when we open), and its filled-in text is stored.
    """
    settings = (clinic.settings or {}).get("whatsapp") or {}
    opening = _next_opening_words(clinic, now)
    key = "text_back_closed" if opening else "text_back"
    content_sid, approved = settings.get(f"{key}_content_sid"), settings.get(f"{key}_body")
    if not (content_sid and approved):
        return None
    first_name = contact.first_name if contact.is_known_patient else ""
    variables = {"1": clinic.name, "2": first_name or "there"}
    if opening:
        variables["3"] = opening
    body = _TEMPLATE_VARIABLE.sub(lambda found: variables.get(found[1], ""), approved)
    return WhatsAppTemplate(content_sid=content_sid, content_variables=variables, body=body)
