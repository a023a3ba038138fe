import pytest

from booking.clinics.lookups import (
    find_clinic_by_number,
    find_clinic_by_slug,
    find_service_mention,
    match_service,
)


def test_find_clinic_by_slug_and_by_any_patient_facing_number(example_clinics, sessions):
    with sessions() as session:
        assert find_clinic_by_slug(session, "riverside").name == "Riverside Dental & Aesthetics"
        assert find_clinic_by_slug(session, "nowhere") is None
        assert find_clinic_by_number(session, "+441632960001").slug == "riverside"
        assert find_clinic_by_number(session, "whatsapp:+441632960002").slug == "riverside"
        assert find_clinic_by_number(session, "+12025550101").slug == "northside"
        assert find_clinic_by_number(session, "+441632960100") is None  # front desk
        assert find_clinic_by_number(session, "+447700900999") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Can I book a scale and polish?", "hygiene"),
        ("need a check-up", "check-up"),
        ("CHECKUP please", "check-up"),
        ("I'd like some lip filler", "lip-filler"),
        ("botox next week?", "anti-wrinkle"),
        ("filler", "lip-filler"),
        ("Teeth whitening", "whitening"),
        ("hello", None),
        ("", None),
        ("cleanse", None),  # whole words only: "clean" must not match inside "cleanse"
    ],
)
def test_service_mentions_match_names_and_synonyms(example_clinics, sessions, text, expected):
    with sessions() as session:
        service = find_service_mention(session, clinic_id=example_clinics["riverside"].id,
                                       text=text)
        assert (service.slug if service else None) == expected


def test_ambiguous_mentions_match_nothing(example_clinics):
    services = example_clinics["riverside"].services
    assert match_service(services=services, text="dental exam or clean").slug == "check-up"
    assert match_service(services=services, text="exam or lips") is None  # equally long
