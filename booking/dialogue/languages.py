"""What a patient writing wholly in Spanish is told, per the clinic's `settings.other_language`.

The bot reads and writes English. Rather than ask, in English, for a rephrase the patient may
not understand, it says in both languages that the clinic answers in English, or, when the
clinic has someone who speaks it (`hand_over: true`), that the team has the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from booking.clinics.config import OtherLanguageSettings
from booking.models import Clinic


@dataclass(frozen=True)
class OtherLanguagePolicy:
    hand_over: bool
    reply: str


def other_language_policy(clinic: Clinic) -> OtherLanguagePolicy:
    """The clinic's choice; never raises (a bad settings row falls back to the English reply)."""
    try:
        settings = OtherLanguageSettings.parse_obj(
            (clinic.settings or {}).get("other_language") or {})
    except ValidationError:
        settings = OtherLanguageSettings()
    if settings.reply:
        return OtherLanguagePolicy(hand_over=settings.hand_over, reply=settings.reply)
    if settings.hand_over:
        reply = (f"Gracias. Hemos pasado su mensaje al equipo de {clinic.name}. "
                 f"Thanks, we've passed your message to the {clinic.name} team.")
    else:
        reply = (f"Lo sentimos: {clinic.name} solo puede responder en inglés por mensaje. "
                 "Escríbanos en inglés o llame a la clínica. "
                 f"Sorry, {clinic.name} can only reply in English here.")
    return OtherLanguagePolicy(hand_over=settings.hand_over, reply=reply)
