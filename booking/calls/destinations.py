"""Which callers a clinic may text back: numbers of the countries it allows, never costly ones.

SMS pumping runs up a clinic's bill by making it text numbers whose owner is paid per message
received: foreign ranges with high termination rates, premium-rate and shared-cost numbers.
A text-back is a reply to a call, so the caller's country is the destination: by default only
the clinic's own (`Clinic.country`, the default region its numbers are read with), and a
clinic lists others in `settings.text_back.allowed_countries`.
"""

from __future__ import annotations

from dataclasses import dataclass

from booking.messaging.phones import number_type, region_of
from booking.models import Clinic

# Number types a text-back never goes to, whatever the country (libphonenumber's names):
# - premium_rate, shared_cost: the sender pays a rate the number's owner shares in;
# - uan (a company's "universal access" number) and personal_number (UK 070, "follow me"
#   forwarding): charged above a mobile, a classic fraud range, and no patient texts from one.
# VoIP numbers are texted: many patients use one (Google Voice, UK 056), and they cost what a
# mobile does. Toll-free and unknown ranges are texted too: fictional and test numbers are
# "unknown", and neither costs more.
COSTLY_NUMBER_TYPES = frozenset({"premium_rate", "shared_cost", "uan", "personal_number"})

COUNTRY_NOT_ALLOWED = "country_not_allowed"
COSTLY_NUMBER = "costly_number"


@dataclass(frozen=True)
class Refusal:
    reason: str  # COUNTRY_NOT_ALLOWED or COSTLY_NUMBER
    detail: str  # the caller's country, or the number's type

    @property
    def code(self) -> str:
        """What `MissedCall.refused_reason` stores: "country_not_allowed:LS"."""
        return f"{self.reason}:{self.detail}"


def allowed_countries(clinic: Clinic) -> frozenset[str]:
    listed = ((clinic.settings or {}).get("text_back") or {}).get("allowed_countries") or []
    return frozenset(listed) or frozenset({clinic.country.upper()})


def refusal(clinic: Clinic, phone: str) -> Refusal | None:
    """Why this clinic must not text this caller back (E.164), or None when it may."""
    country = region_of(phone)
    if country not in allowed_countries(clinic):
        return Refusal(COUNTRY_NOT_ALLOWED, country or "unknown")
    kind = number_type(phone)
    if kind in COSTLY_NUMBER_TYPES:
        return Refusal(COSTLY_NUMBER, kind)
    return None
