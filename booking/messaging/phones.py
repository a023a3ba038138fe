"""Phone numbers in E.164, parsed with the clinic's country as the default region."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

# Twilio writes WhatsApp addresses as "whatsapp:+44..."; links and SIP headers use "tel:".
_ADDRESS_PREFIXES = ("whatsapp:", "tel:", "sms:")

# Ranges reserved for drama and documentation: not "valid" to libphonenumber (nobody is
# assigned them), yet exactly what example configs and tests must use.
_FICTIONAL_E164 = (
    re.compile(r"^\+441632960\d{3}$"),  # Ofcom: 01632 960xxx
    re.compile(r"^\+447700900\d{3}$"),  # Ofcom: 07700 900xxx mobiles
    re.compile(r"^\+4420794600\d{2}$"),  # Ofcom: 020 7946 0xxx (first 100)
    re.compile(r"^\+44(113|114|115|116|117|118|121|131|141|151|161)496\d{4}$"),
    re.compile(r"^\+44191498\d{4}$"),
    re.compile(r"^\+1[2-9]\d{2}55501\d{2}$"),  # NANP: NXX-555-0100..0199
)


def strip_address_prefix(raw: str) -> str:
    """'whatsapp:+447700900123' -> '+447700900123'."""
    text = raw.strip()
    for prefix in _ADDRESS_PREFIXES:
        if text.lower().startswith(prefix):
            return text[len(prefix):].strip()
    return text


def to_e164(raw: str | None, *, default_region: str | None, strict: bool = False) -> str:
    """Normalise a phone number to E.164 or raise ValueError.

    Callers' numbers (strict=False) only need a plausible length for their country: the
    carrier delivered the call, so the number exists even if our metadata is older than it.
    Configured numbers (strict=True) must be assigned numbers, or in a fictional range.
    """
    if raw is None or not str(raw).strip():
        raise ValueError("no phone number given")
    text = strip_address_prefix(str(raw))
    region = default_region.upper() if default_region else None
    try:
        parsed = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise ValueError(f"not a phone number: {raw!r}") from exc
    number = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    if phonenumbers.is_possible_number_with_reason(parsed) != ValidationResult.IS_POSSIBLE:
        raise ValueError(f"not a complete phone number: {raw!r}")
    if strict and not (phonenumbers.is_valid_number(parsed) or is_fictional(number)):
        raise ValueError(f"not an assigned phone number: {raw!r}")
    return number


def is_fictional(e164: str) -> bool:
    """True for numbers reserved for fiction and documentation (never reach a real person)."""
    return any(pattern.match(e164) for pattern in _FICTIONAL_E164)


def try_e164(raw: str | None, *, default_region: str | None) -> str | None:
    """Like to_e164, but None instead of an error (withheld or anonymous callers)."""
    try:
        return to_e164(raw, default_region=default_region)
    except ValueError:
        return None


def for_reading(e164: str, *, country: str | None) -> str:
    """A number as a patient in `country` dials it: national format at home (01632 960001),
    international format for anyone else's number."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except NumberParseException:
        return e164
    # By country calling code, not region: fictional numbers belong to no region.
    home = (country or "").upper() in phonenumbers.region_codes_for_country_code(
        parsed.country_code)
    return phonenumbers.format_number(
        parsed, PhoneNumberFormat.NATIONAL if home else PhoneNumberFormat.INTERNATIONAL)


def region_of(e164: str) -> str | None:
    """The country (ISO 3166 code) a number belongs to: by its number range where
    libphonenumber knows the range (+1 876... is Jamaica, not the US), else the main country of
    its calling code (fictional numbers, ranges newer than the metadata); None if not even the
    calling code is known."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    if region is None:
        region = phonenumbers.region_code_for_country_code(parsed.country_code)
    return None if region == phonenumbers.UNKNOWN_REGION else region


_TYPE_NAMES = {value: name.lower() for name, value in vars(phonenumbers.PhoneNumberType).items()
               if name.isupper()}


def number_type(e164: str) -> str:
    """What libphonenumber says a number is: "mobile", "fixed_line", "premium_rate",
    "shared_cost", "voip", ... ("unknown" outside every known range, e.g. fictional numbers)."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except NumberParseException:
        return "unknown"
    return _TYPE_NAMES.get(phonenumbers.number_type(parsed), "unknown")
