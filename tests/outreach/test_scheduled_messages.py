"""Follow-ups, reminders and rebooking offers, planned and run against a real database with the
real rules file, at moments the tests choose (every function here takes `now`)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from booking.calls.recovery import record_missed_call
from booking.messaging import inbox
from booking.messaging.outbox import text_length
from booking.models import (
    Appointment,
    AppointmentStatus,
    Channel,
    Clinic,
    Contact,
    FunnelEvent,
    JobDecision,
    JobKind,
    JobState,
    Message,
    Patient,
    ScheduledJob,
)
from booking.outreach.planner import plan
from booking.outreach.runner import run_due
from tests.outreach.conftest import (
    FLORIDA_CALLER,
    LONDON,
    LONDON_CALLER,
    LOS_ANGELES,
    NEW_YORK,
    NEW_YORK_CALLER,
)

EASTERN, PACIFIC, LONDON_ZONE = (ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles"),
                                 ZoneInfo("Europe/London"))
UTC = ZoneInfo("UTC")


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)


def missed_call(session, clinic_id: int, caller: str, at: datetime):
    return record_missed_call(session, clinic=session.get(Clinic, clinic_id), caller=caller,
                              call_sid=f"CA{uuid.uuid4().hex}", dial_status="no-answer",
                              source="twilio", occurred_at=at)


def jobs(session, kind: JobKind) -> list[ScheduledJob]:
    return list(session.execute(select(ScheduledJob).where(ScheduledJob.kind == kind)
                                .order_by(ScheduledJob.step, ScheduledJob.id)).scalars())


def decisions(session, job: ScheduledJob) -> list[tuple[str, str, datetime | None]]:
    return [(d.outcome, d.reason, d.until) for d in session.execute(
        select(JobDecision).where(JobDecision.job_id == job.id).order_by(JobDecision.id))
        .scalars()]


def body_of(session, started) -> str:
    return session.get(Message, started.message_ids[0]).body


def appointment(session, clinic_id: int, phone: str, starts_at: datetime, *,
                booked_at: datetime, first_name: str = "Rosa",
                patient: Patient | None = None) -> Appointment:
    clinic = session.get(Clinic, clinic_id)
    contact = session.execute(select(Contact).where(Contact.clinic_id == clinic_id,
                                                    Contact.phone == phone)).scalar_one_or_none()
    if contact is None:
        contact = Contact(clinic_id=clinic_id, phone=phone, first_name=first_name)
        session.add(contact)
        session.flush()
    service = clinic.services[0]
    booked = Appointment(clinic_id=clinic_id, contact_id=contact.id, service_id=service.id,
                         provider_id=service.providers[0].id, starts_at=starts_at,
                         patient_id=patient.id if patient else None,
                         ends_at=starts_at + timedelta(minutes=30), created_at=booked_at,
                         updated_at=booked_at, idempotency_key=uuid.uuid4().hex)
    session.add(booked)
    session.flush()
    return booked


def test_a_text_back_at_2055_in_new_york_to_a_florida_number_is_followed_up_next_morning(
        sessions, clinic, gate):
    hudson = clinic(NEW_YORK)
    called = local(EASTERN, 2026, 12, 7, 20, 55)  # a Monday
    with sessions() as session, session.begin():
        missed_call(session, hudson, FLORIDA_CALLER, called)
        assert plan(session, now=called + timedelta(minutes=1)) == 2
    with sessions() as session, session.begin():
        first, second = jobs(session, JobKind.follow_up)
        assert first.due_at == called + timedelta(minutes=30)
        assert second.due_at == called + timedelta(hours=24)
        assert run_due(session, now=first.due_at, gate=gate) == []
        next_morning = local(EASTERN, 2026, 12, 8, 8, 0)
        assert (first.state, first.due_at) == (JobState.scheduled, next_morning)
        ((outcome, reason, until),) = decisions(session, first)
        assert (outcome, until) == ("deferred", next_morning)
        assert "20:00" in reason  # Florida's evening ends at 8 pm, not 9
    with sessions() as session, session.begin():
        assert run_due(session, now=local(EASTERN, 2026, 12, 8, 7, 59), gate=gate) == []
        (started,) = run_due(session, now=local(EASTERN, 2026, 12, 8, 8, 0), gate=gate)
        text = body_of(session, started)
        assert "Hudson Dental" in text and "STOP" in text and text_length(text) <= 160
        assert session.get(Message, started.message_ids[0]).to_number == FLORIDA_CALLER
    with sessions() as session, session.begin():
        # The second is due at 20:55 the next day: quiet hours in Florida, and one started
        # message a day: it waits until 08:00 on Wednesday.
        assert run_due(session, now=second.due_at, gate=gate) == []
        second = session.get(ScheduledJob, second.id)
        assert second.due_at == local(EASTERN, 2026, 12, 9, 8, 0)
        kinds = [kind for kind, in session.execute(select(FunnelEvent.kind))]
        assert kinds.count("followed_up") == 1


def test_a_california_clinics_reminder_to_a_305_number_waits_for_8am_eastern(
        sessions, clinic, gate):
    sunset = clinic(LOS_ANGELES, reminder_hours=[26])
    starts = local(PACIFIC, 2026, 12, 10, 6, 0)
    with sessions() as session, session.begin():
        appointment(session, sunset, FLORIDA_CALLER, starts,
                    booked_at=local(PACIFIC, 2026, 12, 1, 12, 0))
        plan(session, now=local(PACIFIC, 2026, 12, 2, 12, 0))
    with sessions() as session, session.begin():
        (reminder,) = jobs(session, JobKind.reminder)
        due = local(PACIFIC, 2026, 12, 9, 4, 0)  # 07:00 in Miami
        assert reminder.due_at == due
        assert run_due(session, now=due, gate=gate) == []
        eight_eastern = local(EASTERN, 2026, 12, 9, 8, 0)  # still 05:00 in California
        assert session.get(ScheduledJob, reminder.id).due_at == eight_eastern
        (started,) = run_due(session, now=eight_eastern, gate=gate)
        text = body_of(session, started)
        assert "Rosa" in text and "Check-up" in text and "Thu Dec 10 at 6 AM" in text
        assert "Sunset Smiles" in text and "STOP" in text and text_length(text) <= 160


def test_quiet_hours_end_at_8am_local_over_a_dst_weekend(sessions, clinic, gate):
    hudson, thames = clinic(NEW_YORK), clinic(LONDON)
    with sessions() as session, session.begin():
        # US clocks go forward at 02:00 on Sunday 14 March 2027.
        missed_call(session, hudson, NEW_YORK_CALLER, local(EASTERN, 2027, 3, 13, 20, 50))
        plan(session, now=local(EASTERN, 2027, 3, 13, 20, 51))
    with sessions() as session, session.begin():
        # UK clocks go back at 02:00 on Sunday 25 October 2026.
        missed_call(session, thames, LONDON_CALLER, local(LONDON_ZONE, 2026, 10, 24, 19, 50))
        plan(session, now=local(LONDON_ZONE, 2026, 10, 24, 19, 51))
    with sessions() as session, session.begin():
        by_clinic = {job.clinic_id: job for job in jobs(session, JobKind.follow_up)
                     if job.step == 0}
        for job in sorted(by_clinic.values(), key=lambda job: job.due_at):
            run_due(session, now=job.due_at, gate=gate)
        assert by_clinic[hudson].due_at == datetime(2027, 3, 14, 12, 0, tzinfo=UTC)  # 08:00 EDT
        assert by_clinic[thames].due_at == datetime(2026, 10, 25, 8, 0, tzinfo=UTC)  # 08:00 GMT


def test_a_fourth_started_message_in_a_week_waits_until_the_first_is_a_week_old(
        sessions, clinic, gate):
    hudson = clinic(NEW_YORK, reminder_hours=[24])
    now = local(EASTERN, 2026, 12, 14, 12, 0)
    with sessions() as session, session.begin():
        for days_ago in (6, 4, 2):
            booked = appointment(session, hudson, NEW_YORK_CALLER,
                                 now - timedelta(days=days_ago) + timedelta(days=1),
                                 booked_at=now - timedelta(days=30))
            sent_at = local(EASTERN, 2026, 12, 14 - days_ago, 10, 0)
            session.add(ScheduledJob(
                clinic_id=hudson, contact_id=booked.contact_id, appointment_id=booked.id,
                kind=JobKind.reminder, subject=f"appointment:{booked.id}", step=0,
                subject_at=booked.starts_at, due_at=sent_at, expires_at=booked.starts_at,
                state=JobState.sent, finished_at=sent_at))
        appointment(session, hudson, NEW_YORK_CALLER, now + timedelta(days=1, hours=2),
                    booked_at=now - timedelta(days=30))
        plan(session, now=now)
    with sessions() as session, session.begin():
        (fourth,) = [job for job in jobs(session, JobKind.reminder)
                     if job.state == JobState.scheduled]
        assert run_due(session, now=fourth.due_at, gate=gate) == []
        assert fourth.due_at == local(EASTERN, 2026, 12, 15, 10, 0)
        ((outcome, reason, _),) = decisions(session, fourth)
        assert outcome == "deferred" and "7 days" in reason, reason


def test_a_reply_or_a_new_call_cancels_pending_follow_ups(sessions, clinic, gate):
    thames = clinic(LONDON)
    called = local(LONDON_ZONE, 2026, 12, 7, 11, 0)
    with sessions() as session, session.begin():
        missed_call(session, thames, LONDON_CALLER, called)
        plan(session, now=called)
    with sessions() as session, session.begin():
        inbox.accept(session, channel=Channel.sms, now=called + timedelta(minutes=10), params={
            "To": LONDON["numbers"]["sms"], "From": LONDON_CALLER, "Body": "Hi, who is this?",
            "MessageSid": f"SM{uuid.uuid4().hex}"})
    with sessions() as session, session.begin():
        follow_ups = jobs(session, JobKind.follow_up)
        assert [job.state for job in follow_ups] == [JobState.cancelled] * 2
        assert decisions(session, follow_ups[0])[0][:2] == ("cancelled", "the patient replied")
        assert run_due(session, now=called + timedelta(days=2), gate=gate) == []

    later = called + timedelta(hours=3)
    with sessions() as session, session.begin():
        missed_call(session, thames, LONDON_CALLER, later)
        plan(session, now=later)
    with sessions() as session, session.begin():
        first_of_new_call = jobs(session, JobKind.follow_up)[1]
        assert first_of_new_call.subject != jobs(session, JobKind.follow_up)[0].subject
        missed_call(session, thames, LONDON_CALLER, later + timedelta(minutes=20))
    with sessions() as session:
        assert session.get(ScheduledJob, first_of_new_call.id).state == JobState.cancelled
        assert session.get(ScheduledJob, first_of_new_call.id).last_reason == (
            "the patient called again")


def test_reminders_follow_the_appointment(sessions, clinic, gate):
    thames = clinic(LONDON)
    now = local(LONDON_ZONE, 2026, 12, 7, 9, 0)
    with sessions() as session, session.begin():
        later = appointment(session, thames, LONDON_CALLER, now + timedelta(days=5),
                            booked_at=now)
        # Booked for tomorrow morning: the 48-hour reminder has passed, and the 24-hour one
        # would come minutes after the booking's confirmation.
        appointment(session, thames, "+447700900602", now + timedelta(hours=25),
                    booked_at=now)
        plan(session, now=now)
    with sessions() as session, session.begin():
        reminders = jobs(session, JobKind.reminder)
        assert [(job.appointment_id, job.due_at) for job in reminders] == [
            (later.id, later.starts_at - timedelta(hours=48)),
            (later.id, later.starts_at - timedelta(hours=24))]
        session.get(Appointment, later.id).status = AppointmentStatus.rescheduled
    with sessions() as session, session.begin():
        plan(session, now=now + timedelta(minutes=1))
    with sessions() as session:
        assert {(job.state, job.last_reason) for job in jobs(session, JobKind.reminder)} == {
            (JobState.cancelled, "the appointment was moved")}


def test_a_no_show_gets_one_rebooking_offer_the_next_morning(sessions, clinic, gate):
    thames = clinic(LONDON)
    starts = local(LONDON_ZONE, 2026, 12, 8, 14, 0)
    with sessions() as session, session.begin():
        missed = appointment(session, thames, LONDON_CALLER, starts,
                             booked_at=starts - timedelta(days=10))
        missed.status = AppointmentStatus.no_show
        missed.updated_at = starts + timedelta(hours=1)
        plan(session, now=starts + timedelta(hours=1))
        plan(session, now=starts + timedelta(hours=2))  # planned once however often it runs
    with sessions() as session, session.begin():
        (offer,) = jobs(session, JobKind.rebooking_offer)
        assert offer.due_at == local(LONDON_ZONE, 2026, 12, 9, 10, 0)
        (started,) = run_due(session, now=offer.due_at, gate=gate)
        assert "missed you" in body_of(session, started)
        assert session.execute(select(FunnelEvent.kind).where(
            FunnelEvent.kind == "rebooking_offered")).scalar_one()


def test_a_familys_visits_on_one_day_get_one_reminder(sessions, clinic, gate):
    hudson = clinic(NEW_YORK, reminder_hours=[24])
    now = local(EASTERN, 2026, 12, 14, 10, 0)
    with sessions() as session, session.begin():
        own = appointment(session, hudson, NEW_YORK_CALLER, now + timedelta(hours=24),
                          booked_at=now - timedelta(days=9), first_name="Dana")
        emma = Patient(clinic_id=hudson, contact_id=own.contact_id, relation="daughter",
                       first_name="Emma")
        session.add(emma)
        session.flush()
        appointment(session, hudson, NEW_YORK_CALLER, now + timedelta(hours=25),
                    booked_at=now - timedelta(days=8), patient=emma)
        # Another day: its own reminder, another day.
        appointment(session, hudson, NEW_YORK_CALLER, now + timedelta(days=3),
                    booked_at=now - timedelta(days=8), patient=emma)
        plan(session, now=now)
    with sessions() as session, session.begin():
        (started,) = run_due(session, now=now + timedelta(hours=1), gate=gate)
        text = body_of(session, started)
        assert "your Check-up at 10 AM and Emma's check-up at 11 AM" in text, text
        assert "Hudson Dental" in text and "STOP" in text and text_length(text) <= 160
        sent = [job for job in jobs(session, JobKind.reminder) if job.state == JobState.sent]
        assert len(sent) == 2 and {job.message_id for job in sent} == {started.message_ids[0]}
