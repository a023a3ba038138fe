"""Which times are offered, and how offers and bookings are worded, against a real diary."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from booking.dialogue.appointment_booking import (
    confirmation_text,
    describe,
    describe_wish,
    find_service,
    nearest_to,
    nearest_to_wish,
    offer_text,
    propose,
    spread,
)
from booking.dialogue.slot_choice import DAY_FIRST, MONTH_FIRST, Preference, preference
from booking.models import Contact, Patient
from booking.scheduling.base import Slot
from booking.scheduling.registry import get_adapter
from tests.dialogue.conftest import FixedClock

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def riverside(diary_clinics):
    sessions, clinics = diary_clinics
    return sessions, clinics["riverside"]


def adapter_at(sessions, clinic, now: datetime):
    return get_adapter(clinic, sessions, clock=FixedClock(now))


def service(clinic, slug: str):
    return next(s for s in clinic.services if s.slug == slug)


def local(slots: list[Slot], zone=LONDON) -> list[datetime]:
    return [s.starts_at.astimezone(zone) for s in slots]


def test_offers_start_with_the_soonest_and_spread_over_days_and_times_of_day(riverside):
    sessions, clinic = riverside
    now = utc(2026, 11, 23, 9, 0)  # Monday 09:00 GMT
    slots = propose(adapter_at(sessions, clinic, now), clinic=clinic,
                    service=service(clinic, "check-up"), now=now)
    starts = local(slots)
    assert starts[0] == datetime(2026, 11, 23, 10, 0, tzinfo=LONDON)  # an hour's lead time
    assert len({(s.date(), s.hour < 12) for s in starts}) == 3
    assert starts == sorted(starts)


def test_spread_keeps_three_offers_an_hour_apart_on_a_one_day_wish():
    base = utc(2026, 11, 26, 14, 0)
    slots = [Slot(base + timedelta(minutes=15 * i), base + timedelta(minutes=15 * i + 30),
                  "dr-a", "check-up") for i in range(12)]
    chosen = spread(slots, zone=LONDON)
    gaps = [b.starts_at - a.starts_at for a, b in zip(chosen, chosen[1:], strict=False)]
    assert len(chosen) == 3 and all(gap >= timedelta(hours=1) for gap in gaps)


def test_a_wish_with_a_time_offers_the_nearest_to_it_first(riverside):
    sessions, clinic = riverside
    now = utc(2026, 11, 23, 9, 0)
    wish = preference("thursday half 2", now=now, zone=LONDON, date_order=DAY_FIRST)
    slots = propose(adapter_at(sessions, clinic, now), clinic=clinic,
                    service=service(clinic, "check-up"), now=now, wish=wish)
    starts = local(slots)
    assert all(s.date() == date(2026, 11, 26) for s in starts)
    assert datetime(2026, 11, 26, 14, 30, tzinfo=LONDON) in starts


def test_a_full_wish_gets_the_nearest_times_instead(riverside):
    sessions, clinic = riverside
    now = utc(2026, 11, 23, 9, 0)
    sunday = preference("sunday", now=now, zone=LONDON, date_order=DAY_FIRST)  # closed
    adapter = adapter_at(sessions, clinic, now)
    filler = service(clinic, "lip-filler")
    assert propose(adapter, clinic=clinic, service=filler, now=now, wish=sunday) == []
    nearest = nearest_to_wish(adapter, clinic=clinic, service=filler, now=now, wish=sunday)
    days = {s.date() for s in local(nearest)}
    assert days <= {date(2026, 11, 28), date(2026, 11, 30)}  # Saturday and Monday either side
    assert describe_wish(sunday, clinic=clinic) == "on Sun 29 Nov"
    morning = preference("saturday morning", now=now, zone=LONDON, date_order=DAY_FIRST)
    assert describe_wish(morning, clinic=clinic) == "on Sat 28 Nov in the morning"


def test_a_taken_time_gets_the_nearest_free_times(riverside):
    sessions, clinic = riverside
    now = utc(2026, 11, 23, 9, 0)
    adapter = adapter_at(sessions, clinic, now)
    taken = utc(2026, 11, 25, 11, 0)
    nearest = nearest_to(adapter, clinic=clinic, service=service(clinic, "check-up"), now=now,
                         target=taken, avoid=[Slot(taken, taken + timedelta(minutes=30),
                                                   "dr-tom-hughes", "check-up")])
    assert taken not in {s.starts_at for s in nearest}
    assert max(abs(s.starts_at - taken) for s in nearest) <= timedelta(hours=3)


def test_declined_times_are_not_offered_again(riverside):
    sessions, clinic = riverside
    now = utc(2026, 11, 23, 9, 0)
    adapter = adapter_at(sessions, clinic, now)
    check_up = service(clinic, "check-up")
    first = propose(adapter, clinic=clinic, service=check_up, now=now)
    second = propose(adapter, clinic=clinic, service=check_up, now=now, avoid=first)
    assert not {s.starts_at for s in first} & {s.starts_at for s in second}


def test_offers_over_the_london_spring_forward_weekend_are_in_local_time(riverside):
    sessions, clinic = riverside
    now = utc(2026, 3, 28, 11, 0)  # Saturday 11:00 GMT; clocks go forward that night
    adapter = adapter_at(sessions, clinic, now)
    wish = preference("monday at 9", now=now, zone=LONDON, date_order=DAY_FIRST)
    slots = propose(adapter, clinic=clinic, service=service(clinic, "check-up"), now=now,
                    wish=wish)
    nine = next(s for s in slots if s.starts_at == utc(2026, 3, 30, 8, 0))  # 09:00 BST
    assert describe(nine.starts_at, clinic=clinic) == "Mon 30 Mar at 09:00"
    assert all(s.starts_at.astimezone(LONDON).date() == date(2026, 3, 30) for s in slots)
    soonest = propose(adapter, clinic=clinic, service=service(clinic, "check-up"), now=now)
    assert [s.starts_at.astimezone(LONDON).date() for s in soonest][0] == date(2026, 3, 28)
    assert all(s.starts_at.astimezone(LONDON).time() >= time(8) for s in soonest)


def test_offers_over_the_london_autumn_weekend_are_in_local_time(riverside):
    sessions, clinic = riverside
    now = utc(2026, 10, 24, 12, 30)  # Saturday 13:30 BST, after closing
    slots = propose(adapter_at(sessions, clinic, now), clinic=clinic,
                    service=service(clinic, "check-up"), now=now)
    assert slots[0].starts_at == utc(2026, 10, 26, 8, 0)  # Monday 08:00 GMT, opening time
    assert describe(slots[0].starts_at, clinic=clinic) == "Mon 26 Oct at 08:00"


def test_offers_over_the_new_york_weekends_are_in_local_time(diary_clinics):
    sessions, clinics = diary_clinics
    clinic = clinics["northside"]
    massage = service(clinic, "sports-massage")
    for now, monday in ((utc(2026, 3, 6, 22, 0), utc(2026, 3, 9, 15, 0)),  # 11:00 EDT
                        (utc(2026, 10, 30, 22, 0), utc(2026, 11, 2, 16, 0))):  # 11:00 EST
        slots = propose(adapter_at(sessions, clinic, now), clinic=clinic, service=massage,
                        now=now, wish=preference("monday", now=now, zone=NEW_YORK,
                                                 date_order=MONTH_FIRST))
        assert slots[0].starts_at == monday  # Sam Okafor starts at 11:00 local on Mondays
        assert describe(slots[0].starts_at, clinic=clinic).endswith("at 11 AM")


def test_offer_and_confirmation_wording(riverside):
    sessions, clinic = riverside
    now = utc(2026, 11, 23, 9, 0)
    adapter = adapter_at(sessions, clinic, now)
    filler = service(clinic, "lip-filler")
    slots = propose(adapter, clinic=clinic, service=filler, now=now)
    text = offer_text(slots, clinic=clinic, service=filler)
    assert text.splitlines()[0] == "I can book Lip filler at Riverside Dental & Aesthetics:"
    assert re.fullmatch(r"1\. \w{3} \d{1,2} \w{3} at \d\d:\d\d", text.splitlines()[1])
    with sessions() as session, session.begin():
        contact = Contact(clinic_id=clinic.id, phone="+447700900301", first_name="Ana")
        patient = Patient(clinic_id=clinic.id, contact=contact, relation="self",
                          first_name="Ana")
        session.add(patient)
    appointment = adapter.book(slot=slots[0], patient=patient, service=filler,
                               idempotency_key="wording")
    confirmation = confirmation_text(appointment, clinic=clinic, service=filler)
    assert confirmation.startswith("You're booked: Lip filler with Dr Amara Patel on ")
    assert describe(slots[0].starts_at, clinic=clinic) in confirmation
    assert "12 River Walk" in confirmation and "Avoid alcohol" in confirmation
    assert "24 hours' notice" in confirmation
    assert not re.search(r"\bCANCEL\b|\bSTOP\b", confirmation)


def test_describe_in_us_format(diary_clinics):
    _, clinics = diary_clinics
    instant = utc(2026, 12, 3, 19, 30)
    assert describe(instant, clinic=clinics["northside"]) == "Thu Dec 3 at 2:30 PM"
    assert describe(instant, clinic=clinics["riverside"]) == "Thu 3 Dec at 19:30"


@pytest.mark.parametrize("text, slug", [
    ("lip filler", "lip-filler"), ("a chekup please", "check-up"), ("lip filer", "lip-filler"),
    ("teeth whitning", "whitening"), ("scale and polsh", "hygiene"), ("botox", "anti-wrinkle"),
    ("can I leave a message", None), ("a filling", None),
    ("getting my teeth cleaned", "hygiene"), ("whitening my teeth", "whitening"),
])
def test_find_service_forgives_typos_in_longer_names(riverside, text, slug):
    _, clinic = riverside
    found = find_service(list(clinic.services), text)
    assert (found.slug if found else None) == slug


def test_preference_distance_is_zero_inside_the_wish():
    wish = Preference(date(2026, 11, 26), date(2026, 11, 26), time(17), None)
    assert wish.distance(datetime(2026, 11, 26, 18, 0)) == timedelta(0)
    assert wish.distance(datetime(2026, 11, 26, 16, 0)) == timedelta(hours=1)
    assert wish.distance(datetime(2026, 11, 27, 17, 0)) == timedelta(days=1)


@pytest.mark.parametrize("text, slug", [
    ("can I see dr patel?", "dr-amara-patel"), ("with Amara please", "dr-amara-patel"),
    ("is Tom Hughes free", "dr-tom-hughes"), ("Sophie if possible", "sophie-lee"),
    ("dr lee", "sophie-lee"), ("the first one", None), ("it's sam", None),
    ("dr someone", None),
])
def test_find_provider_by_the_name_patients_use(riverside, text, slug):
    from booking.dialogue.appointment_booking import find_provider

    _, clinic = riverside
    found = find_provider(list(clinic.providers), text)
    assert (found.slug if found else None) == slug


def test_offers_with_the_clinician_asked_for(riverside):
    sessions, clinic = riverside
    now = utc(2026, 11, 23, 9, 0)
    slots = propose(adapter_at(sessions, clinic, now), clinic=clinic,
                    service=service(clinic, "check-up"), now=now, provider="dr-tom-hughes")
    assert slots and {s.provider for s in slots} == {"dr-tom-hughes"}


def test_times_turned_down_are_not_followed_by_the_next_quarter_hour(riverside):
    sessions, clinic = riverside
    now = utc(2026, 11, 23, 9, 0)
    adapter = adapter_at(sessions, clinic, now)
    check_up = service(clinic, "check-up")
    thursday = preference("thursday", now=now, zone=LONDON, date_order=DAY_FIRST)
    first = propose(adapter, clinic=clinic, service=check_up, now=now, wish=thursday)
    second = propose(adapter, clinic=clinic, service=check_up, now=now, wish=thursday,
                     avoid=first)
    assert all(abs(a.starts_at - b.starts_at) >= timedelta(hours=1)
               for a in first for b in second)


def test_offers_never_overlap_the_patients_own_appointments(riverside):
    sessions, clinic = riverside
    now = utc(2026, 11, 23, 19, 0)  # Monday evening: tomorrow 08:00 is the first free time
    adapter = adapter_at(sessions, clinic, now)
    hygiene = service(clinic, "hygiene")
    first = propose(adapter, clinic=clinic, service=hygiene, now=now)[0]
    own = [(first.starts_at - timedelta(minutes=15), first.starts_at + timedelta(minutes=30))]
    wish = preference("tomorrow morning", now=now, zone=LONDON, date_order=DAY_FIRST)
    offers = {
        "soonest": propose(adapter, clinic=clinic, service=hygiene, now=now, busy=own),
        "wished": propose(adapter, clinic=clinic, service=hygiene, now=now, wish=wish, busy=own),
        "nearest a wish": nearest_to_wish(adapter, clinic=clinic, service=hygiene, now=now,
                                          wish=wish, busy=own),
        "nearest a taken time": nearest_to(adapter, clinic=clinic, service=hygiene, now=now,
                                           target=first.starts_at, busy=own),
    }
    for kind, slots in offers.items():
        assert slots, kind
        for slot in slots:
            assert slot.ends_at <= own[0][0] or slot.starts_at >= own[0][1], (kind, slot)
