"""Reading picks and wishes about time, with an explicit `now` (DST weekends included)."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from booking.dialogue.slot_choice import (
    DAY_FIRST,
    MONTH_FIRST,
    Preference,
    choose,
    date_order_for,
    matching_offers,
    mentioned_clock,
    mentioned_date,
    preference,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
# Monday 23 November 2026, 09:00 in London.
MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def london(*args: int) -> datetime:
    return datetime(*args, tzinfo=LONDON)


# Tue 24 Nov 10:00, Tue 24 Nov 14:30, Thu 26 Nov 09:15
OFFERED = [london(2026, 11, 24, 10, 0), london(2026, 11, 24, 14, 30),
           london(2026, 11, 26, 9, 15)]


def pick(text: str, offered=OFFERED, now=MONDAY, zone=LONDON, order=DAY_FIRST) -> list[int]:
    return matching_offers(text, offered, now=now, zone=zone, date_order=order)


@pytest.mark.parametrize("text, index", [
    ("1", 0), ("2", 1), ("3.", 2), ("two please", 1), ("the first one", 0),
    ("second one pls", 1), ("the 3rd", 2), ("option 2", 1), ("no. 3", 2), ("#1", 0),
    ("the last one", 2), ("the earliest", 0), ("1st one is good", 0), ("the earlier one", 0),
    ("the later one please", 2),
])
def test_an_ordinal_picks_that_offer(text, index):
    assert pick(text) == [index]


@pytest.mark.parametrize("text, index", [
    ("Thursday", 2), ("thurs works", 2), ("thurday", 2), ("10am", 0), ("10 am tuesday", 0),
    ("14:30", 1), ("half 2", 1), ("half past two", 1), ("2.30pm", 1), ("the 2:30 one", 1),
    ("9.15", 2), ("at 9:15 on thursday", 2), ("tuesday morning", 0),
    ("tuesday afternoon", 1), ("the 26th", 2), ("26/11", 2), ("the 10am one please", 0),
])
def test_a_day_or_time_picks_the_offer_it_names(text, index):
    assert pick(text) == [index]


def test_a_day_with_two_offers_points_at_both():
    assert pick("tuesday") == [0, 1]
    assert choose("tuesday", OFFERED, zone=LONDON, now=MONDAY) is None


@pytest.mark.parametrize("text", [
    "none of those work", "neither", "not tuesday", "I can't do those", "any other times?",
    "Friday", "11am", "yes", "ok", "what's the address", "", "have you got anything tuesday?",
    "any time tuesday",
])
def test_text_that_picks_nothing(text):
    assert pick(text) == []


def test_a_bare_hour_before_eight_is_the_afternoon_unless_the_morning_was_offered():
    assert mentioned_clock("at 2") == time(14, 0)
    assert mentioned_clock("after 5") == time(17, 0)
    assert mentioned_clock("at 9") == time(9, 0)
    assert mentioned_clock("7am") == time(7, 0)
    early = [datetime(2026, 11, 24, 7, 0, tzinfo=NEW_YORK)]
    assert pick("at 7", offered=early, zone=NEW_YORK) == [0]


@pytest.mark.parametrize("text, clock", [
    ("10am", time(10)), ("10 a.m.", time(10)), ("12pm", time(12)), ("12am", time(0)),
    ("half 2", time(14, 30)), ("quarter past 3", time(15, 15)), ("quarter to 4", time(15, 45)),
    ("14:30", time(14, 30)), ("10.45", time(10, 45)), ("noon", time(12)),
    ("3 o'clock", time(15)), ("2", None), ("the 3rd", None), ("27/11", None),
])
def test_clock_times(text, clock):
    assert mentioned_clock(text) == clock


@pytest.mark.parametrize("text, order, expected", [
    ("27/11", DAY_FIRST, date(2026, 11, 27)),
    ("3/12", DAY_FIRST, date(2026, 12, 3)),
    ("3/12", MONTH_FIRST, date(2027, 3, 12)),
    ("11/27", MONTH_FIRST, date(2026, 11, 27)),
    ("12/3", MONTH_FIRST, date(2026, 12, 3)),
    ("20/11", DAY_FIRST, date(2027, 11, 20)),  # already past this year
    ("Dec 2nd", DAY_FIRST, date(2026, 12, 2)),
    ("2nd of December", MONTH_FIRST, date(2026, 12, 2)),
    ("the 3rd", DAY_FIRST, date(2026, 12, 3)),  # the 3rd of this month has passed
    ("the 25th", MONTH_FIRST, date(2026, 11, 25)),
    ("tomorrow", DAY_FIRST, date(2026, 11, 24)),
    ("tomorow", DAY_FIRST, date(2026, 11, 24)),
    ("day after tomorrow", DAY_FIRST, date(2026, 11, 25)),
    ("friday", DAY_FIRST, date(2026, 11, 27)),
    ("monday", DAY_FIRST, date(2026, 11, 23)),
    ("next monday", DAY_FIRST, date(2026, 11, 30)),
    ("Thursday the 10th", DAY_FIRST, date(2026, 12, 10)),
])
def test_dates_in_the_clinics_order_and_in_the_future(text, order, expected):
    assert mentioned_date(text, today=date(2026, 11, 23), date_order=order) == expected


def test_locale_decides_the_date_order():
    assert date_order_for("en-US") == MONTH_FIRST
    assert date_order_for("en_US") == MONTH_FIRST
    assert date_order_for("en-GB") == DAY_FIRST
    assert date_order_for(None) == DAY_FIRST


def wish(text: str, now=MONDAY, zone=LONDON, order=DAY_FIRST) -> Preference | None:
    return preference(text, now=now, zone=zone, date_order=order)


def test_wishes_about_days_and_times():
    assert wish("tomorrow afternoon") == Preference(date(2026, 11, 24), date(2026, 11, 24),
                                                    time(12), time(17))
    assert wish("any time Friday") == Preference(date(2026, 11, 27), date(2026, 11, 27))
    assert wish("next week") == Preference(date(2026, 11, 30), date(2026, 12, 6))
    assert wish("after 5") == Preference(date(2026, 11, 23), date(2026, 12, 6), time(17), None)
    assert wish("before 10 on wednesday") == Preference(date(2026, 11, 25), date(2026, 11, 25),
                                                        None, time(10))
    assert wish("the weekend") == Preference(date(2026, 11, 28), date(2026, 11, 29))
    assert wish("mornings are better") == Preference(date(2026, 11, 23), date(2026, 12, 6),
                                                     time(0), time(12))
    around = wish("Thursday at 10")
    assert around.around == time(10) and around.first_day == date(2026, 11, 26)
    assert around.admits(london(2026, 11, 26, 10, 45))
    assert not around.admits(london(2026, 11, 26, 12, 0))


@pytest.mark.parametrize("text", ["none of those work", "no", "the first one", "yes please",
                                  "sam taylor"])
def test_no_wish_in_text_without_days_or_times(text):
    assert wish(text) is None


def test_a_us_wish_reads_month_first():
    assert wish("12/3", now=MONDAY, zone=NEW_YORK, order=MONTH_FIRST).first_day == \
        date(2026, 12, 3)
    assert wish("12/3", order=DAY_FIRST).first_day == date(2027, 3, 12)


# -- DST weekends: "today" and "tomorrow" are local days; picks compare local wall times ---


def test_london_spring_forward_late_saturday_night_tomorrow_is_sunday():
    now = datetime(2026, 3, 28, 23, 30, tzinfo=timezone.utc)  # Sat 23:30 GMT
    assert wish("tomorrow", now=now).first_day == date(2026, 3, 29)
    assert wish("monday 10am", now=now).first_day == date(2026, 3, 30)


def test_london_autumn_back_just_after_midnight_is_already_sunday():
    now = datetime(2026, 10, 24, 23, 30, tzinfo=timezone.utc)  # Sun 00:30 BST
    assert wish("tomorrow", now=now).first_day == date(2026, 10, 26)
    assert wish("today", now=now).first_day == date(2026, 10, 25)


def test_a_pick_by_clock_time_matches_local_time_across_the_london_change():
    now = datetime(2026, 3, 27, 12, 0, tzinfo=timezone.utc)  # Friday, GMT
    offered = [datetime(2026, 3, 28, 10, 0, tzinfo=timezone.utc),  # Sat 10:00 GMT
               datetime(2026, 3, 30, 9, 0, tzinfo=timezone.utc)]  # Mon 10:00 BST
    assert pick("monday at 10", offered=offered, now=now) == [1]
    assert pick("10am", offered=offered, now=now) == [0, 1]
    assert pick("saturday", offered=offered, now=now) == [0]


def test_new_york_spring_forward_and_fall_back():
    spring = datetime(2026, 3, 7, 20, 0, tzinfo=timezone.utc)  # Sat 15:00 EST
    offered = [datetime(2026, 3, 9, 14, 0, tzinfo=timezone.utc)]  # Mon 10:00 EDT
    assert pick("monday 10am", offered=offered, now=spring, zone=NEW_YORK) == [0]
    fall = datetime(2026, 11, 1, 4, 30, tzinfo=timezone.utc)  # Sun 00:30 EDT
    assert wish("tomorrow 9am", now=fall, zone=NEW_YORK, order=MONTH_FIRST).first_day == \
        date(2026, 11, 2)
    offered = [datetime(2026, 11, 2, 14, 0, tzinfo=timezone.utc)]  # Mon 09:00 EST
    assert pick("9am", offered=offered, now=fall, zone=NEW_YORK) == [0]


def test_a_wish_survives_the_trip_through_a_rasa_slot():
    for text in ("thursday at 10", "after 5", "next week", "tomorrow afternoon"):
        original = wish(text)
        assert Preference.from_dict(original.to_dict()) == original
