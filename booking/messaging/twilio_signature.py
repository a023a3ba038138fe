"""Twilio's X-Twilio-Signature: HMAC-SHA1 of the full URL plus the sorted form parameters."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"


def sign(*, auth_token: str, url: str, params: Mapping[str, str]) -> str:
    return RequestValidator(auth_token).compute_signature(url, dict(params))


def is_valid(*, auth_token: str, url: str, params: Mapping[str, str],
             signature: str | None) -> bool:
    if not signature:
        return False
    return RequestValidator(auth_token).validate(url, dict(params), signature)


def parse_form(body: bytes) -> dict[str, str]:
    """A webhook's form body as Twilio sends it (UTF-8, each field once).

    Raises ValueError for anything else, so the webhook can answer 400 before trusting it.
    """
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    params: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                                errors="strict"):
        if key in params:
            raise ValueError(f"field {key!r} given twice")
        params[key] = value
    return params
