"""Which callers a clinic may text back (booking.calls.destinations): its countries, and never
a costly number type, whatever the country."""

from __future__ import annotations

import pytest

from booking.calls.destinations import allowed_countries, refusal
from booking.models import Clinic


def clinic(**text_back) -> Clinic:
    return Clinic(slug="c", name="C", timezone="Europe/London", country="GB",
                  settings={"text_back": text_back} if text_back else {})


@pytest.mark.parametrize(("caller", "code"), [
    ("+447700900123", None),  # a UK mobile (fictional range)
    ("+26658001234", "country_not_allowed:LS"),
    ("+353851234567", "country_not_allowed:IE"),
    ("+449012345678", "costly_number:premium_rate"),
    ("+447012345678", "costly_number:personal_number"),
    ("+445612345678", None),  # VoIP: texted
])
def test_by_default_a_clinic_texts_its_own_country_only_and_no_costly_numbers(caller, code):
    found = refusal(clinic(), caller)
    assert (found.code if found else None) == code


def test_a_clinic_may_list_more_countries_but_costly_numbers_stay_refused():
    listed = clinic(allowed_countries=["GB", "IE"])
    assert allowed_countries(listed) == {"GB", "IE"}
    assert refusal(listed, "+353851234567") is None
    assert refusal(listed, "+26658001234").code == "country_not_allowed:LS"
    assert refusal(listed, "+449012345678").code == "costly_number:premium_rate"
    assert refusal(clinic(allowed_countries=["IE"]), "+447700900123").code == (
        "country_not_allowed:GB")
