"""Slot arithmetic of the built-in rules, beyond the contract: edges, buffers, DST days."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from booking.models import Patient
from booking.scheduling.availability import (
    free_slots,
    grid_cells,
    intersect,
    load_calendar,
    merge,
)
from booking.scheduling.registry import get_adapter
from tests.booking.conftest import utc

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def _calendar(sessions, clinic):
    with sessions() as session:
        return load_calendar(session, clinic_id=clinic.id)


def test_the_last_slot_of_the_day_ends_at_closing(load_clinic, minimal, sessions):
    calendar = _calendar(sessions, load_clinic(minimal))
    monday = datetime(2026, 1, 5, tzinfo=LONDON)
    slots = free_slots(calendar, service="consult", window_start=monday,
                       window_end=monday + timedelta(days=1), now=utc(2026, 1, 1), busy={})
    assert slots[0].starts_at.astimezone(LONDON).time() == time(9)
    assert slots[-1].ends_at.astimezone(LONDON).time() == time(17)
    assert len(slots) == 31  # 09:00 .. 16:30 every 15 minutes


def test_busy_time_plus_buffer_blocks_neighbours(load_clinic, minimal, sessions):
    calendar = _calendar(sessions, load_clinic(minimal))
    busy = {"dr-a": [(utc(2026, 1, 5, 10, 0), utc(2026, 1, 5, 10, 40))]}  # incl. buffer
    slots = free_slots(calendar, service="consult", window_start=utc(2026, 1, 5, 9),
                       window_end=utc(2026, 1, 5, 12), now=utc(2026, 1, 1), busy=busy)
    starts = [s.starts_at.time() for s in slots]
    # A 09:30 start would run into 10:00 with its own 10-minute buffer; 10:45 is the next step.
    assert time(9, 15) in starts and time(9, 30) not in starts
    assert time(10, 30) not in starts and time(10, 45) in starts


def test_a_service_without_providers_books_the_clinic_itself(load_clinic, minimal, sessions,
                                                            make_contact):
    minimal["services"].append({"slug": "walk-in", "name": "Walk-in", "duration_minutes": 20})
    clinic = load_clinic(minimal)
    adapter = get_adapter(clinic, sessions, clock=lambda: utc(2026, 1, 1))
    (slot,) = adapter.find_free_slots(service="walk-in", window_start=utc(2026, 1, 5),
                                      window_end=utc(2026, 1, 6), limit=1)
    assert slot.provider is None
    contact = make_contact(clinic)
    patient = Patient(clinic_id=clinic.id, contact_id=contact.id, relation="self")
    appointment = adapter.book(slot=slot, patient=patient, service="walk-in",
                               idempotency_key="w")
    assert appointment.provider_id is None
    assert slot not in adapter.find_free_slots(service="walk-in", window_start=utc(2026, 1, 5),
                                               window_end=utc(2026, 1, 6))


def test_new_york_slots_keep_local_hours_across_spring_forward(example_clinics, sessions):
    northside = example_clinics["northside"]
    calendar = _calendar(sessions, northside)
    friday = datetime(2026, 3, 6, tzinfo=NEW_YORK)  # EST; clocks go forward Sunday 8 March
    slots = free_slots(calendar, service="follow-up", window_start=friday,
                       window_end=friday + timedelta(days=4), now=utc(2026, 3, 1), busy={})
    firsts = {}
    for slot in slots:
        firsts.setdefault(slot.starts_at.astimezone(NEW_YORK).date(), slot.starts_at)
    friday_first, monday_first = firsts[friday.date()], firsts[(friday + timedelta(3)).date()]
    assert friday_first.astimezone(NEW_YORK).time() == time(7)
    assert monday_first.astimezone(NEW_YORK).time() == time(7)
    assert (friday_first.hour, monday_first.hour) == (12, 11)  # UTC moved, local did not


def test_a_booking_claims_every_grid_cell_of_its_time_and_buffer():
    cells = grid_cells(utc(2026, 1, 5, 10, 0), utc(2026, 1, 5, 10, 40))
    assert len(cells) == 8 and cells[0] == utc(2026, 1, 5, 10, 0)
    assert grid_cells(utc(2026, 1, 5, 10, 2), utc(2026, 1, 5, 10, 7)) == [
        utc(2026, 1, 5, 10, 0), utc(2026, 1, 5, 10, 5)]


def test_interval_helpers():
    a = [(utc(2026, 1, 1, 9), utc(2026, 1, 1, 12)), (utc(2026, 1, 1, 11), utc(2026, 1, 1, 13))]
    assert merge(a) == [(utc(2026, 1, 1, 9), utc(2026, 1, 1, 13))]
    assert intersect(merge(a), [(utc(2026, 1, 1, 12, 30), utc(2026, 1, 1, 18))]) == [
        (utc(2026, 1, 1, 12, 30), utc(2026, 1, 1, 13))]
