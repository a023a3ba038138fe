"""The day's appointments in the console: staff mark attended or no-show for their own clinic
only, a no-show is counted and gets a rebooking offer planned, and a thread shows the messages
Ringback starts and what the compliance gate decided."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from booking.messaging.conversations import sender_id_for
from booking.models import (
    Appointment,
    AppointmentStatus,
    Clinic,
    Contact,
    FunnelEvent,
    JobKind,
    JobState,
    ScheduledJob,
    Thread,
    utcnow,
)
from tests.channels.conftest import wait_until
from tests.console.conftest import CLINIC_NUMBER, new_patient


def appointment_for(db, patient: str, *, starts_in: timedelta) -> Appointment:
    clinic = db.execute(select(Clinic).where(Clinic.slug == "riverside")).scalar_one()
    contact = Contact(clinic_id=clinic.id, phone=patient, first_name="Ola", last_name="Berg")
    db.add(contact)
    db.flush()
    service = clinic.services[0]
    starts = utcnow().replace(microsecond=0) + starts_in
    appointment = Appointment(
        clinic_id=clinic.id, contact_id=contact.id, service_id=service.id,
        provider_id=service.providers[0].id, starts_at=starts,
        ends_at=starts + timedelta(minutes=30), idempotency_key=uuid.uuid4().hex,
        created_at=starts - timedelta(days=7), updated_at=starts - timedelta(days=7))
    db.add(appointment)
    db.commit()
    return appointment


def test_staff_mark_a_no_show_and_it_gets_a_rebooking_offer(stack, db, riverside_staff,
                                                              northside_staff):
    patient = new_patient()
    missed = appointment_for(db, patient, starts_in=-timedelta(minutes=20))
    upcoming = appointment_for(db, new_patient(), starts_in=timedelta(hours=3))

    page = riverside_staff.http.get("/console/appointments")
    assert page.status_code == 200 and "Ola Berg" in page.text and patient in page.text
    assert northside_staff.http.get("/console/appointments").text.count(patient) == 0

    other_clinic = northside_staff.post(f"/console/appointments/{missed.id}/mark",
                                        {"outcome": "no_show"})
    assert other_clinic.status_code == 404
    too_early = riverside_staff.post(f"/console/appointments/{upcoming.id}/mark",
                                     {"outcome": "no_show"})
    assert too_early.status_code == 409
    nonsense = riverside_staff.post(f"/console/appointments/{missed.id}/mark",
                                    {"outcome": "maybe"})
    assert nonsense.status_code == 400

    marked = riverside_staff.post(f"/console/appointments/{missed.id}/mark",
                                  {"outcome": "no_show"}, follow_redirects=True)
    assert marked.status_code == 200 and "no-show" in marked.text
    db.expire_all()
    assert db.get(Appointment, missed.id).status == AppointmentStatus.no_show
    assert db.execute(select(FunnelEvent).where(
        FunnelEvent.kind == "no_show", FunnelEvent.contact_id == missed.contact_id)).scalar_one()
    # The gateway's planner turns the no-show into one offer, for tomorrow morning.
    offer = wait_until(lambda: db.execute(select(ScheduledJob).where(
        ScheduledJob.appointment_id == missed.id,
        ScheduledJob.kind == JobKind.rebooking_offer)).scalar_one_or_none()
        or db.expire_all(), message="rebooking offer planned")
    assert offer.state == JobState.scheduled and offer.due_at > utcnow()


def test_a_thread_shows_the_messages_ringback_starts_and_what_became_of_them(
        stack, db, riverside_staff):
    patient = new_patient()
    stack.phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    stack.phone.wait_for(patient, count=1)
    thread = wait_until(lambda: db.execute(select(Thread).where(
        Thread.sender_id == sender_id_for(clinic_slug="riverside", phone=patient)))
        .scalar_one_or_none() or db.expire_all(), message="thread")
    follow_up = wait_until(lambda: db.execute(select(ScheduledJob).where(
        ScheduledJob.contact_id == thread.contact_id, ScheduledJob.step == 0))
        .scalar_one_or_none() or db.expire_all(), message="follow-up planned")
    assert follow_up.state == JobState.scheduled
    stack.phone.reply_and_wait(sender=patient, clinic_number=CLINIC_NUMBER,
                               body="what time do you open?")
    page = riverside_staff.http.get(f"/console/threads/{thread.id}")
    assert "Messages we start" in page.text and "Follow-up" in page.text
    assert "cancelled (the patient replied)" in page.text
