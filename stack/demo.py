"""`make demo`: a missed call played through the running stack, the way production sees it.

Every step goes through the real webhooks with Twilio-signed requests from the simulator:
the call rings out, the text-back arrives, the patient books; a second caller does not answer
the text-back and gets a follow-up; the first gets a reminder of their appointment and
confirms it; then a third caller reports an emergency and the on-call clinician is alerted.

Follow-ups and reminders come 30 minutes to days later, so the demo moves its own clock for
them: it dates its caller's text-back and booking back, plans their jobs as of that moment, and
makes them due now. The running gateway then sends them through the compliance gate as it
would any other; at night the gate holds them until morning, and the demo says so.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import timedelta

from sqlalchemy import select

from booking.db import session_scope
from booking.models import (
    Appointment,
    Clinic,
    Contact,
    Escalation,
    JobDecision,
    JobKind,
    JobState,
    MissedCall,
    ScheduledJob,
    utcnow,
)
from booking.outreach.planner import plan
from booking.reports.metrics import clinic_figures
from booking.reports.periods import last_days
from booking.reports.summary import summary_lines
from simulator.client import SimulatedPhone

CLINIC_NUMBER = "+441632960001"


def _show(who: str, text: str) -> None:
    print(f"\n{who:>8} │ " + text.replace("\n", "\n         │ "))


def _say(phone: SimulatedPhone, patient: str, text: str) -> str:
    _show("patient", text)
    reply = phone.reply_and_wait(sender=patient, clinic_number=CLINIC_NUMBER, body=text)
    _show("ringback", reply)
    return reply


def book_after_missed_call(phone: SimulatedPhone) -> str:
    patient = f"+4477009001{random.randint(10, 99)}"
    print(f"=== {patient} rings Riverside Dental & Aesthetics; nobody answers ===")
    phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    _show("ringback", phone.wait_for(patient, count=1)[0]["body"])
    reply = _say(phone, patient, "yes please")
    if "Which treatment" in reply:
        reply = _say(phone, patient, "just a check-up")
    reply = _say(phone, patient, "the first one")
    if "name" in reply:
        _say(phone, patient, "It's Sam Taylor")
    with session_scope() as session:
        appointment = session.execute(
            select(Appointment).join(Contact).where(Contact.phone == patient)
        ).scalar_one()
        print(f"\nIn the database: appointment #{appointment.id}, {appointment.status.value}, "
              f"{appointment.service.name} at {appointment.starts_at:%Y-%m-%d %H:%M} UTC for "
              f"{appointment.contact.first_name} {appointment.contact.last_name}")
    return patient


def _sent_or_held(phone: SimulatedPhone, patient: str, kind: JobKind, *, received: int
                  ) -> str | None:
    """Make the patient's planned job of this kind due now; wait for the gateway to send it
    (its text) or the gate to hold it (None, after saying why)."""
    with session_scope() as session:
        job = session.execute(
            select(ScheduledJob).join(Contact, Contact.id == ScheduledJob.contact_id)
            .where(Contact.phone == patient, ScheduledJob.kind == kind,
                   ScheduledJob.state == JobState.scheduled)
            .order_by(ScheduledJob.step)).scalars().first()
        if job is None:
            print("\n(nothing to send: the booking was too close for a reminder)")
            return None
        job.due_at, job_id = utcnow(), job.id
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with session_scope() as session:
            job = session.get(ScheduledJob, job_id)
            if job.state == JobState.sent:
                return phone.wait_for(patient, count=received + 1)[received]["body"]
            decision = session.execute(select(JobDecision).where(JobDecision.job_id == job_id)
                                       .order_by(JobDecision.id.desc())).scalars().first()
            if decision is not None:
                until = f" until {decision.until:%a %H:%M} UTC" if decision.until else ""
                print(f"\n(the compliance gate: {decision.outcome}{until}, {decision.reason})")
                return None
        time.sleep(0.5)
    raise TimeoutError("the gateway did not run the job; is it running?")


def follow_up_after_silence(phone: SimulatedPhone) -> None:
    patient = f"+4477009003{random.randint(10, 99)}"
    print(f"\n=== {patient} rings and does not answer the text-back ===")
    phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    _show("ringback", phone.wait_for(patient, count=1)[0]["body"])
    print("\n... 30 minutes later (the demo moves its clock) ...")
    with session_scope() as session:
        call = session.execute(select(MissedCall).join(Contact).where(
            Contact.phone == patient, MissedCall.texted_at.is_not(None))).scalar_one()
        call.occurred_at -= timedelta(minutes=30)
        call.texted_at -= timedelta(minutes=30)
        session.flush()
        plan(session, now=utcnow())
    text = _sent_or_held(phone, patient, JobKind.follow_up, received=1)
    if text:
        _show("ringback", text)


def reminder_before_the_visit(phone: SimulatedPhone, patient: str) -> None:
    print("\n=== The day before the appointment (the demo moves its clock) ===")
    with session_scope() as session:
        appointment = session.execute(
            select(Appointment).join(Contact).where(Contact.phone == patient)).scalar_one()
        appointment.created_at -= timedelta(days=7)
        session.flush()
        plan(session, now=appointment.starts_at - timedelta(hours=24, minutes=5))
    received = len(phone.sent_to(patient))
    text = _sent_or_held(phone, patient, JobKind.reminder, received=received)
    if text:
        _show("ringback", text)
        _say(phone, patient, "yes see you then")


def urgent_after_missed_call(phone: SimulatedPhone) -> None:
    patient = f"+4477009002{random.randint(10, 99)}"
    print(f"\n=== {patient} rings, then texts about an emergency ===")
    phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    _show("ringback", phone.wait_for(patient, count=1)[0]["body"])
    _say(phone, patient, "my lip is swollen and going white after filler yesterday")
    with session_scope() as session:
        escalation = session.execute(
            select(Escalation).join(Contact, Escalation.contact_id == Contact.id)
            .where(Contact.phone == patient)
        ).scalar_one()
        clinic = session.get(Clinic, escalation.clinic_id)
        staff_numbers = [s.phone for s in clinic.staff if s.phone]
        ack_code = escalation.ack_code
        print(f"\nEscalation #{escalation.id}: {escalation.reason.value}, "
              f"priority {escalation.priority}, red flag {escalation.red_flag_rule}")
    for number in staff_numbers:
        alerts = [m for m in phone.sent_to(number) if f"ACK {ack_code}" in m["body"]]
        for alert in alerts:
            _show("to staff", f"{number}: {alert['body']}")


def show_funnel(gateway_url: str) -> None:
    with session_scope() as session:
        clinic = session.execute(select(Clinic).where(Clinic.sms_number == CLINIC_NUMBER)
                                 ).scalar_one()
        period = last_days(1, now=utcnow(), zone=clinic.timezone)
        today = clinic_figures(session, clinic_id=clinic.id, period=period)
        yesterday = clinic_figures(session, clinic_id=clinic.id, period=period.previous())
    print(f"\n=== {clinic.name}: today so far (yesterday's same hours in brackets) ===")
    print("\n".join(summary_lines(today, yesterday)))
    print(f"\nThe dashboard: {gateway_url}/console/dashboard (riverside-admin / riverside-demo)")


def main(*, simulator_url: str, gateway_url: str) -> int:
    phone = SimulatedPhone(simulator_url)
    try:
        booked = book_after_missed_call(phone)
        follow_up_after_silence(phone)
        reminder_before_the_visit(phone, booked)
        urgent_after_missed_call(phone)
        show_funnel(gateway_url)
    except (TimeoutError, OSError) as exc:
        print(f"\ndemo failed: {exc}\nIs the stack running (`make run`)?", file=sys.stderr)
        return 1
    finally:
        phone.close()
    return 0
