"""Production refuses settings that would leave patient data weakly protected: placeholder or
short secrets, and public addresses without TLS. Checked when the settings are read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from booking.settings import MIN_SECRET_LENGTH, PROJECT_ROOT, Settings

RINGBACK = str(Path(sys.executable).parent / "ringback")

STRONG = {
    "environment": "production",
    "database_url": "postgresql+psycopg2://ringback@db.internal/ringback",
    "twilio_auth_token": "t" * 32,
    "missed_call_hmac_secret": "h" * 32,
    "session_secret": "s" * 32,
    "rasa_token": "r" * 32,
    "action_server_token": "a" * 32,
    "gateway_public_url": "https://gateway.clinic.example",
    "console_public_url": "https://console.clinic.example",
    "field_encryption_keys": "k1:" + "K" * 43 + "=",  # the clinic's own key, not the dev one
}


def refusal(**changes: str) -> str:
    with pytest.raises(ValidationError) as refused:
        Settings(**{**STRONG, **changes})
    return str(refused.value)


def test_a_strong_production_configuration_is_accepted():
    assert Settings(**STRONG).is_production


@pytest.mark.parametrize("field", ["session_secret", "rasa_token", "action_server_token"])
def test_production_refuses_a_secret_shorter_than_32_characters(field):
    assert (f"{field.upper()} must be at least {MIN_SECRET_LENGTH} characters in production"
            in refusal(**{field: "x" * (MIN_SECRET_LENGTH - 1)}))
    assert f"{field.upper()} must be set in production" in refusal(**{field: ""})


def test_production_hook_secrets_are_optional_but_never_short_or_the_placeholder():
    short = "x" * (MIN_SECRET_LENGTH - 1)
    assert (f"MISSED_CALL_HMAC_SECRET must be at least {MIN_SECRET_LENGTH} characters"
            in refusal(missed_call_hmac_secret=short))
    assert (f"MISSED_CALL_HOOK_SECRETS[riverside] must be at least {MIN_SECRET_LENGTH} characters"
            in refusal(missed_call_hook_secrets={"riverside": short}))
    assert ("MISSED_CALL_HMAC_SECRET must be a real secret in production"
            in refusal(missed_call_hmac_secret="dev-only-change-me"))
    # No shared secret at all: the hook takes calls only for clinics with their own.
    assert Settings(**{**STRONG, "missed_call_hmac_secret": ""}).is_production


@pytest.mark.parametrize("field", ["gateway_public_url", "console_public_url",
                                   "twilio_api_base_url"])
def test_production_refuses_a_public_url_without_https(field):
    assert (f"{field.upper()} must be an https:// URL in production, "
            "not 'http://clinic.example'" in refusal(**{field: "http://clinic.example"}))
    assert "must be an https:// URL" in refusal(**{field: "ftp://clinic.example"})


def test_http_to_this_machine_crosses_no_network_and_is_accepted():
    settings = Settings(**{**STRONG, "gateway_public_url": "http://127.0.0.1:8000",
                           "console_public_url": "http://localhost:8000"})
    assert settings.is_production


def test_development_accepts_short_secrets_and_http():
    settings = Settings(session_secret="x", gateway_public_url="http://clinic.example")
    assert not settings.is_production


def test_ringback_names_the_refused_settings_instead_of_a_traceback():
    env = {**os.environ, **{name.upper(): value for name, value in STRONG.items()},
           "SESSION_SECRET": "too-short", "GATEWAY_PUBLIC_URL": "http://gateway.clinic.example",
           # Nothing listens there: the refusal comes before any connection.
           "DATABASE_URL": "postgresql+psycopg2://nobody@127.0.0.1:1/none"}
    result = subprocess.run([RINGBACK, "migrate"], env=env, capture_output=True, text=True,
                            cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr == (
        "ringback: the configuration is refused:\n"
        "  SESSION_SECRET must be at least 32 characters in production "
        "(e.g. `openssl rand -hex 32`)\n"
        "  GATEWAY_PUBLIC_URL must be an https:// URL in production, "
        "not 'http://gateway.clinic.example'\n")
