"""Clinic YAML: validated with errors that name file, clinic and field; loaded idempotently."""

from __future__ import annotations

import copy
from datetime import time

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from booking.clinics import accounts
from booking.clinics.config import ClinicConfigError, load_clinics, parse_clinic_file
from booking.migrate import upgrade
from booking.models import (
    Appointment,
    Clinic,
    ConsoleAccount,
    ConsoleRole,
    Contact,
    OnCallShift,
    OpeningHours,
    Provider,
    Service,
    StaffMember,
)
from tests.booking.conftest import EXAMPLE_FILE, utc


def _counts(session) -> dict[str, int]:
    return {model.__name__: session.scalar(select(func.count()).select_from(model))
            for model in (Clinic, OpeningHours, Service, Provider, StaffMember, OnCallShift)}


def test_the_example_file_is_valid():
    slugs = [config.slug for config in parse_clinic_file(EXAMPLE_FILE)]
    assert slugs == ["riverside", "northside"]


def test_example_clinics_load_with_their_details(example_clinics, sessions):
    with sessions() as session:
        riverside = session.execute(select(Clinic).where(Clinic.slug == "riverside")).scalar_one()
        assert riverside.timezone == "Europe/London"
        assert riverside.voice_number == riverside.sms_number == "+441632960001"
        assert riverside.whatsapp_number == "+441632960002"
        assert riverside.front_desk_number == "+441632960100"
        assert {s.slug for s in riverside.services} == {
            "check-up", "hygiene", "whitening", "lip-filler", "anti-wrinkle"}
        thursday = [(h.opens, h.closes) for h in riverside.opening_hours if h.weekday == 3]
        assert thursday == [(time(8), time(20))]
        hygiene = next(s for s in riverside.services if s.slug == "hygiene")
        assert "scale and polish" in hygiene.synonyms
        assert [p.slug for p in hygiene.providers] == ["sophie-lee"]
        on_call = riverside.on_call_shifts[0].staff
        assert on_call.phone == "+447700900111"
        assert any(m.is_backup and m.phone == "+447700900222" for m in riverside.staff)
        assert any(m.handles_billing for m in riverside.staff)
        assert riverside.settings["booking"]["slot_step_minutes"] == 15
        assert riverside.settings["cancellation"]["notice_hours"] == 24
        assert riverside.settings["required_patient_fields"] == ["first_name"]
        assert "text_back_closed" in riverside.settings["templates"]
        assert riverside.settings["whatsapp"]["text_back_content_sid"].startswith("HX")
        northside = session.execute(select(Clinic).where(Clinic.slug == "northside")).scalar_one()
        # Defaults from the schema fill what the file leaves out.
        assert northside.settings["required_patient_fields"] == ["first_name"]
        assert northside.settings["whatsapp"] == {
            "text_back_content_sid": None, "text_back_body": None,
            "text_back_closed_content_sid": None, "text_back_closed_body": None}


def test_passwords_are_stored_only_as_argon2_hashes(example_clinics, sessions):
    with sessions() as session:
        admin = session.execute(select(ConsoleAccount).where(
            ConsoleAccount.username == "riverside-admin")).scalar_one()
        assert admin.password_hash.startswith("$argon2")
        assert "riverside-demo" not in admin.password_hash
        assert PasswordHasher().verify(admin.password_hash, "riverside-demo")


def test_loading_twice_changes_nothing(example_clinics, sessions):
    with sessions() as session:
        before = _counts(session)
        ids = {(type(row).__name__, row.id) for row in session.execute(
            select(OpeningHours)).scalars()}
        hashes = set(session.execute(select(ConsoleAccount.password_hash)).scalars())
        load_clinics(session, EXAMPLE_FILE)
        assert not session.dirty and not session.new and not session.deleted
        session.commit()
        assert _counts(session) == before
        assert {(type(row).__name__, row.id) for row in session.execute(
            select(OpeningHours)).scalars()} == ids
        assert set(session.execute(select(ConsoleAccount.password_hash)).scalars()) == hashes


def test_changed_values_update_rows_in_place(load_clinic, minimal, sessions):
    clinic = load_clinic(minimal)
    service_id = clinic.services[0].id
    minimal["name"] = "Mini Clinic Renamed"
    minimal["services"][0]["duration_minutes"] = 45
    minimal["opening_hours"]["sat"] = ["10:00-12:00"]
    minimal["providers"].append({"slug": "dr-b", "name": "Dr B",
                                 "services": ["consult"]})
    load_clinic(minimal)
    with sessions() as session:
        (row,) = session.execute(select(Clinic)).scalars().all()
        assert row.name == "Mini Clinic Renamed"
        (service,) = row.services
        assert service.id == service_id and service.duration_minutes == 45
        assert [p.slug for p in service.providers] == ["dr-a", "dr-b"]
        assert any(h.weekday == 5 for h in row.opening_hours)


def test_a_changed_clinic_gets_a_new_version_and_an_unchanged_one_keeps_it(load_clinic, minimal,
                                                                         sessions):
    """Processes keep a clinic's services, clinicians and hours until its updated_at moves."""
    def version() -> object:
        with sessions() as session:
            return session.execute(select(Clinic.updated_at)).scalar_one()

    load_clinic(minimal)
    loaded = version()
    load_clinic(minimal)
    assert version() == loaded
    minimal["services"][0]["duration_minutes"] = 45  # a service's row only, not the clinic's
    load_clinic(minimal)
    assert version() > loaded
    changed = version()
    minimal["providers"][0]["hours"] = {"mon": ["09:00-12:00"]}
    load_clinic(minimal)
    assert version() > changed


def test_removed_services_are_deleted_unless_appointments_keep_them(load_clinic, minimal,
                                                                    sessions):
    minimal["services"].append({"slug": "extra", "name": "Extra", "duration_minutes": 15,
                                "providers": ["dr-a"]})
    minimal["services"].append({"slug": "used", "name": "Used", "duration_minutes": 15,
                                "providers": ["dr-a"]})
    clinic = load_clinic(minimal)
    with sessions() as session:
        used = session.execute(select(Service).where(Service.slug == "used")).scalar_one()
        contact = Contact(clinic_id=clinic.id, phone="+447700900900")
        session.add(contact)
        session.flush()
        session.add(Appointment(clinic_id=clinic.id, contact_id=contact.id, service_id=used.id,
                                starts_at=utc(2026, 1, 5, 9), ends_at=utc(2026, 1, 5, 9, 15),
                                idempotency_key="k"))
        session.commit()
    minimal["services"] = minimal["services"][:1]
    load_clinic(minimal)
    with sessions() as session:
        slugs = {s.slug: s for s in session.execute(select(Service)).scalars()}
        assert "extra" not in slugs
        assert slugs["used"].providers == []  # retired: kept for history, never offered


def test_removed_staff_keep_their_row_but_lose_access(load_clinic, minimal, sessions):
    minimal["staff"].append({"slug": "temp", "name": "Temp", "username": "temp-user",
                             "password": "secret-pass", "phone": "+447700900502"})
    load_clinic(minimal)
    minimal["staff"] = minimal["staff"][:1]
    load_clinic(minimal)
    with sessions() as session:
        temp = session.execute(select(StaffMember).where(StaffMember.slug == "temp")).scalar_one()
        assert temp.account_id is None and temp.console_role is None


def _boss_with_log_in(minimal: dict) -> dict:
    minimal["staff"][0].update(username="boss-user", password="boss-password-1",
                               console_role="admin")
    return minimal


def test_the_file_seeds_an_account_and_an_admin_membership(load_clinic, minimal, sessions):
    load_clinic(_boss_with_log_in(minimal))
    with sessions() as session:
        boss = session.execute(select(StaffMember)).scalar_one()
        assert boss.account.username == "boss-user" and boss.console_role == ConsoleRole.admin
        assert PasswordHasher().verify(boss.account.password_hash, "boss-password-1")


def test_loading_again_keeps_what_the_console_changed(load_clinic, minimal, sessions):
    clinic = load_clinic(_boss_with_log_in(minimal))
    with sessions() as session, session.begin():
        boss = session.execute(select(StaffMember)).scalar_one()
        reset_token = accounts.reset_password(session, boss.account, now=utc(2026, 12, 7, 9))
        boss.console_role = ConsoleRole.staff
        invited, _ = accounts.invite(session, clinic=session.get(Clinic, clinic.id),
                                     name="New Receptionist", username="new-reception",
                                     role=ConsoleRole.staff, now=utc(2026, 12, 7, 9))
        accounts.set_enabled(session, invited, False)
    load_clinic(minimal)
    with sessions() as session:
        rows = {row.slug: row for row in session.execute(select(StaffMember)).scalars()}
        assert rows["boss"].account.password_hash is None  # the reset stands
        assert rows["boss"].account.invite_token_hash == accounts.token_hash(reset_token)
        assert rows["boss"].console_role == ConsoleRole.staff
        assert rows["login-new-reception"].account.username == "new-reception"
        assert rows["login-new-reception"].console_enabled is False
        assert rows["login-new-reception"].console_role == ConsoleRole.staff


def test_a_password_changed_in_the_file_wins_once(load_clinic, minimal, sessions):
    load_clinic(_boss_with_log_in(minimal))
    with sessions() as session, session.begin():
        accounts.reset_password(session, session.execute(select(ConsoleAccount)).scalar_one(),
                                now=utc(2026, 12, 7, 9))
    minimal["staff"][0]["password"] = "boss-password-2"
    load_clinic(minimal)
    with sessions() as session:
        account = session.execute(select(ConsoleAccount)).scalar_one()
        assert PasswordHasher().verify(account.password_hash, "boss-password-2")


def test_a_file_cannot_set_the_password_of_another_clinics_person(load_clinic, minimal,
                                                                  sessions, write_clinics):
    load_clinic(_boss_with_log_in(minimal))
    other = copy.deepcopy(minimal)
    other.update(slug="other", name="Other Clinic")
    other["numbers"] = {}
    other["staff"][0]["password"] = "taken-over-password"
    with sessions() as session, pytest.raises(ClinicConfigError, match="another clinic"):
        load_clinics(session, write_clinics(other))
    del other["staff"][0]["password"]  # without one, the person simply gains that clinic
    load_clinic(other)
    with sessions() as session:
        account = session.execute(select(ConsoleAccount)).scalar_one()
        assert PasswordHasher().verify(account.password_hash, "boss-password-1")
        assert session.scalar(select(func.count()).select_from(StaffMember).where(
            StaffMember.account_id == account.id)) == 2


def test_overnight_on_call_is_split_at_midnight(load_clinic, minimal, sessions):
    minimal["on_call"] = [{"staff": "boss", "days": ["fri"], "from": "18:00", "to": "08:00"}]
    load_clinic(minimal)
    with sessions() as session:
        shifts = [(s.weekday, s.starts, s.ends) for s in session.execute(
            select(OnCallShift).order_by(OnCallShift.weekday)).scalars()]
    assert shifts == [(4, time(18), time.max), (5, time(0), time(8))]


def test_unquoted_yaml_times_are_understood(sessions, tmp_path, minimal):
    # YAML 1.1 reads 18:00 without quotes as the number 1080.
    path = tmp_path / "c.yml"
    path.write_text(
        "clinics:\n"
        "  - slug: mini\n    name: Mini\n    timezone: Europe/London\n    country: GB\n"
        "    opening_hours: {mon: ['09:00-17:00']}\n"
        "    staff: [{slug: boss, name: Boss, phone: '+447700900501'}]\n"
        "    on_call: [{staff: boss, days: [mon], from: 13:00, to: 18:00}]\n")
    (config,) = parse_clinic_file(path)
    assert (config.on_call[0].from_, config.on_call[0].to) == (time(13), time(18))


def test_hashes_can_be_given_instead_of_passwords(load_clinic, minimal, sessions):
    digest = PasswordHasher().hash("s3cret")
    minimal["staff"][0].update(username="boss-user", password_hash=digest)
    load_clinic(minimal)
    with sessions() as session:
        assert session.execute(select(ConsoleAccount.password_hash)).scalar_one() == digest


def test_plaintext_passwords_can_be_refused(sessions, write_clinics, minimal):
    minimal["staff"][0].update(username="boss-user", password="s3cret")
    with sessions() as session, pytest.raises(ClinicConfigError, match="plaintext"):
        load_clinics(session, write_clinics(minimal), allow_plaintext_passwords=False)


# -- errors -------------------------------------------------------------------------------


def _breakage(minimal: dict, case: str) -> tuple[dict, str]:
    if case == "timezone":
        minimal["timezone"] = "Europe/Londn"
        return minimal, "timezone: 'Europe/Londn' is not an IANA timezone"
    if case == "overlap":
        minimal["opening_hours"]["tue"] = ["09:00-13:00", "12:30-17:00"]
        return minimal, "opening_hours.tue: 09:00-13:00 overlaps 12:30-17:00"
    if case == "provider":
        minimal["services"][0]["providers"] = ["dr-a", "dr-nobody"]
        return minimal, "services[0].providers[1]: unknown provider 'dr-nobody'"
    if case == "service":
        minimal["providers"][0]["services"] = ["massage"]
        return minimal, "providers[0].services[0]: unknown service 'massage'"
    if case == "phone":
        minimal["numbers"]["sms"] = "0123"
        return minimal, "numbers.sms: not a complete phone number: '0123'"
    if case == "staff_phone":
        minimal["staff"][0]["phone"] = "call me"
        return minimal, "staff[0].phone: not a phone number"
    if case == "adapter":
        minimal["scheduling"] = {"adapter": "boulevard"}
        return minimal, "scheduling.adapter: no scheduling adapter 'boulevard' is installed"
    if case == "adapter_config":
        minimal["scheduling"] = {"adapter": "caldav", "config": {}}
        return minimal, "scheduling.config: "
    if case == "typo":
        minimal["opening_hours"]["mon"] = ["9am-5pm"]
        return minimal, "opening_hours: '9am' is not a time like 08:30"
    if case == "unknown_key":
        minimal["services"][0]["duraton_minutes"] = 30
        return minimal, "services[0].duraton_minutes: extra fields not permitted"
    if case == "missing":
        del minimal["services"][0]["duration_minutes"]
        return minimal, "services[0].duration_minutes: field required"
    if case == "grid":
        minimal["services"][0]["duration_minutes"] = 32
        return minimal, "services[0].duration_minutes: must be a multiple of 5 minutes"
    if case == "on_call":
        minimal["on_call"] = [{"staff": "ghost", "days": ["mon"], "from": "09:00",
                               "to": "17:00"}]
        return minimal, "on_call[0].staff: unknown staff member 'ghost'"
    if case == "text_back_country":
        minimal["settings"] = {"text_back": {"allowed_countries": ["GB", "UK"]}}
        return minimal, ("settings.text_back.allowed_countries[1]: 'UK' is not an ISO 3166 "
                         "country code")
    if case == "text_back_cap":
        minimal["settings"] = {"text_back": {"hourly_cap": -1}}
        return minimal, "settings.text_back.hourly_cap: ensure this value is greater than"
    if case == "text_back_typo":
        minimal["settings"] = {"text_back": {"hourly_limit": 10}}
        return minimal, "settings.text_back.hourly_limit: extra fields not permitted"
    raise AssertionError(case)


CASES = ["timezone", "overlap", "provider", "service", "phone", "staff_phone", "adapter",
         "adapter_config", "typo", "unknown_key", "missing", "grid", "on_call",
         "text_back_country", "text_back_cap", "text_back_typo"]


@pytest.mark.parametrize("case", CASES)
def test_errors_name_the_file_the_clinic_and_the_field(case, minimal, write_clinics):
    broken, expected = _breakage(minimal, case)
    path = write_clinics(broken)
    with pytest.raises(ClinicConfigError) as caught:
        parse_clinic_file(path)
    message = str(caught.value)
    assert f"{path}: clinic 'mini': {expected}" in message, message


def test_a_bad_file_loads_nothing_not_even_its_valid_clinics(sessions, write_clinics, minimal):
    good = dict(minimal)
    bad = dict(minimal, slug="bad", timezone="Mars/Olympus",
               numbers={"voice": "+441632960777"})
    path = write_clinics(good, bad)
    with sessions() as session:
        with pytest.raises(ClinicConfigError, match="clinic 'bad': timezone"):
            load_clinics(session, path)
        session.commit()
        assert session.scalar(select(func.count()).select_from(Clinic)) == 0


def test_clinics_in_one_file_cannot_share_numbers_or_slugs(write_clinics, minimal):
    twin = dict(minimal, staff=[{"slug": "x", "name": "X", "phone": "+447700900503"}])
    with pytest.raises(ClinicConfigError) as caught:
        parse_clinic_file(write_clinics(minimal, twin))
    message = str(caught.value)
    assert "clinic 'mini': slug 'mini' is already used by clinic 'mini'" in message
    assert "clinic 'mini': number '+441632960501' is already used" in message


def test_a_number_taken_by_a_clinic_from_another_file_is_reported(sessions, write_clinics,
                                                                   minimal):
    with sessions() as session:
        load_clinics(session, write_clinics(minimal))
        session.commit()
        other = dict(minimal, slug="other")
        with pytest.raises(ClinicConfigError, match="database refused"):
            load_clinics(session, write_clinics(other))
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Clinic)) == 1


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ClinicConfigError, match="cannot read"):
        parse_clinic_file(tmp_path / "missing.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("clinics: [ {slug: a")
    with pytest.raises(ClinicConfigError, match="not valid YAML"):
        parse_clinic_file(broken)
    flat = tmp_path / "flat.yml"
    flat.write_text("slug: a\n")
    with pytest.raises(ClinicConfigError, match="top-level 'clinics:'"):
        parse_clinic_file(flat)


def test_clinics_load_into_a_database_built_by_the_migrations(tmp_path):
    from booking.db import make_engine, session_factory

    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        assert len(load_clinics(session, EXAMPLE_FILE)) == 2
        session.commit()
    engine.dispose()
