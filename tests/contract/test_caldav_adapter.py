"""What only the CalDAV adapter promises: what it writes, and which events count as busy."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import caldav
import pytest

from booking.db import make_engine, session_factory
from booking.models import Appointment, Base, Patient
from booking.scheduling.base import Slot
from tests.contract.conftest import NOW, Clock, _caldav, put_event

LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def cal(tmp_path, radicale):
    engine = make_engine(f"sqlite:///{tmp_path / 'caldav.db'}")
    Base.metadata.create_all(engine)
    harness = _caldav(session_factory(engine), tmp_path, Clock(NOW), radicale)
    yield harness
    harness.adapter.close()
    engine.dispose()


def _events(url: str) -> list:
    client = caldav.DAVClient(url=url, username="ringback", password="unused")
    return [event.icalendar_component for event in client.calendar(url=url).events()]


def _slots_on(cal, day: date, provider="dr-a") -> list[Slot]:
    start = datetime.combine(day, datetime.min.time(), LONDON)
    return cal.adapter.find_free_slots(service="consult", window_start=start,
                                       window_end=start + timedelta(days=1), provider=provider)


def test_a_booking_is_an_event_with_minimal_patient_details(cal):
    patient = cal.patient(first_name="Ann", last_name="Example", phone="+447700900123")
    slot = _slots_on(cal, date(2026, 3, 24))[0]
    appointment = cal.adapter.book(slot=slot, patient=patient, service="consult",
                                   idempotency_key="e1")
    (event,) = _events(cal.extra["calendars"]["dr-a"])
    assert str(event["UID"]) == appointment.external_id
    assert event["DTSTART"].dt == slot.starts_at and event["DTEND"].dt == slot.ends_at
    assert str(event["SUMMARY"]) == "Consultation: Ann E."
    text = event.to_ical().decode()
    assert "Example" not in text and "7700900123" not in text
    with cal.sessions() as session:
        assert session.get(Appointment, appointment.id).external_id == appointment.external_id


def test_the_event_names_the_person_booked_for_not_the_phone_owner(cal):
    parent = cal.patient(first_name="Sam", last_name="Taylor")
    emma = Patient(clinic_id=cal.clinic.id, contact_id=parent.contact_id, relation="daughter",
                   first_name="Emma", last_name="Taylor")
    slot = _slots_on(cal, date(2026, 3, 24))[0]
    cal.adapter.book(slot=slot, patient=emma, service="consult", idempotency_key="f1")
    (event,) = _events(cal.extra["calendars"]["dr-a"])
    assert str(event["SUMMARY"]) == "Consultation: Emma T."


def test_cancel_and_reschedule_keep_the_calendar_in_step(cal):
    patient = cal.patient()
    first, second = _slots_on(cal, date(2026, 3, 24))[:1] + _slots_on(cal, date(2026, 3, 25))[:1]
    appointment = cal.adapter.book(slot=first, patient=patient, service="consult",
                                   idempotency_key="m1")
    moved = cal.adapter.reschedule(appointment_id=appointment.id, new_slot=second,
                                   idempotency_key="m2")
    (event,) = _events(cal.extra["calendars"]["dr-a"])
    assert str(event["UID"]) == moved.external_id and event["DTSTART"].dt == second.starts_at
    cal.adapter.cancel(appointment_id=moved.id)
    assert _events(cal.extra["calendars"]["dr-a"]) == []


def test_a_cancel_after_staff_deleted_the_event_still_works(cal):
    patient = cal.patient()
    slot = _slots_on(cal, date(2026, 3, 24))[0]
    appointment = cal.adapter.book(slot=slot, patient=patient, service="consult",
                                   idempotency_key="d1")
    url = cal.extra["calendars"]["dr-a"]
    client = caldav.DAVClient(url=url, username="ringback", password="unused")
    client.calendar(url=url).event_by_uid(appointment.external_id).delete()
    assert cal.adapter.cancel(appointment_id=appointment.id).status.value == "cancelled"


def test_which_events_block_time(cal):
    url = cal.extra["calendars"]["dr-a"]
    tuesday = date(2026, 3, 24)
    at = lambda h, m=0: datetime(2026, 3, 24, h, m, tzinfo=LONDON)  # noqa: E731
    put_event(url, start=at(10), end=at(11), summary="Staff meeting")
    put_event(url, start=at(14), end=at(15), summary="Reminder only", transparent=True)
    starts = {s.starts_at.astimezone(LONDON).time() for s in _slots_on(cal, tuesday)}
    assert at(10).time() not in starts and at(10, 30).time() not in starts
    assert at(9, 15).time() in starts and at(11).time() in starts
    assert at(14).time() in starts  # transparent events do not block
    # An all-day event blocks the provider's whole local day; other providers are unaffected.
    put_event(url, start=date(2026, 3, 25), end=date(2026, 3, 26), summary="Annual leave")
    assert _slots_on(cal, date(2026, 3, 25)) == []
    assert _slots_on(cal, date(2026, 3, 25), provider="dr-b")


def test_recurring_events_block_every_occurrence(cal):
    url = cal.extra["calendars"]["dr-a"]
    client = caldav.DAVClient(url=url, username="ringback", password="unused")
    client.calendar(url=url).save_event(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n"
        "UID:lunch-walk\r\nDTSTAMP:20260101T000000Z\r\n"
        "DTSTART;TZID=Europe/London:20260323T130000\r\n"
        "DTEND;TZID=Europe/London:20260323T140000\r\n"
        "RRULE:FREQ=DAILY;COUNT=10\r\nSUMMARY:Lunch\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    # Either side of the clock change the lunch stays at 13:00 local (13:00 UTC, then 12:00).
    for day in (date(2026, 3, 24), date(2026, 3, 30)):
        starts = {s.starts_at.astimezone(LONDON).time().hour for s in _slots_on(cal, day)}
        assert 13 not in starts and 14 in starts
