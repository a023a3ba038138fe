"""Moving and cancelling a booked appointment by text, confirmed first, with the notice policy."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from booking.models import AppointmentStatus

pytestmark = pytest.mark.integration

WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def test_cancelling_asks_first_then_cancels_and_offers_to_rebook(patient, diary):
    quinn = patient()
    booked = diary.book_soonest("riverside", phone=quinn.number, service="check-up",
                                after=timedelta(days=2))
    question = quinn.says("I need to cancel my appointment")
    assert question.startswith("Just to check: cancel your Check-up on")
    assert "late-cancellation" not in question  # two days' notice is enough
    assert [a.status for a in quinn.appointments()] == [AppointmentStatus.booked]
    done = quinn.says("yes please")
    assert done.startswith("Done: your Check-up on") and "is cancelled" in done
    assert [a.status for a in quinn.appointments()] == [AppointmentStatus.cancelled]
    assert quinn.appointments()[0].id == booked.id
    assert "cancelled" in quinn.funnel()
    offer = quinn.says("yes")  # "Would you like to book another time?"
    assert offer.startswith("I can book Check-up")


def test_cancelling_within_the_notice_period_warns_about_the_fee(patient, diary):
    rae = patient()
    diary.appointment_starting_in("riverside", phone=rae.number, service="lip-filler", hours=5)
    question = rae.says("please cancel my appointment")
    assert "less than 24 hours away" in question
    assert "charged £25" in question
    rae.says("yes")
    assert [a.status for a in rae.appointments()] == [AppointmentStatus.cancelled]


def test_saying_no_keeps_the_appointment(patient, diary):
    sid = patient()
    diary.book_soonest("riverside", phone=sid.number, service="hygiene")
    sid.says("can you cancel my booking")
    kept = sid.says("no, keep it")
    assert kept.startswith("No problem, your Hygiene appointment on") and "stays booked" in kept
    assert not re.search(r"\bCANCEL\b", kept)
    assert [a.status for a in sid.appointments()] == [AppointmentStatus.booked]


def test_cancelling_with_nothing_booked_offers_to_book(patient):
    tia = patient()
    tia.ring()
    reply = tia.says("I want to cancel my appointment")
    assert "can't find an upcoming appointment" in reply
    assert tia.says("yes").startswith("Happy to help you book.")


def test_moving_the_only_appointment_to_a_named_day_confirms_before_moving(patient, diary):
    ula = patient()
    old = diary.book_soonest("riverside", phone=ula.number, service="check-up",
                             after=timedelta(days=1))
    # A weekday within the coming week, so its name means that date.
    day = datetime.now(timezone.utc).astimezone(ula.zone).date() + timedelta(days=2)
    while day.weekday() == 6:
        day += timedelta(days=1)
    offer = ula.says(f"can I move my appointment to {WEEKDAY_NAMES[day.weekday()]}?")
    assert offer.startswith("Sure, let's move your Check-up on")
    new_times = ula.offered()
    if "Sorry, nothing is free" not in offer:  # other tests may have filled that day
        assert all(s.starts_at.astimezone(ula.zone).date() == day for s in new_times), offer
    else:
        assert f"nothing is free on {day:%a} {day.day} {day:%b}." in offer
    question = ula.says("2")
    assert question.startswith("Just to check: move your Check-up from")
    assert [a.status for a in ula.appointments()] == [AppointmentStatus.booked]
    done = ula.says("yes")
    assert done.startswith("Done, you're moved: Check-up")
    assert "12 River Walk" in done
    old_row, new_row = ula.appointments()
    assert (old_row.id, old_row.status) == (old.id, AppointmentStatus.rescheduled)
    assert new_row.status == AppointmentStatus.booked
    assert new_row.starts_at == new_times[1].starts_at
    assert new_row.rescheduled_from_id == old.id


def test_with_two_appointments_the_bot_asks_which_one_to_move(patient, diary):
    val = patient()
    diary.book_soonest("riverside", phone=val.number, service="check-up")
    hygiene = diary.book_soonest("riverside", phone=val.number, service="hygiene",
                                 after=timedelta(days=4))
    which = val.says("I need to reschedule")
    assert "You have 2 appointments booked" in which
    assert re.search(r"^[12]\. Check-up on ", which, re.M)
    assert re.search(r"^[12]\. Hygiene appointment on ", which, re.M)
    offer = val.says("the hygiene one")
    assert offer.startswith("Sure, let's move your Hygiene appointment")
    val.says("3")
    val.says("yes")
    statuses = {a.id: a.status for a in val.appointments()}
    assert statuses[hygiene.id] == AppointmentStatus.rescheduled
    moved = [a for a in val.appointments() if a.rescheduled_from_id == hygiene.id]
    assert len(moved) == 1 and moved[0].service.slug == "hygiene"


def test_saying_no_to_the_new_time_keeps_the_old_one(patient, diary):
    wes = patient()
    diary.book_soonest("riverside", phone=wes.number, service="check-up")
    wes.says("can I change my appointment")
    wes.says("1")
    assert "stays booked" in wes.says("no")
    assert [a.status for a in wes.appointments()] == [AppointmentStatus.booked]


def test_booking_then_moving_it_straight_away(patient):
    xan = patient()
    xan.ring()
    xan.says("yes")
    xan.says("check up")
    xan.says("1")
    xan.says("Xan")
    offer = xan.says("actually can I move it to another day")
    assert offer.startswith("Sure, let's move your Check-up")
    xan.says("1")
    xan.says("yes")
    assert sorted(a.status.value for a in xan.appointments()) == ["booked", "rescheduled"]
