"""The escalation record, who is alerted (rota, billing, backup), and what the patient is told."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from booking.escalation.escalations import acknowledge, hand_over, resolve
from booking.escalation.on_call import alert_recipients, realert_recipients
from booking.models import (
    Appointment,
    Clinic,
    Escalation,
    EscalationAlert,
    EscalationReason,
    EscalationStatus,
    FunnelEvent,
    Message,
    Service,
    StaffMember,
    ThreadState,
)
from tests.escalation.conftest import (
    CONSOLE_URL,
    RIVERSIDE_CLOSED,
    RIVERSIDE_OPEN,
    start_thread,
    utc,
)

RED_FLAG = {"rule": "filler_vascular_occlusion",
            "description": "blanching or mottled skin after filler (possible vascular occlusion)"}
DR_PATEL, DR_HUGHES, PRIYA = "+447700900111", "+447700900222", "+447700900333"


def _staff_phone(session, staff_id: int | None) -> str | None:
    return session.get(StaffMember, staff_id).phone if staff_id else None


def test_urgent_handover_records_everything_staff_need(sessions, clinics, settings):
    with sessions() as session, session.begin():
        thread = start_thread(session, clinic_id=clinics["riverside"], phone="+447700900401",
                              said=["my lip is swollen and going white after filler"],
                              at=RIVERSIDE_OPEN)
        handover = hand_over(session, thread=thread, reason=EscalationReason.urgent,
                             intent="urgent", red_flag=RED_FLAG,
                             last_message="my lip is swollen and going white after filler",
                             instant=RIVERSIDE_OPEN, settings=settings)
        thread_id = thread.id

    with sessions() as session:
        escalation = session.get(Escalation, handover.escalation_id)
        assert escalation.reason == EscalationReason.urgent
        assert escalation.priority == 1
        assert escalation.status == EscalationStatus.open
        assert escalation.clinic_id == clinics["riverside"]
        assert escalation.thread_id == thread_id
        assert escalation.contact.phone == "+447700900401"
        assert escalation.opened_at == RIVERSIDE_OPEN
        assert escalation.red_flag_rule == "filler_vascular_occlusion"
        assert [line["body"] for line in escalation.transcript] == [
            "my lip is swollen and going white after filler"]
        assert "URGENT" in escalation.summary
        assert "vascular occlusion" in escalation.summary
        assert "intent: urgent" in escalation.summary
        assert escalation.bot_told_patient == handover.patient_message
        # Safety first, then who calls back and when; the clinic is open, so no closed notice.
        assert handover.patient_message.startswith("If this is life-threatening, call 999 now.")
        assert "call you back on this number within 30 minutes" in handover.patient_message
        assert "closed" not in handover.patient_message
        # Repeated after the clinic's ack timeout (10 minutes for Riverside) unless acknowledged.
        assert escalation.alert_count == 1
        assert escalation.next_alert_at == RIVERSIDE_OPEN + timedelta(minutes=10)

        assert escalation.thread.state == ThreadState.handed_off
        (alert,) = session.execute(select(EscalationAlert)).scalars().all()
        assert (alert.kind, alert.channel) == ("alert", "sms")
        assert _staff_phone(session, alert.staff_id) == DR_PATEL
        message = session.get(Message, alert.message_id)
        assert list(handover.alert_message_ids) == [message.id]
        assert message.to_number == DR_PATEL
        assert message.from_number == "+441632960001"
        assert message.author == "system"
        assert f"Reply ACK {escalation.ack_code} to take it." in message.body
        assert f"{CONSOLE_URL}/console/threads/{thread_id}" in message.body
        assert "going white after filler" in message.body
        assert session.execute(select(FunnelEvent.kind).where(
            FunnelEvent.thread_id == thread_id)).scalars().all()[-1] == "escalated"


def test_urgent_after_hours_is_one_clear_message_and_still_alerts_at_once(
        sessions, clinics, settings):
    with sessions() as session, session.begin():
        thread = start_thread(session, clinic_id=clinics["riverside"], phone="+447700900402",
                              said=["my face is swelling up fast"], at=RIVERSIDE_CLOSED)
        handover = hand_over(session, thread=thread, reason=EscalationReason.urgent,
                             intent="urgent", red_flag=None,
                             last_message="my face is swelling up fast",
                             instant=RIVERSIDE_CLOSED, settings=settings)
    assert "999" in handover.patient_message
    assert "NHS 111" in handover.patient_message
    assert "will call you back" in handover.patient_message
    # Not also "we're closed ... we'll pick it up first thing" (issue 14).
    assert "closed" not in handover.patient_message
    assert "first thing" not in handover.patient_message
    assert len(handover.alert_message_ids) == 1


def test_on_call_rota_follows_local_day_and_hour(sessions, clinics):
    # Northside (America/New_York): Jordan Rivera weekdays 07-19, Sam Okafor (backup) 19-07.
    with sessions() as session:
        northside = session.get(Clinic, clinics["northside"])

        def first_alerted(instant):
            return [s.name for s in alert_recipients(session, clinic=northside,
                                                     reason=EscalationReason.urgent,
                                                     instant=instant)]

        assert first_alerted(utc(2026, 3, 3, 15, 0)) == ["Jordan Rivera"]  # Tue 10:00 EST
        assert first_alerted(utc(2026, 3, 4, 3, 0)) == ["Sam Okafor"]  # Tue 22:00 EST
        assert first_alerted(utc(2026, 3, 7, 15, 0)) == ["Sam Okafor"]  # Sat 10:00: backup
        # Across the spring-forward (8 March 2026): 07:30 EDT is Jordan's, whatever UTC says.
        assert first_alerted(utc(2026, 3, 9, 11, 30)) == ["Jordan Rivera"]
        assert [s.name for s in realert_recipients(
            session, clinic=northside, reason=EscalationReason.urgent,
            instant=utc(2026, 3, 3, 15, 0))] == ["Jordan Rivera", "Sam Okafor"]


def test_billing_goes_to_the_billing_contact_and_tells_the_patient_who_and_when(
        sessions, clinics, settings):
    with sessions() as session, session.begin():
        thread = start_thread(session, clinic_id=clinics["riverside"], phone="+447700900403",
                              said=["I think I was charged twice for my last visit"],
                              at=RIVERSIDE_OPEN)
        handover = hand_over(session, thread=thread, reason=EscalationReason.billing,
                             intent="billing", red_flag=None,
                             last_message="I think I was charged twice for my last visit",
                             instant=RIVERSIDE_OPEN, settings=settings)
        escalation = session.get(Escalation, handover.escalation_id)
        assert escalation.priority == 3
        (alert,) = session.execute(select(EscalationAlert)).scalars().all()
        assert _staff_phone(session, alert.staff_id) == PRIYA
        assert "Billing" in session.get(Message, alert.message_id).body
        assert escalation.next_alert_at == RIVERSIDE_OPEN + timedelta(minutes=240)
    assert handover.patient_message == (
        "Thanks. Priya Shah at Riverside Dental & Aesthetics, who looks after billing, will "
        "reply to you here within one working day.")


def test_person_wanted_while_closed_wakes_nobody_until_the_clinic_opens(
        sessions, clinics, settings):
    with sessions() as session, session.begin():
        thread = start_thread(session, clinic_id=clinics["riverside"], phone="+447700900404",
                              said=["can I speak to someone please"], at=RIVERSIDE_CLOSED)
        handover = hand_over(session, thread=thread, reason=EscalationReason.human,
                             intent="human", red_flag=None,
                             last_message="can I speak to someone please",
                             instant=RIVERSIDE_CLOSED, settings=settings)
        escalation = session.get(Escalation, handover.escalation_id)
        assert handover.alert_message_ids == ()
        assert escalation.alert_count == 0
        # Wednesday 08:00 London (GMT) is when Riverside opens next.
        assert escalation.next_alert_at == utc(2026, 3, 4, 8, 0)
        assert escalation.priority == 2
    assert "We're closed right now" in handover.patient_message
    assert "after we open at 8:00 tomorrow" in handover.patient_message


def test_summary_mentions_the_patients_appointment(sessions, clinics, settings):
    with sessions() as session, session.begin():
        thread = start_thread(session, clinic_id=clinics["riverside"], phone="+447700900405",
                              said=["can I talk to a person about my appointment"],
                              at=RIVERSIDE_OPEN)
        check_up = session.execute(select(Service).where(
            Service.clinic_id == clinics["riverside"], Service.slug == "check-up")).scalar_one()
        session.add(Appointment(clinic_id=clinics["riverside"], contact_id=thread.contact_id,
                                service_id=check_up.id, starts_at=utc(2026, 3, 5, 9, 0),
                                ends_at=utc(2026, 3, 5, 9, 30), idempotency_key="esc-405"))
        handover = hand_over(session, thread=thread, reason=EscalationReason.human,
                             intent="human", red_flag=None,
                             last_message="can I talk to a person about my appointment",
                             instant=RIVERSIDE_OPEN, settings=settings)
        summary = session.get(Escalation, handover.escalation_id).summary
    assert "appointment: Check-up Thu 05 Mar 09:00 (booked)" in summary
    assert "Wants a person" in summary


def test_acknowledge_then_resolve_stops_alerts_and_is_audited(sessions, clinics, settings):
    with sessions() as session, session.begin():
        thread = start_thread(session, clinic_id=clinics["riverside"], phone="+447700900406",
                              said=["help my tooth got knocked out"], at=RIVERSIDE_OPEN)
        handover = hand_over(session, thread=thread, reason=EscalationReason.urgent,
                             intent="urgent", red_flag=None,
                             last_message="help my tooth got knocked out",
                             instant=RIVERSIDE_OPEN, settings=settings)
    later = RIVERSIDE_OPEN + timedelta(minutes=3)
    with sessions() as session, session.begin():
        escalation = session.get(Escalation, handover.escalation_id)
        patel = session.execute(select(StaffMember).where(
            StaffMember.phone == DR_PATEL)).scalar_one()
        assert acknowledge(session, escalation=escalation, staff=patel, channel="sms",
                           instant=later)
        assert not acknowledge(session, escalation=escalation, staff=patel, channel="sms",
                               instant=later)
        assert resolve(session, escalation=escalation, staff=patel, instant=later)
        assert not resolve(session, escalation=escalation, staff=patel, instant=later)
    with sessions() as session:
        escalation = session.get(Escalation, handover.escalation_id)
        assert escalation.status == EscalationStatus.resolved
        assert escalation.acknowledged_at == later and escalation.resolved_at == later
        assert escalation.acknowledged_by_id == escalation.resolved_by_id
        assert escalation.next_alert_at is None
        kinds = session.execute(select(EscalationAlert.kind, EscalationAlert.channel)
                                .order_by(EscalationAlert.id)).all()
        assert [tuple(k) for k in kinds] == [("alert", "sms"), ("ack", "sms"),
                                             ("resolve", "console")]
