"""Fixtures for outreach: a real SQLite database with clinics in New York, Los Angeles and
London, and the compliance gate with its real rules file."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from booking.outreach.gate import ComplianceGate
from tests.booking.conftest import (  # noqa: F401 - fixtures
    engine,
    load_clinic,
    sessions,
    write_clinics,
)

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def clinic_config(slug: str, name: str, timezone: str, country: str, number: str,
                  **settings) -> dict:
    return {
        "slug": slug, "name": name, "timezone": timezone, "country": country,
        "numbers": {"voice": number, "sms": number},
        "address": "1 Main Street",
        "opening_hours": {day: ["09:00-17:00"] for day in _WEEKDAYS},
        "services": [{"slug": "check-up", "name": "Check-up", "synonyms": ["check up"],
                      "duration_minutes": 30, "providers": ["dr-a"]}],
        "providers": [{"slug": "dr-a", "name": "Dr Ames"}],
        "settings": copy.deepcopy(settings),
    }


NEW_YORK = clinic_config("hudson", "Hudson Dental", "America/New_York", "US", "+12125550101")
LOS_ANGELES = clinic_config("sunset", "Sunset Smiles", "America/Los_Angeles", "US",
                            "+13105550101")
LONDON = clinic_config("thames", "Thames Physio", "Europe/London", "GB", "+441632960601")
FLORIDA_CALLER = "+13055550123"
NEW_YORK_CALLER = "+12125550188"
LONDON_CALLER = "+447700900601"


@pytest.fixture(scope="session")
def gate() -> ComplianceGate:
    return ComplianceGate.from_file()


@pytest.fixture
def clinic(load_clinic) -> Callable[..., int]:  # noqa: F811 - fixture
    """Load a clinic config (optionally with outreach settings); returns its id."""
    def load(config: dict, **outreach) -> int:
        config = copy.deepcopy(config)
        if outreach:
            config["settings"]["outreach"] = outreach
        return load_clinic(config).id

    return load
