"""The scheduling adapter contract: every adapter (built-in, CalDAV, third-party) passes it.

See docs/adapters.md. Each test receives a `harness` (tests/contract/conftest.py) holding an
adapter for the same clinic: London, Mon-Fri 09:00-17:00, Sat 09:00-12:00, closed over
Easter (3-6 April 2026); Dr A works all opening hours, Dr B Mon-Wed 12:00-17:00; a 30-minute
consultation with a 10-minute buffer (both doctors), a 60-minute scan (Dr A); lead time 1 hour,
horizon 21 days, slots every 15 minutes. The clock stands at Monday 23 March 2026 06:00 UTC.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from booking.models import Appointment, AppointmentStatus, Patient
from booking.scheduling.base import (
    CalendarUnavailable,
    InvalidRequest,
    Slot,
    SlotUnavailable,
)
from tests.contract.conftest import NOW, two_weeks

LONDON = ZoneInfo("Europe/London")


def local(slot: Slot) -> datetime:
    return slot.starts_at.astimezone(LONDON)


def first_free(harness, service="consult", provider=None, after=NOW) -> Slot:
    (slot,) = harness.adapter.find_free_slots(
        service=service, window_start=after, window_end=after + timedelta(days=14),
        provider=provider, limit=1)
    return slot


def count_appointments(harness) -> int:
    with harness.sessions() as session:
        return session.scalar(select(func.count()).select_from(Appointment))


# -- finding slots -------------------------------------------------------------------------


def test_slots_are_sorted_typed_and_inside_the_window(harness):
    start, end = two_weeks()
    slots = harness.adapter.find_free_slots(service="consult", window_start=start,
                                            window_end=end)
    assert slots, "a two-week window at an open clinic has free slots"
    assert all(isinstance(slot, Slot) for slot in slots)
    assert [s.starts_at for s in slots] == sorted(s.starts_at for s in slots)
    for slot in slots:
        assert slot.starts_at.tzinfo is not None and slot.starts_at.utcoffset() == timedelta(0)
        assert start <= slot.starts_at < end
        assert slot.ends_at - slot.starts_at == timedelta(minutes=30)
        assert slot.service == "consult"
        assert slot.provider in {"dr-a", "dr-b"}


def test_slots_respect_opening_hours_provider_hours_and_closures(harness):
    start, end = two_weeks()
    slots = harness.adapter.find_free_slots(service="consult", window_start=start,
                                            window_end=end)
    for slot in slots:
        starts, ends = local(slot), slot.ends_at.astimezone(LONDON)
        weekday = starts.weekday()
        assert weekday != 6, "closed on Sundays"
        closing = time(12) if weekday == 5 else time(17)
        assert time(9) <= starts.time() and ends.time() <= closing
        assert not (datetime(2026, 4, 3).date() <= starts.date() <= datetime(2026, 4, 6).date())
        if slot.provider == "dr-b":
            assert weekday in (0, 1, 2) and starts.time() >= time(12)
    assert {s.provider for s in slots} == {"dr-a", "dr-b"}


def test_slots_start_on_the_local_step_on_both_sides_of_the_clock_change(harness):
    start, end = two_weeks()
    slots = harness.adapter.find_free_slots(service="scan", window_start=start, window_end=end)
    firsts = {}
    for slot in slots:
        firsts.setdefault(local(slot).date(), local(slot))
        assert local(slot).minute % 15 == 0
    # Friday 27 March (GMT) and Monday 30 March (BST) both start at 09:00 local time.
    assert firsts[datetime(2026, 3, 27).date()].time() == time(9)
    assert firsts[datetime(2026, 3, 30).date()].time() == time(9)
    assert firsts[datetime(2026, 3, 27).date()].utcoffset() == timedelta(0)
    assert firsts[datetime(2026, 3, 30).date()].utcoffset() == timedelta(hours=1)


def test_lead_time_and_horizon_are_respected(harness):
    harness.clock.now = datetime(2026, 3, 23, 10, 2, tzinfo=timezone.utc)  # Monday 10:02 GMT
    slot = first_free(harness, after=harness.clock.now)
    assert slot.starts_at == datetime(2026, 3, 23, 11, 15, tzinfo=timezone.utc)
    slots = harness.adapter.find_free_slots(
        service="consult", window_start=harness.clock.now,
        window_end=harness.clock.now + timedelta(days=60))
    assert max(s.starts_at for s in slots) < harness.clock.now + timedelta(days=21)
    past = harness.adapter.find_free_slots(
        service="consult", window_start=NOW - timedelta(days=7), window_end=NOW)
    assert past == []


def test_limit_and_provider_filter(harness):
    start, end = two_weeks()
    assert len(harness.adapter.find_free_slots(service="consult", window_start=start,
                                               window_end=end, limit=3)) == 3
    only_b = harness.adapter.find_free_slots(service="consult", window_start=start,
                                             window_end=end, provider="dr-b")
    assert only_b and {s.provider for s in only_b} == {"dr-b"}
    assert harness.adapter.find_free_slots(service="consult", window_start=start,
                                           window_end=end, limit=0) == []


def test_a_narrow_window_answers_thursday_afternoon(harness):
    thursday_noon = datetime(2026, 3, 26, 12, 0, tzinfo=LONDON)
    slots = harness.adapter.find_free_slots(service="consult", window_start=thursday_noon,
                                            window_end=thursday_noon + timedelta(hours=5))
    assert slots and all(local(s).date() == thursday_noon.date() for s in slots)
    assert local(slots[0]).time() == time(12) and local(slots[-1]).time() == time(16, 30)


# -- booking -------------------------------------------------------------------------------


def test_booking_returns_an_appointment_row_the_rest_of_ringback_sees(harness):
    patient = harness.patient()
    slot = first_free(harness)
    appointment = harness.adapter.book(slot=slot, patient=patient, service="consult",
                                       idempotency_key="booking-1")
    assert appointment.id is not None
    assert appointment.status == AppointmentStatus.booked
    assert (appointment.starts_at, appointment.ends_at) == (slot.starts_at, slot.ends_at)
    assert appointment.contact_id == patient.contact_id
    assert appointment.patient_id == patient.id
    assert appointment.service.slug == "consult"
    assert appointment.provider.slug == slot.provider
    with harness.sessions() as session:
        stored = session.get(Appointment, appointment.id)
        assert stored.clinic_id == harness.clinic.id
    assert [a.id for a in harness.adapter.upcoming_for_contact(contact=patient.contact)] == [
        appointment.id]


def test_a_booking_is_for_the_person_not_the_phone(harness):
    parent = harness.patient("Sam", "Taylor")
    emma = Patient(clinic_id=harness.clinic.id, contact_id=parent.contact_id,
                   relation="daughter", first_name="Emma", last_name="Taylor",
                   date_of_birth=date(2018, 5, 4))
    slot = first_free(harness, provider="dr-a")
    later = first_free(harness, provider="dr-a", after=slot.ends_at + timedelta(hours=1))
    for_parent = harness.adapter.book(slot=slot, patient=parent, service="consult",
                                      idempotency_key="family-1")
    for_emma = harness.adapter.book(slot=later, patient=emma, service="consult",
                                    idempotency_key="family-2")
    assert for_parent.patient_id == parent.id
    # A person not stored before is stored with their booking, once.
    assert for_emma.patient_id not in (None, parent.id)
    again = harness.adapter.book(slot=later, patient=emma, service="consult",
                                 idempotency_key="family-2")
    assert again.patient_id == for_emma.patient_id
    upcoming = harness.adapter.upcoming_for_contact(contact=parent.contact)
    assert [(a.patient.first_name, a.patient.relation, a.patient.date_of_birth)
            for a in upcoming] == [("Sam", "self", None),
                                   ("Emma", "daughter", date(2018, 5, 4))]
    assert {a.contact_id for a in upcoming} == {parent.contact_id}
    moved = harness.adapter.reschedule(
        appointment_id=for_emma.id, idempotency_key="family-3",
        new_slot=first_free(harness, provider="dr-a", after=later.ends_at + timedelta(days=1)))
    assert moved.patient.first_name == "Emma"


def test_the_same_idempotency_key_returns_the_same_appointment(harness):
    patient = harness.patient()
    slot = first_free(harness)
    first = harness.adapter.book(slot=slot, patient=patient, service="consult",
                                 idempotency_key="retry-me")
    again = harness.adapter.book(slot=slot, patient=patient, service="consult",
                                 idempotency_key="retry-me")
    assert again.id == first.id
    assert count_appointments(harness) == 1


def test_a_booked_slot_and_its_buffer_are_no_longer_offered(harness):
    patient = harness.patient()
    slot = first_free(harness, provider="dr-a")
    harness.adapter.book(slot=slot, patient=patient, service="consult", idempotency_key="b")
    after = harness.adapter.find_free_slots(
        service="consult", window_start=slot.starts_at - timedelta(hours=1),
        window_end=slot.ends_at + timedelta(hours=1), provider="dr-a")
    for other in after:
        # 30 minutes plus the 10-minute buffer on either side must stay clear.
        assert other.ends_at + timedelta(minutes=10) <= slot.starts_at or \
            other.starts_at >= slot.ends_at + timedelta(minutes=10)
    assert slot not in after


def test_booking_a_taken_slot_raises_slot_unavailable(harness):
    slot = first_free(harness)
    harness.adapter.book(slot=slot, patient=harness.patient(), service="consult",
                         idempotency_key="first")
    with pytest.raises(SlotUnavailable):
        harness.adapter.book(slot=slot, patient=harness.patient("Bob"), service="consult",
                             idempotency_key="second")
    assert count_appointments(harness) == 1


def test_a_time_taken_elsewhere_after_it_was_offered_is_detected(harness):
    offered = first_free(harness, provider="dr-a")
    harness.take_elsewhere(offered)
    before = count_appointments(harness)
    with pytest.raises(SlotUnavailable):
        harness.adapter.book(slot=offered, patient=harness.patient(), service="consult",
                             idempotency_key="too-late")
    assert count_appointments(harness) == before
    assert offered not in harness.adapter.find_free_slots(
        service="consult", window_start=offered.starts_at,
        window_end=offered.starts_at + timedelta(minutes=1), provider="dr-a")


def test_a_slot_that_was_never_offered_is_refused(harness):
    sunday = datetime(2026, 3, 29, 10, 0, tzinfo=LONDON)
    closed = Slot(starts_at=sunday, ends_at=sunday + timedelta(minutes=30), provider="dr-a",
                  service="consult")
    with pytest.raises(SlotUnavailable):
        harness.adapter.book(slot=closed, patient=harness.patient(), service="consult",
                             idempotency_key="sunday")


# -- cancelling and moving -----------------------------------------------------------------


def test_cancel_frees_the_time_and_is_harmless_twice(harness):
    patient = harness.patient()
    slot = first_free(harness)
    appointment = harness.adapter.book(slot=slot, patient=patient, service="consult",
                                       idempotency_key="c")
    cancelled = harness.adapter.cancel(appointment_id=appointment.id)
    assert cancelled.status == AppointmentStatus.cancelled
    assert harness.adapter.cancel(appointment_id=appointment.id).status == \
        AppointmentStatus.cancelled
    assert harness.adapter.upcoming_for_contact(contact=patient.contact) == []
    assert first_free(harness) == slot
    rebooked = harness.adapter.book(slot=slot, patient=harness.patient("Bob"),
                                    service="consult", idempotency_key="c2")
    assert rebooked.id != appointment.id


def test_reschedule_moves_the_booking_and_frees_the_old_time(harness):
    patient = harness.patient()
    slot = first_free(harness, provider="dr-a")
    old = harness.adapter.book(slot=slot, patient=patient, service="consult",
                               idempotency_key="r0")
    later = first_free(harness, provider="dr-a", after=slot.starts_at + timedelta(days=2))
    new = harness.adapter.reschedule(appointment_id=old.id, new_slot=later,
                                     idempotency_key="r1")
    assert new.id != old.id and new.rescheduled_from_id == old.id
    assert (new.starts_at, new.provider.slug) == (later.starts_at, "dr-a")
    again = harness.adapter.reschedule(appointment_id=old.id, new_slot=later,
                                       idempotency_key="r1")
    assert again.id == new.id
    with harness.sessions() as session:
        assert session.get(Appointment, old.id).status == AppointmentStatus.rescheduled
    assert [a.id for a in harness.adapter.upcoming_for_contact(contact=patient.contact)] == [new.id]
    assert first_free(harness, provider="dr-a") == slot


def test_reschedule_by_a_few_minutes_may_overlap_itself(harness):
    patient = harness.patient()
    slot = first_free(harness, provider="dr-a")
    old = harness.adapter.book(slot=slot, patient=patient, service="consult",
                               idempotency_key="s0")
    nudged = Slot(starts_at=slot.starts_at + timedelta(minutes=15),
                  ends_at=slot.ends_at + timedelta(minutes=15), provider="dr-a",
                  service="consult")
    new = harness.adapter.reschedule(appointment_id=old.id, new_slot=nudged,
                                     idempotency_key="s1")
    assert new.starts_at == nudged.starts_at


def test_reschedule_to_a_taken_time_keeps_the_original(harness):
    patient = harness.patient()
    slot = first_free(harness, provider="dr-a")
    old = harness.adapter.book(slot=slot, patient=patient, service="consult",
                               idempotency_key="t0")
    other = first_free(harness, provider="dr-a", after=slot.starts_at + timedelta(days=1))
    harness.take_elsewhere(other)
    with pytest.raises(SlotUnavailable):
        harness.adapter.reschedule(appointment_id=old.id, new_slot=other, idempotency_key="t1")
    assert [a.id for a in harness.adapter.upcoming_for_contact(contact=patient.contact)] == [old.id]
    with harness.sessions() as session:
        assert session.get(Appointment, old.id).status == AppointmentStatus.booked


# -- invalid requests and outages ----------------------------------------------------------


def test_invalid_requests_are_typed(harness):
    start, end = two_weeks()
    with pytest.raises(InvalidRequest):
        harness.adapter.find_free_slots(service="no-such-service", window_start=start,
                                        window_end=end)
    with pytest.raises(InvalidRequest):
        harness.adapter.find_free_slots(service="scan", window_start=start, window_end=end,
                                        provider="dr-b")
    with pytest.raises(InvalidRequest):
        harness.adapter.find_free_slots(service="consult", window_start=start.replace(
            tzinfo=None), window_end=end)
    slot = first_free(harness)
    with pytest.raises(InvalidRequest):
        harness.adapter.book(slot=slot, patient=harness.patient(), service="scan",
                             idempotency_key="wrong-service")
    with pytest.raises(InvalidRequest):
        harness.adapter.cancel(appointment_id=999_999)
    stranger = Patient(clinic_id=harness.clinic.id + 1000, contact_id=1, first_name="X")
    with pytest.raises(InvalidRequest):
        harness.adapter.book(slot=slot, patient=stranger, service="consult",
                             idempotency_key="stranger")


def test_an_unreachable_calendar_is_retryable_and_books_nothing(harness):
    slot = first_free(harness)
    patient = harness.patient()
    before = count_appointments(harness)
    harness.make_unreachable()
    start, end = two_weeks()
    with pytest.raises(CalendarUnavailable):
        harness.adapter.find_free_slots(service="consult", window_start=start, window_end=end)
    with pytest.raises(CalendarUnavailable):
        harness.adapter.book(slot=slot, patient=patient, service="consult",
                             idempotency_key="offline")
    assert count_appointments(harness) == before
