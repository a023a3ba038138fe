import pytest

from booking.messaging.phones import (
    is_fictional,
    number_type,
    region_of,
    strip_address_prefix,
    to_e164,
    try_e164,
)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("07700 900123", "GB", "+447700900123"),
        ("+44 7700 900123", "US", "+447700900123"),
        ("whatsapp:+447700900123", "GB", "+447700900123"),
        ("WhatsApp:+447700900123", "GB", "+447700900123"),
        ("tel:+1-202-555-0101", None, "+12025550101"),
        ("(202) 555-0101", "US", "+12025550101"),
        ("01632 960001", "GB", "+441632960001"),
    ],
)
def test_numbers_become_e164_with_the_clinic_country_as_default(raw, region, expected):
    assert to_e164(raw, default_region=region) == expected


@pytest.mark.parametrize("raw", ["", "anonymous", "12345", "+1202555", None, "whatsapp:"])
def test_unusable_numbers_raise_value_error(raw):
    with pytest.raises(ValueError):
        to_e164(raw, default_region="GB")
    assert try_e164(raw, default_region="GB") is None


def test_strict_mode_accepts_assigned_and_fictional_numbers_only():
    assert to_e164("+441632960001", default_region="GB", strict=True) == "+441632960001"
    assert to_e164("+12025550101", default_region="US", strict=True) == "+12025550101"
    # Possible length, but an unassigned UK range and not a drama number.
    with pytest.raises(ValueError, match="not an assigned"):
        to_e164("+441000000000", default_region="GB", strict=True)


def test_fictional_ranges():
    assert is_fictional("+447700900999")
    assert is_fictional("+12025550199")
    assert not is_fictional("+447911123456")
    assert strip_address_prefix(" whatsapp:+1 ") == "+1"


@pytest.mark.parametrize(("number", "country", "kind"), [
    ("+26658001234", "LS", "mobile"),  # the Lesotho caller
    ("+18765550123", "JM", "mobile"),  # +1, but Jamaica's range: not the US
    ("+447911123456", "GG", "mobile"),  # a Guernsey range inside +44
    ("+447700900123", "GB", "unknown"),  # fictional: the calling code's main country
    ("+449012345678", "GB", "premium_rate"),
    ("+448431234567", "GB", "premium_rate"),  # 0843, which libphonenumber counts as premium
    ("+447012345678", "GB", "personal_number"),
    ("+445612345678", "GB", "voip"),
    ("+19005550123", "US", "premium_rate"),
])
def test_a_numbers_country_and_type(number, country, kind):
    assert (region_of(number), number_type(number)) == (country, kind)


def test_a_number_without_a_known_calling_code_has_no_country():
    assert region_of("+999123456") is None
    assert number_type("not a number") == "unknown"
