"""`make demo`: a missed call played through the running stack, the way production sees it.

Every step goes through the real webhooks with Twilio-signed requests from the simulator:
the call rings out, the text-back arrives, the patient books; then a second caller reports an
emergency and the on-call clinician is alerted.
"""

from __future__ import annotations

import random
import sys
from datetime import timedelta

from sqlalchemy import select

from booking.db import session_scope
from booking.models import Appointment, Clinic, Contact, Escalation, utcnow
from booking.reports.funnel import funnel
from simulator.client import SimulatedPhone

CLINIC_NUMBER = "+441632960001"


def _show(who: str, text: str) -> None:
    print(f"\n{who:>8} │ " + text.replace("\n", "\n         │ "))


def _say(phone: SimulatedPhone, patient: str, text: str) -> str:
    _show("patient", text)
    reply = phone.reply_and_wait(sender=patient, clinic_number=CLINIC_NUMBER, body=text)
    _show("ringback", reply)
    return reply


def book_after_missed_call(phone: SimulatedPhone) -> None:
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
        print(f"\nEscalation #{escalation.id}: {escalation.reason.value}, "
              f"priority {escalation.priority}, red flag {escalation.red_flag_rule}")
    for number in staff_numbers:
        alerts = [m for m in phone.sent_to(number) if f"ACK {escalation.id}" in m["body"]]
        for alert in alerts:
            _show("to staff", f"{number}: {alert['body']}")


def show_funnel() -> None:
    with session_scope() as session:
        clinic = session.execute(select(Clinic).where(Clinic.sms_number == CLINIC_NUMBER)
                                 ).scalar_one()
        today = funnel(session, clinic_id=clinic.id, since=utcnow() - timedelta(days=1),
                       until=utcnow())
    print(f"\n=== {clinic.name}: the last 24 hours ===")
    print("\n".join(today.lines()))


def main(*, simulator_url: str) -> int:
    phone = SimulatedPhone(simulator_url)
    try:
        book_after_missed_call(phone)
        urgent_after_missed_call(phone)
        show_funnel()
    except (TimeoutError, OSError) as exc:
        print(f"\ndemo failed: {exc}\nIs the stack running (`make run`)?", file=sys.stderr)
        return 1
    finally:
        phone.close()
    return 0
