"""Opening hours in clinic-local time, across both clock changes in London and New York."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from booking.clinics.opening_hours import current_closing, is_open_at, local_at, next_opening
from tests.booking.conftest import utc

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def riverside(example_clinics):
    return example_clinics["riverside"]


@pytest.fixture
def northside(example_clinics):
    return example_clinics["northside"]


def test_open_and_closed_in_local_time_both_sides_of_spring_forward(riverside):
    # Friday 27 March 2026 is GMT: 08:00 local == 08:00 UTC.
    assert not is_open_at(riverside, utc(2026, 3, 27, 7, 59))
    assert is_open_at(riverside, utc(2026, 3, 27, 8, 0))
    # Monday 30 March is BST (clocks went forward on Sunday 29th): 08:00 local == 07:00 UTC.
    assert not is_open_at(riverside, utc(2026, 3, 30, 6, 59))
    assert is_open_at(riverside, utc(2026, 3, 30, 7, 0))
    assert is_open_at(riverside, utc(2026, 3, 30, 16, 59))
    assert not is_open_at(riverside, utc(2026, 3, 30, 17, 0))  # 18:00 BST


def test_autumn_fall_back_in_london(riverside):
    # Friday 23 October 2026 is BST, Monday 26 October is GMT again.
    assert is_open_at(riverside, utc(2026, 10, 23, 7, 0))
    assert not is_open_at(riverside, utc(2026, 10, 26, 7, 30))
    assert is_open_at(riverside, utc(2026, 10, 26, 8, 0))


def test_next_opening_over_the_weekend_and_the_clock_change(riverside):
    # Saturday 28 March 13:30 GMT: closed; Sunday closed; Monday opens 08:00 BST.
    opening = next_opening(riverside, utc(2026, 3, 28, 13, 30))
    assert opening == datetime(2026, 3, 30, 8, 0, tzinfo=LONDON)
    assert opening.utcoffset().total_seconds() == 3600
    assert (opening.hour, opening.minute) == (8, 0)


def test_next_opening_is_tomorrow_morning_after_close(riverside):
    # Thursday until 20:00; at 21:00 BST on Thursday 2 April the next opening is Friday 08:00.
    opening = next_opening(riverside, utc(2026, 4, 2, 20, 0))
    assert opening == datetime(2026, 4, 3, 8, 0, tzinfo=LONDON)
    assert opening.tzinfo == LONDON


def test_next_opening_skips_closures(riverside):
    # Christmas Eve (Thursday) after close: 25th and 26th are closures, 27th is Sunday.
    opening = next_opening(riverside, utc(2026, 12, 24, 20, 30))
    assert opening == datetime(2026, 12, 28, 8, 0, tzinfo=LONDON)
    assert not is_open_at(riverside, utc(2026, 12, 25, 10, 0))


def test_new_york_dst(northside):
    # Spring forward on Sunday 8 March 2026: 07:00 EST is 12:00 UTC, 07:00 EDT is 11:00 UTC.
    assert is_open_at(northside, utc(2026, 3, 6, 12, 0))
    assert not is_open_at(northside, utc(2026, 3, 6, 11, 30))
    assert is_open_at(northside, utc(2026, 3, 9, 11, 0))
    assert next_opening(northside, utc(2026, 3, 6, 21, 0)) == datetime(2026, 3, 9, 7, 0,
                                                                      tzinfo=NEW_YORK)
    # Fall back on Sunday 1 November: Monday 2 November 07:00 EST is 12:00 UTC.
    assert not is_open_at(northside, utc(2026, 11, 2, 11, 30))
    assert is_open_at(northside, utc(2026, 11, 2, 12, 0))


def test_while_open_next_opening_is_the_next_interval(riverside):
    opening = next_opening(riverside, utc(2026, 4, 1, 10, 0))  # Wednesday, open
    assert opening == datetime(2026, 4, 2, 8, 0, tzinfo=LONDON)
    assert current_closing(riverside, utc(2026, 4, 1, 10, 0)) == datetime(2026, 4, 1, 18, 0,
                                                                          tzinfo=LONDON)
    assert current_closing(riverside, utc(2026, 4, 1, 20, 0)) is None


def test_lunch_break_reopens_the_same_day(load_clinic, minimal):
    minimal["opening_hours"] = {"mon": ["09:00-12:30", "13:30-17:00"]}
    clinic = load_clinic(minimal)
    assert not is_open_at(clinic, utc(2026, 1, 5, 12, 45))
    assert next_opening(clinic, utc(2026, 1, 5, 12, 45)) == datetime(2026, 1, 5, 13, 30,
                                                                     tzinfo=LONDON)


def test_a_wall_time_skipped_by_spring_forward_lands_after_the_gap():
    skipped = local_at(datetime(2026, 3, 29).date(), datetime(2026, 1, 1, 1, 30).time(), LONDON)
    assert (skipped.hour, skipped.minute) == (2, 30)


def test_naive_instants_are_refused(riverside):
    with pytest.raises(ValueError):
        is_open_at(riverside, datetime(2026, 3, 30, 8, 0))


def test_a_clinic_with_no_hours_never_opens(load_clinic, minimal, sessions):
    clinic = load_clinic(minimal)
    clinic.opening_hours = []
    assert next_opening(clinic, utc(2026, 1, 5, 12, 45)) is None
