import pytest

from booking.messaging.phones import is_fictional, strip_address_prefix, to_e164, try_e164


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
