"""The compliance gate with explicit clocks: quiet hours in the recipient's zone, state laws,
rolling caps, body rules, expiry, both clock changes, and a clinic's own overrides."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from booking.outreach.gate import (
    RULES_FILE,
    ComplianceGate,
    Decision,
    OutreachRulesError,
    SentBefore,
    Verdict,
    check_clinic_rules,
)

NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
LONDON = ZoneInfo("Europe/London")

FLORIDA_NUMBER = "+13055550123"  # Miami, Eastern time
MARYLAND_NUMBER = "+14105550123"  # Baltimore
OKLAHOMA_NUMBER = "+14055550123"  # Oklahoma City, Central time
NEW_YORK_NUMBER = "+12125550123"
UK_MOBILE = "+447911123456"
US_TOLL_FREE = "+18005550123"  # every North American zone
AUSTRALIAN_MOBILE = "+61412345678"  # every Australian zone

CLINIC = "Riverside Dental"
BODY = "Riverside Dental: you have not replied yet; we can still book you. Reply STOP to opt out."

GATE = ComplianceGate.from_file()


def local(zone: ZoneInfo, *fields: int) -> datetime:
    """A wall-clock time in `zone`, as the UTC instant the gate takes."""
    return datetime(*fields, tzinfo=zone).astimezone(timezone.utc)


def decide(now: datetime, *, phone: str = NEW_YORK_NUMBER, clinic_country: str = "US",
           clinic_timezone: str = "America/New_York", clinic_rules: dict | None = None,
           body: str = BODY, subject: str = "call:17", history: list[SentBefore] = (),
           expires_at: datetime | None = None) -> Decision:
    return GATE.decide(phone=phone, clinic_country=clinic_country,
                       clinic_timezone=clinic_timezone, clinic_name=CLINIC,
                       clinic_rules=clinic_rules or {}, body=body, subject=subject, now=now,
                       history=list(history), expires_at=expires_at)


def sent(*moments: datetime, subject: str = "call:17") -> list[SentBefore]:
    return [SentBefore(sent_at=moment, subject=subject) for moment in moments]


# -- quiet hours in the recipient's zone -------------------------------------------------------


def test_a_follow_up_due_at_21_25_in_new_york_to_a_florida_number_waits_for_08_00():
    # The text-back went at 20:55; its follow-up falls due 30 minutes later.
    decision = decide(local(NEW_YORK, 2026, 12, 7, 21, 25), phone=FLORIDA_NUMBER)
    assert decision.verdict is Verdict.defer
    assert decision.until == local(NEW_YORK, 2026, 12, 8, 8, 0)
    assert decision.reason == "quiet hours 20:00-08:00 in America/New_York (Florida)"


@pytest.mark.parametrize("phone", [FLORIDA_NUMBER, MARYLAND_NUMBER])
def test_florida_and_maryland_evenings_end_at_20_00_new_yorks_at_21_00(phone):
    at_20_30 = local(NEW_YORK, 2026, 12, 7, 20, 30)
    assert decide(at_20_30, phone=NEW_YORK_NUMBER) == Decision(
        Verdict.send, "within sending hours and caps")
    held = decide(at_20_30, phone=phone)
    assert (held.verdict, held.until) == (Verdict.defer, local(NEW_YORK, 2026, 12, 8, 8, 0))


def test_oklahoma_is_read_in_its_own_central_time():
    held = decide(local(CHICAGO, 2026, 12, 7, 20, 15), phone=OKLAHOMA_NUMBER)
    assert held.until == local(CHICAGO, 2026, 12, 8, 8, 0)
    assert held.reason == "quiet hours 20:00-08:00 in America/Chicago (Oklahoma)"


def test_a_california_clinics_reminder_to_a_305_number_keeps_eastern_hours():
    # 04:30 in Los Angeles is 07:30 in Miami: held until 08:00 Eastern (05:00 Pacific), not
    # until 08:00 Pacific.
    early = decide(local(LOS_ANGELES, 2026, 12, 7, 4, 30), phone=FLORIDA_NUMBER,
                   clinic_timezone="America/Los_Angeles")
    assert (early.verdict, early.until) == (Verdict.defer, local(NEW_YORK, 2026, 12, 7, 8, 0))
    assert "America/New_York" in early.reason
    # 17:30 in Los Angeles is a fine hour there but 20:30 in Miami.
    late = decide(local(LOS_ANGELES, 2026, 12, 7, 17, 30), phone=FLORIDA_NUMBER,
                  clinic_timezone="America/Los_Angeles")
    assert late.until == local(NEW_YORK, 2026, 12, 8, 8, 0)
    # 05:30 Pacific is 08:30 Eastern: allowed, though the clinic's own clock says dawn.
    assert decide(local(LOS_ANGELES, 2026, 12, 7, 5, 30), phone=FLORIDA_NUMBER,
                  clinic_timezone="America/Los_Angeles").verdict is Verdict.send


def test_a_uk_number_at_07_30_london_is_deferred_to_08_00():
    decision = decide(local(LONDON, 2026, 12, 7, 7, 30), phone=UK_MOBILE, clinic_country="GB",
                      clinic_timezone="Europe/London")
    assert decision.verdict is Verdict.defer
    assert decision.until == local(LONDON, 2026, 12, 7, 8, 0)
    assert decision.reason == "quiet hours 20:00-08:00 in Europe/London"


def test_the_first_and_last_minutes_of_sending_hours():
    assert decide(local(NEW_YORK, 2026, 12, 7, 8, 0)).verdict is Verdict.send
    assert decide(local(NEW_YORK, 2026, 12, 7, 20, 59)).verdict is Verdict.send
    assert decide(local(NEW_YORK, 2026, 12, 7, 21, 0)).verdict is Verdict.defer
    assert decide(local(NEW_YORK, 2026, 12, 7, 7, 59)).until == local(NEW_YORK, 2026, 12, 7, 8)


# -- clock changes -----------------------------------------------------------------------------


def test_spring_forward_in_new_york_lands_at_08_00_daylight_time():
    # Saturday 13 March 2027, 22:00 EST; the clocks go forward at 02:00 on Sunday the 14th.
    decision = decide(local(NEW_YORK, 2027, 3, 13, 22, 0))
    assert decision.until == datetime(2027, 3, 14, 12, 0, tzinfo=timezone.utc)
    assert decision.until.astimezone(NEW_YORK).utcoffset() == timedelta(hours=-4)
    assert decision.until.astimezone(NEW_YORK).hour == 8


def test_clocks_going_back_in_london_land_at_08_00_greenwich_time():
    # Saturday 24 October 2026, 21:30 BST; the clocks go back at 02:00 on Sunday the 25th.
    decision = decide(local(LONDON, 2026, 10, 24, 21, 30), phone=UK_MOBILE,
                      clinic_country="GB", clinic_timezone="Europe/London")
    assert decision.until == datetime(2026, 10, 25, 8, 0, tzinfo=timezone.utc)
    assert decision.until.astimezone(LONDON).utcoffset() == timedelta(0)


# -- caps --------------------------------------------------------------------------------------


def test_a_second_started_message_in_24_hours_waits_until_the_first_leaves_the_window():
    decision = decide(local(NEW_YORK, 2026, 12, 8, 15, 0),
                      history=sent(local(NEW_YORK, 2026, 12, 8, 9, 0)))
    assert decision.verdict is Verdict.defer
    assert decision.until == local(NEW_YORK, 2026, 12, 9, 9, 0)
    assert decision.reason == "2nd started message in 24 hours (limit 1)"


def test_the_day_is_rolling_not_the_calendar_day():
    # Yesterday 16:00 is more than 24 hours before today 16:05, though "yesterday" in a
    # calendar; 23:00 yesterday is a different calendar day but inside the window.
    assert decide(local(NEW_YORK, 2026, 12, 8, 16, 5),
                  history=sent(local(NEW_YORK, 2026, 12, 7, 16, 0))).verdict is Verdict.send
    held = decide(local(NEW_YORK, 2026, 12, 8, 9, 0),
                  history=sent(local(NEW_YORK, 2026, 12, 7, 20, 45)))
    assert held.until == local(NEW_YORK, 2026, 12, 8, 20, 45)


def test_a_fourth_started_message_in_a_rolling_week_waits_for_the_oldest_to_leave():
    history = sent(local(NEW_YORK, 2026, 12, 7, 10, 0), local(NEW_YORK, 2026, 12, 9, 10, 0),
                   local(NEW_YORK, 2026, 12, 11, 10, 0))
    decision = decide(local(NEW_YORK, 2026, 12, 12, 12, 0), history=history)
    assert decision.verdict is Verdict.defer
    assert decision.until == local(NEW_YORK, 2026, 12, 14, 10, 0)
    assert decision.reason == "4th started message in 7 days (limit 3)"


def test_a_week_cap_that_frees_in_quiet_hours_waits_for_the_morning():
    # The oldest went at 20:30 EST the night before spring forward; seven days (168 hours)
    # later it is 21:30 EDT, quiet, so the fourth goes at 08:00 on Sunday.
    history = sent(local(NEW_YORK, 2027, 3, 13, 20, 30), local(NEW_YORK, 2027, 3, 15, 10, 0),
                   local(NEW_YORK, 2027, 3, 17, 10, 0))
    decision = decide(local(NEW_YORK, 2027, 3, 19, 10, 0), history=history)
    assert decision.until == local(NEW_YORK, 2027, 3, 21, 8, 0)
    assert decision.reason == ("4th started message in 7 days (limit 3); "
                               "quiet hours 21:00-08:00 in America/New_York")


def test_a_day_cap_freeing_at_23_00_defers_to_08_00_the_next_morning():
    # Sent at 23:00 under hours the clinic has since changed; the cap frees at 23:00.
    decision = decide(local(NEW_YORK, 2026, 12, 8, 10, 0),
                      history=sent(local(NEW_YORK, 2026, 12, 7, 23, 0)))
    assert decision.until == local(NEW_YORK, 2026, 12, 9, 8, 0)
    assert decision.reason == ("2nd started message in 24 hours (limit 1); "
                               "quiet hours 21:00-08:00 in America/New_York")


def test_florida_allows_three_messages_on_one_subject_in_24_hours_whatever_the_clinic_says():
    # A clinic that turned its own caps off is still held by Florida's law.
    history = sent(*(local(NEW_YORK, 2026, 12, 8, hour, 0) for hour in (9, 10, 11)),
                   subject="appointment:42")
    uncapped = {"caps": False}
    held = decide(local(NEW_YORK, 2026, 12, 8, 12, 0), phone=FLORIDA_NUMBER,
                  clinic_rules=uncapped, subject="appointment:42", history=history)
    assert held.verdict is Verdict.defer
    assert held.until == local(NEW_YORK, 2026, 12, 9, 9, 0)
    assert held.reason == "4th message on appointment:42 in 24 hours (limit 3, Florida)"
    # Another subject, or a New York number, is not held.
    assert decide(local(NEW_YORK, 2026, 12, 8, 12, 0), phone=FLORIDA_NUMBER,
                  clinic_rules=uncapped, subject="call:17",
                  history=history).verdict is Verdict.send
    assert decide(local(NEW_YORK, 2026, 12, 8, 12, 0), phone=NEW_YORK_NUMBER,
                  clinic_rules=uncapped, subject="appointment:42",
                  history=history).verdict is Verdict.send


def test_a_uk_clinic_has_no_caps_unless_it_sets_them():
    history = sent(local(LONDON, 2026, 12, 8, 9, 0), local(LONDON, 2026, 12, 8, 10, 0))
    now = local(LONDON, 2026, 12, 8, 11, 0)
    uk = {"phone": UK_MOBILE, "clinic_country": "GB", "clinic_timezone": "Europe/London"}
    assert decide(now, history=history, **uk).verdict is Verdict.send
    capped = decide(now, history=history, clinic_rules={"caps": {"per_24h": 2}}, **uk)
    assert capped.until == local(LONDON, 2026, 12, 9, 9, 0)
    assert capped.reason == "3rd started message in 24 hours (limit 2)"


# -- body rules --------------------------------------------------------------------------------


def test_a_body_of_161_characters_is_dropped_and_160_is_sent():
    now = local(NEW_YORK, 2026, 12, 7, 10, 0)
    fits = (BODY + " " + "x" * 160)[:160]
    assert decide(now, body=fits).verdict is Verdict.send
    too_long = decide(now, body=fits + "x")
    assert too_long == Decision(Verdict.drop, "longer than 160 characters (161)")


def test_length_counts_utf16_code_units_as_twilio_does():
    now = local(NEW_YORK, 2026, 12, 7, 10, 0)
    body = (BODY + " " + "x" * 160)[:159] + "\N{TOOTH}"  # 160 characters, 161 units
    assert decide(now, body=body).reason == "longer than 160 characters (161)"


def test_a_body_without_the_clinics_name_or_opt_out_words_is_dropped():
    now = local(NEW_YORK, 2026, 12, 7, 10, 0)
    nameless = decide(now, body="You have not replied yet; we can still book you. Reply STOP "
                                "to opt out.")
    assert nameless == Decision(Verdict.drop, "does not name the clinic (Riverside Dental)")
    no_opt_out = decide(now, body="Riverside Dental: we can still book you. Unstoppable smiles!")
    assert no_opt_out == Decision(Verdict.drop,
                                  "no opt-out words (e.g. 'Reply STOP to opt out.')")
    # Case and spacing of the name, and of the opt-out word, do not matter.
    assert decide(now, body="RIVERSIDE  dental: reply stop to opt out").verdict is Verdict.send


def test_body_rules_tell_a_composer_what_to_write():
    rules = GATE.body_rules(phone=FLORIDA_NUMBER, clinic_country="US", clinic_rules={})
    assert (rules.max_chars, rules.must_name_clinic, rules.opt_out_hint) == (
        160, True, "Reply STOP to opt out.")
    longer = GATE.body_rules(phone=UK_MOBILE, clinic_country="GB",
                             clinic_rules={"body": {"max_chars": 320}})
    assert (longer.max_chars, longer.opt_out_words) == (320, ("STOP",))
    assert GATE.body_rules(phone=UK_MOBILE, clinic_country="GB",
                           clinic_rules={}).max_chars is None


# -- expiry ------------------------------------------------------------------------------------


def test_a_reminder_whose_next_allowed_moment_is_after_the_appointment_is_dropped():
    decision = decide(local(NEW_YORK, 2026, 12, 7, 21, 30), phone=FLORIDA_NUMBER,
                      subject="appointment:42", expires_at=local(NEW_YORK, 2026, 12, 8, 7, 30))
    assert decision.verdict is Verdict.drop
    assert decision.until is None
    assert decision.reason == (
        "quiet hours 20:00-08:00 in America/New_York (Florida); the next allowed moment, "
        "Tue 08 Dec 08:00 America/New_York, is not before it expires at "
        "Tue 08 Dec 07:30 America/New_York")


def test_a_reminder_that_can_still_arrive_before_the_appointment_is_deferred():
    decision = decide(local(NEW_YORK, 2026, 12, 7, 21, 30), phone=FLORIDA_NUMBER,
                      expires_at=local(NEW_YORK, 2026, 12, 8, 9, 0))
    assert (decision.verdict, decision.until) == (Verdict.defer,
                                                  local(NEW_YORK, 2026, 12, 8, 8, 0))


def test_an_expired_message_is_dropped_even_in_sending_hours():
    decision = decide(local(NEW_YORK, 2026, 12, 7, 10, 0),
                      expires_at=local(NEW_YORK, 2026, 12, 7, 9, 0))
    assert decision == Decision(Verdict.drop, "expired at Mon 07 Dec 09:00 America/New_York")


# -- the recipient's zone ----------------------------------------------------------------------


def test_a_number_with_several_zones_uses_the_clinics_zone():
    # 07:30 in Chicago is 08:30 in New York; a toll-free number tells neither.
    held = decide(local(CHICAGO, 2026, 12, 7, 7, 30), phone=US_TOLL_FREE,
                  clinic_timezone="America/Chicago")
    assert held.until == local(CHICAGO, 2026, 12, 7, 8, 0)
    assert GATE.recipient_zone(AUSTRALIAN_MOBILE, clinic_timezone="Australia/Perth") == \
        ZoneInfo("Australia/Perth")


def test_a_number_with_one_zone_or_zones_on_the_same_clock_uses_that_zone():
    assert GATE.recipient_zone("+61298765432", clinic_timezone="Australia/Perth") == \
        ZoneInfo("Australia/Sydney")
    assert GATE.recipient_zone(FLORIDA_NUMBER, clinic_timezone="America/Los_Angeles") == \
        NEW_YORK
    # phonenumbers places UK mobiles in London, Guernsey and the Isle of Man: one clock.
    assert GATE.recipient_zone(UK_MOBILE, clinic_timezone="Europe/London") == LONDON
    from_new_york = GATE.recipient_zone(UK_MOBILE, clinic_timezone="America/New_York")
    winter = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
    assert winter.astimezone(from_new_york).utcoffset() == timedelta(0)


def test_a_number_nobody_can_place_uses_the_clinics_zone():
    assert GATE.recipient_zone("+15555550123", clinic_timezone="America/Denver") == \
        ZoneInfo("America/Denver")
    assert GATE.recipient_zone("not a number", clinic_timezone="America/Denver") == \
        ZoneInfo("America/Denver")


# -- a clinic's overrides ----------------------------------------------------------------------


def test_a_clinic_that_turns_caps_off_may_send_twice_a_day():
    history = sent(local(NEW_YORK, 2026, 12, 8, 9, 0))
    now = local(NEW_YORK, 2026, 12, 8, 15, 0)
    assert decide(now, history=history).verdict is Verdict.defer
    assert decide(now, history=history, clinic_rules={"caps": False}).verdict is Verdict.send
    assert decide(now, history=history,
                  clinic_rules={"caps": {"per_24h": None}}).verdict is Verdict.send


def test_a_clinics_own_sending_hours_replace_its_profiles():
    shorter = {"sending_hours": "09:00-17:00"}
    held = decide(local(NEW_YORK, 2026, 12, 7, 8, 30), clinic_rules=shorter)
    assert (held.until, held.reason) == (local(NEW_YORK, 2026, 12, 7, 9, 0),
                                         "quiet hours 17:00-09:00 in America/New_York")
    uk = {"phone": UK_MOBILE, "clinic_country": "GB", "clinic_timezone": "Europe/London"}
    evening = local(LONDON, 2026, 12, 7, 20, 30)
    assert decide(evening, **uk).verdict is Verdict.defer
    assert decide(evening, clinic_rules={"sending_hours": "08:00-21:00"},
                  **uk).verdict is Verdict.send


def test_a_clinic_cannot_widen_a_states_hours():
    wider = {"sending_hours": "07:00-22:00"}
    assert decide(local(NEW_YORK, 2026, 12, 7, 7, 30), clinic_rules=wider).verdict is \
        Verdict.send
    held = decide(local(NEW_YORK, 2026, 12, 7, 7, 30), phone=FLORIDA_NUMBER, clinic_rules=wider)
    assert held.until == local(NEW_YORK, 2026, 12, 7, 8, 0)
    disjoint = decide(local(NEW_YORK, 2026, 12, 7, 12, 0), phone=FLORIDA_NUMBER,
                      clinic_rules={"sending_hours": "20:30-22:00"})
    assert disjoint == Decision(Verdict.drop, "the clinic's sending hours and the law in "
                                              "Florida leave no time of day to send")


@pytest.mark.parametrize("rules, field", [
    ({"caps": {"per_day": 1}}, "per_day"),
    ({"caps": {"per_24h": 0}}, "per_24h"),
    ({"sending_hours": "21:00-08:00"}, "sending_hours"),
    ({"sending_hours": "evenings"}, "sending_hours"),
    ({"quiet": "22:00"}, "quiet"),
])
def test_a_clinics_wrong_overrides_are_named(rules, field):
    with pytest.raises(OutreachRulesError, match=field):
        check_clinic_rules(rules)
    with pytest.raises(OutreachRulesError, match=field):
        decide(local(NEW_YORK, 2026, 12, 7, 10, 0), clinic_rules=rules)


def test_times_must_carry_their_zone():
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        decide(datetime(2026, 12, 7, 15, 0))


# -- the rules file ----------------------------------------------------------------------------


def test_a_rules_file_without_a_default_profile_is_refused(tmp_path: Path):
    path = tmp_path / "rules.yml"
    path.write_text('version: "1"\nprofiles:\n  us:\n    countries: [US]\n'
                    '    sending_hours: "08:00-21:00"\n    body: {}\n')
    with pytest.raises(OutreachRulesError, match="default"):
        ComplianceGate.from_file(path)


def test_a_country_in_two_profiles_is_refused(tmp_path: Path):
    path = tmp_path / "rules.yml"
    path.write_text('version: "1"\nprofiles:\n'
                    '  default: {countries: [US], sending_hours: "08:00-20:00", body: {}}\n'
                    '  us: {countries: [US], sending_hours: "08:00-21:00", body: {}}\n')
    with pytest.raises(OutreachRulesError, match="US is in both"):
        ComplianceGate.from_file(path)


def test_a_new_state_law_is_a_change_in_the_rules_file(tmp_path: Path):
    path = tmp_path / "rules.yml"
    path.write_text(RULES_FILE.read_text() + '\n  - name: New York\n    country_code: 1\n'
                    '    area_codes: [212]\n    sending_hours: "09:00-19:00"\n')
    gate = ComplianceGate.from_file(path)
    held = gate.decide(phone=NEW_YORK_NUMBER, clinic_country="US",
                       clinic_timezone="America/New_York", clinic_name=CLINIC, clinic_rules={},
                       body=BODY, subject="call:17", now=local(NEW_YORK, 2026, 12, 7, 8, 30),
                       history=[], expires_at=None)
    assert (held.until, held.reason) == (local(NEW_YORK, 2026, 12, 7, 9, 0),
                                         "quiet hours 19:00-09:00 in America/New_York (New York)")
