"""Follow-ups and reminders through the whole stack: the gateway's worker plans and sends them,
the patient answers through the signed webhooks, and the real Rasa and action server read the
answer against what was sent.

The clinic here follows up one minute after a text-back and sends at any hour (its own
compliance override: a UK clinic may), so the tests do not depend on the time of day; the
gate's hours and caps are tested with chosen clocks in test_gate and test_scheduled_messages.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from booking.models import (
    Appointment,
    AppointmentStatus,
    Clinic,
    Contact,
    FunnelEvent,
    JobKind,
    JobState,
    Patient,
    ScheduledJob,
    utcnow,
)
from tests.channels.conftest import wait_until
from tests.stack import RunningStack, start_stack

pytestmark = pytest.mark.integration

NUMBER = "+441632960621"
_ALL_DAY = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
BROOKSIDE = {
    "slug": "brookside", "name": "Brookside Dental", "timezone": "Europe/London",
    "country": "GB", "numbers": {"voice": NUMBER, "sms": NUMBER},
    "address": "3 Brook Lane", "opening_hours": _ALL_DAY,
    "services": [{"slug": "check-up", "name": "Check-up", "synonyms": ["check up", "checkup"],
                  "duration_minutes": 30, "providers": ["dr-a"]}],
    "providers": [{"slug": "dr-a", "name": "Dr Ames"}],
    "settings": {
        "booking": {"min_lead_minutes": 0, "horizon_days": 30, "slot_step_minutes": 15},
        "outreach": {"follow_ups": [{"after_minutes": 1}], "max_follow_ups": 1,
                     "reminder_hours": [24],
                     "compliance": {"sending_hours": "00:00-24:00"}},
    },
}
_patients = (f"+4477009006{n:02d}" for n in itertools.count())


@pytest.fixture(scope="module")
def stack(trained_model: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[RunningStack]:
    run_dir = tmp_path_factory.mktemp("outreach")
    clinics = run_dir / "clinics.yml"
    clinics.write_text(yaml.safe_dump({"clinics": [BROOKSIDE]}, sort_keys=False))
    running = start_stack(run_dir, model=trained_model, extra_env={
        "CLINICS_FILE": str(clinics), "OUTREACH_INTERVAL_SECONDS": "0.5",
        "OUTREACH_PLAN_INTERVAL_SECONDS": "1"})
    yield running
    running.stop()


def database(stack: RunningStack) -> Session:
    return Session(create_engine(stack.settings.database_url, future=True))


def bodies(stack: RunningStack, patient: str, count: int) -> list[str]:
    return [m["body"] for m in stack.phone.wait_for(patient, count=count, timeout=180)]


def says(stack: RunningStack, patient: str, text: str) -> str:
    before = len(stack.phone.sent_to(patient))
    stack.phone.text(sender=patient, clinic_number=NUMBER, body=text)
    return bodies(stack, patient, before + 1)[before]


def booked_for_tomorrow(stack: RunningStack, patient: str, *, daughter: str | None = None,
                        days_later: int = 0, status: AppointmentStatus = AppointmentStatus.booked
                        ) -> list[int]:
    """An appointment in a little under 24 hours (`days_later` moves it), booked a week ago
    (its reminder is due), and one for the daughter half an hour later when she is named."""
    now = utcnow().replace(second=0, microsecond=0)
    starts = (now + timedelta(hours=24, days=days_later)
              - timedelta(minutes=now.minute % 15 + 15))
    with database(stack) as session, session.begin():
        clinic = session.execute(select(Clinic).where(Clinic.slug == "brookside")).scalar_one()
        contact = Contact(clinic_id=clinic.id, phone=patient, first_name="Nia",
                          last_name="Evans", is_known_patient=True)
        session.add(contact)
        session.flush()
        people = [None]
        if daughter:
            child = Patient(clinic_id=clinic.id, contact_id=contact.id, relation="daughter",
                            first_name=daughter)
            session.add(child)
            session.flush()
            people.append(child.id)
        zone = ZoneInfo(clinic.timezone)
        if ((starts + timedelta(minutes=30 * (len(people) - 1))).astimezone(zone).date()
                != starts.astimezone(zone).date()):
            # A family's visits on one local day whatever the hour the suite runs at: from
            # 23:30 to 00:30 the later one fell on the next day (a reminder of its own).
            starts -= timedelta(minutes=30 * (len(people) - 1))
        service = clinic.services[0]
        appointments = [Appointment(
            clinic_id=clinic.id, contact_id=contact.id, patient_id=person,
            service_id=service.id, provider_id=service.providers[0].id,
            starts_at=starts + timedelta(minutes=30 * index),
            ends_at=starts + timedelta(minutes=30 * index + 30), source="pms", status=status,
            idempotency_key=uuid.uuid4().hex, created_at=now - timedelta(days=7),
            updated_at=now if status != AppointmentStatus.booked else now - timedelta(days=7))
            for index, person in enumerate(people)]
        session.add_all(appointments)
        session.flush()
        return [appointment.id for appointment in appointments]


def test_an_unanswered_text_back_is_followed_up_and_the_follow_up_can_be_answered(stack):
    patient = next(_patients)
    stack.phone.ring(caller=patient, clinic_number=NUMBER)
    (text_back,) = bodies(stack, patient, 1)
    follow_up = bodies(stack, patient, 2)[1]
    assert "Brookside Dental" in follow_up and "checking in" in follow_up
    assert "STOP" in follow_up
    offer = says(stack, patient, "yes please, a check up")
    assert "1." in offer or "Check-up" in offer  # the booking carries on from the follow-up
    with database(stack) as session:
        (job,) = session.execute(
            select(ScheduledJob).join(Contact, Contact.id == ScheduledJob.contact_id)
            .where(Contact.phone == patient)).scalars().all()
        assert (job.kind, job.state) == (JobKind.follow_up, JobState.sent)
        assert session.execute(select(FunnelEvent.kind).where(
            FunnelEvent.kind == "followed_up")).scalar_one()


def test_a_reminder_answered_cant_make_it_can_i_do_friday_moves_the_appointment(stack):
    patient = next(_patients)
    (appointment_id,) = booked_for_tomorrow(stack, patient)
    (reminder,) = bodies(stack, patient, 1)
    assert "Hi Nia" in reminder and "Check-up" in reminder and "Reply YES" in reminder
    # The dialogue hears of the reminder before the patient answers it.
    wait_until(lambda: _told_dialogue(stack, appointment_id), message="dialogue told")
    offer = says(stack, patient, "can't make it, can I do Friday?")
    assert "Fri" in offer, offer
    question = says(stack, patient, "1")
    assert "move your Check-up" in question, question
    done = says(stack, patient, "yes")
    assert "moved" in done, done
    with database(stack) as session:
        old = session.get(Appointment, appointment_id)
        assert old.status == AppointmentStatus.rescheduled
        new = session.execute(select(Appointment).where(
            Appointment.rescheduled_from_id == appointment_id)).scalar_one()
        assert new.status == AppointmentStatus.booked
        assert f"{new.starts_at.astimezone(ZoneInfo('Europe/London')):%a}" == "Fri"


def test_yes_to_a_reminder_confirms_it_and_a_question_is_answered_first(stack):
    patient = next(_patients)
    (appointment_id,) = booked_for_tomorrow(stack, patient)
    bodies(stack, patient, 1)
    wait_until(lambda: _told_dialogue(stack, appointment_id), message="dialogue told")
    answer = says(stack, patient, "where are you?")
    assert "3 Brook Lane" in answer and "Can you still make" in answer, answer
    thanks = says(stack, patient, "yes see you then")
    assert "confirmed" in thanks, thanks
    with database(stack) as session:
        assert session.get(Appointment, appointment_id).confirmed_at is not None
        assert session.execute(select(FunnelEvent.kind).where(
            FunnelEvent.kind == "confirmed")).scalar_one()


def test_a_familys_visits_on_one_day_get_one_reminder_and_yes_confirms_both(stack):
    patient = next(_patients)
    own, daughters = booked_for_tomorrow(stack, patient, daughter="Emma")
    (reminder,) = bodies(stack, patient, 1)
    assert "your Check-up at" in reminder and "Emma's check-up at" in reminder, reminder
    wait_until(lambda: _told_dialogue(stack, own), message="dialogue told")
    thanks = says(stack, patient, "yes")
    assert "confirmed" in thanks and "Emma's check-up" in thanks, thanks
    with database(stack) as session:
        assert all(session.get(Appointment, appointment_id).confirmed_at is not None
                   for appointment_id in (own, daughters))


def _told_dialogue(stack: RunningStack, appointment_id: int,
                   kind: JobKind = JobKind.reminder) -> bool:
    with database(stack) as session:
        return session.execute(select(ScheduledJob.dialogue_told_at).where(
            ScheduledJob.appointment_id == appointment_id, ScheduledJob.kind == kind)
        ).scalar_one() is not None


def test_a_no_show_is_offered_a_new_time_and_yes_books_it(stack):
    patient = next(_patients)
    # Two days ago, marked a no-show just now: its offer ("the next day at 10:00") is due.
    (missed,) = booked_for_tomorrow(stack, patient, days_later=-3,
                                    status=AppointmentStatus.no_show)
    offer = bodies(stack, patient, 1)[0]
    assert "missed you" in offer and "Reply YES" in offer, offer
    wait_until(lambda: _told_dialogue(stack, missed, JobKind.rebooking_offer),
               message="dialogue told")
    times = says(stack, patient, "yes")
    assert "1." in times and "Check-up" in times, times
    booked = says(stack, patient, "1")
    assert "booked" in booked, booked
    with database(stack) as session:
        assert session.execute(select(Appointment).where(
            Appointment.contact_id == session.get(Appointment, missed).contact_id,
            Appointment.status == AppointmentStatus.booked)).scalar_one()
