"""Staff texting the clinic number: "ACK 7KQ2" with the alert's code, a wrong code or the
escalation's number (nothing acknowledged), a bare "ACK", anything else."""

from __future__ import annotations

import re

from sqlalchemy import select, update

from booking.escalation.escalations import ACK_CODE_ALPHABET, hand_over
from booking.escalation.staff_replies import handle_staff_message
from booking.models import (
    AuditEvent,
    Channel,
    Clinic,
    ConsoleRole,
    Escalation,
    EscalationAlert,
    EscalationReason,
    EscalationStatus,
    Message,
    StaffMember,
)
from tests.escalation.conftest import RIVERSIDE_OPEN, start_thread

DR_PATEL, DR_HUGHES = "+447700900111", "+447700900222"


def _escalate(session, settings, clinic_id, phone, said="my face is swelling fast") -> int:
    thread = start_thread(session, clinic_id=clinic_id, phone=phone, said=[said],
                          at=RIVERSIDE_OPEN)
    return hand_over(session, thread=thread, reason=EscalationReason.urgent, intent="urgent",
                     red_flag=None, last_message=said, instant=RIVERSIDE_OPEN,
                     settings=settings).escalation_id


def _code(session, escalation_id: int) -> str:
    return session.get(Escalation, escalation_id).ack_code


def _text(session, clinic_id, sender, body, sid):
    return handle_staff_message(session, clinic=session.get(Clinic, clinic_id),
                                from_number=sender, body=body, channel=Channel.sms,
                                to_number="+441632960001", twilio_sid=sid)


def test_the_alert_prints_a_random_code_not_the_escalation_number(sessions, clinics,
                                                                  settings):
    with sessions() as session, session.begin():
        ids = [_escalate(session, settings, clinics["riverside"], f"+4477009004{n}")
               for n in (30, 31, 32)]
        codes = [_code(session, escalation_id) for escalation_id in ids]
        assert len(set(codes)) == 3
        for escalation_id, code in zip(ids, codes, strict=True):
            assert len(code) == 4 and set(code) <= set(ACK_CODE_ALPHABET)
            (alert,) = session.execute(select(Message).join(
                EscalationAlert, EscalationAlert.message_id == Message.id).where(
                EscalationAlert.escalation_id == escalation_id)).scalars()
            assert f"Reply ACK {code} to take it." in alert.body
            # The escalation's number is not what acknowledges (a code may start with its digits).
            assert not re.search(rf"\bACK {escalation_id}\b", alert.body)


def test_ack_with_the_right_code_acknowledges_that_escalation(sessions, clinics, settings):
    with sessions() as session, session.begin():
        escalation_id = _escalate(session, settings, clinics["riverside"], "+447700900421")
        code = _code(session, escalation_id)
        (reply,) = _text(session, clinics["riverside"], DR_HUGHES, f"ack {code.lower()}",
                         "SMack1")
        assert reply.to_number == DR_HUGHES and reply.author == "system"
        assert reply.body.startswith(f"Thanks Dr Tom Hughes: escalation {escalation_id} is yours")
        assert "/console/threads/" in reply.body
    with sessions() as session:
        escalation = session.get(Escalation, escalation_id)
        hughes = session.get(StaffMember, escalation.acknowledged_by_id)
        assert escalation.status == EscalationStatus.acknowledged
        assert hughes.phone == DR_HUGHES
        assert escalation.next_alert_at is None
        assert escalation.thread.handed_off_to_id == hughes.id
        ack = session.execute(select(EscalationAlert).where(
            EscalationAlert.kind == "ack")).scalar_one()
        assert (ack.channel, ack.staff_id) == ("sms", hughes.id)
        logged = session.execute(select(Message).where(Message.twilio_sid == "SMack1")
                                 ).scalar_one()
        assert logged.author == f"staff:{hughes.id}"
        # The audit trail: who, by which channel, from which number, about which thread.
        trail = session.execute(select(AuditEvent)).scalars().all()
        assert [(e.action, e.channel, e.address, e.staff_id, e.escalation_id, e.thread_id,
                 e.contact_id) for e in trail] == [
            ("acknowledge", "sms", DR_HUGHES, hughes.id, escalation_id, escalation.thread_id,
             escalation.contact_id)]


def test_ack_without_the_right_code_acknowledges_nothing(sessions, clinics, settings):
    with sessions() as session, session.begin():
        escalation_id = _escalate(session, settings, clinics["riverside"], "+447700900427")
        code = _code(session, escalation_id)
        wrong = next(c for c in ("ABCD", "WXYZ") if c != code)
        replies = [_text(session, clinics["riverside"], DR_PATEL, body, f"SMwrong{sid}")[0].body
                   for sid, body in enumerate([f"ACK {escalation_id}", f"ACK {wrong}", "ACK"])]
        number, wrong_code, bare = replies
        assert number == wrong_code == (
            "That code matches no escalation at Riverside Dental & Aesthetics: nothing was "
            "acknowledged. Reply ACK and the code from the alert, e.g. ACK 7KQ2.")
        # A bare ACK is answered (on the staff member's own phone) with the code to quote.
        assert bare == f"Nothing was acknowledged: reply with the code from the alert (ACK {code})."
        escalation = session.get(Escalation, escalation_id)
        assert escalation.status == EscalationStatus.open
        assert escalation.next_alert_at is not None
        assert session.execute(select(EscalationAlert).where(
            EscalationAlert.kind == "ack")).first() is None


def test_second_ack_says_who_already_has_it(sessions, clinics, settings):
    with sessions() as session, session.begin():
        escalation_id = _escalate(session, settings, clinics["riverside"], "+447700900422")
        code = _code(session, escalation_id)
        _text(session, clinics["riverside"], DR_PATEL, f"ACK {code}", "SMack2a")
        (reply,) = _text(session, clinics["riverside"], DR_HUGHES, f"ACK {code}", "SMack2b")
    assert reply.body == (f"Escalation {escalation_id} was already acknowledged by "
                          "Dr Amara Patel.")


def test_bare_ack_lists_the_codes_of_what_is_open_for_you(sessions, clinics, settings):
    with sessions() as session, session.begin():
        first = _escalate(session, settings, clinics["riverside"], "+447700900423")
        # Dr Hughes was not alerted (not on call, no repeat yet): nothing of theirs is open.
        (reply,) = _text(session, clinics["riverside"], DR_HUGHES, "ACK", "SMack3b")
        assert reply.body.startswith("Nothing open was sent to you")
        second = _escalate(session, settings, clinics["riverside"], "+447700900424")
        (reply,) = _text(session, clinics["riverside"], DR_PATEL, "Ack.", "SMack3c")
        assert reply.body == ("Nothing was acknowledged: reply with the code from the alert "
                              f"(ACK {_code(session, second)}, ACK {_code(session, first)}).")
        assert session.get(Escalation, first).status == EscalationStatus.open


def test_ack_cannot_reach_another_clinics_escalation(sessions, clinics, settings):
    with sessions() as session, session.begin():
        northside_escalation = _escalate(session, settings, clinics["northside"],
                                         "+12025550142")
        (reply,) = _text(session, clinics["riverside"], DR_PATEL,
                         f"ACK {_code(session, northside_escalation)}", "SMack4")
        assert reply.body.startswith("That code matches no escalation at Riverside Dental & "
                                     "Aesthetics: nothing was acknowledged.")
        assert session.get(Escalation, northside_escalation).status == EscalationStatus.open


def test_other_staff_texts_get_help_and_patients_are_not_staff(sessions, clinics, settings):
    with sessions() as session, session.begin():
        (reply,) = _text(session, clinics["riverside"], DR_PATEL, "on my way in", "SMack5a")
        assert reply.body.startswith("Ringback (Riverside Dental & Aesthetics): reply ACK and "
                                     "the code from the alert")
        assert _text(session, clinics["riverside"], DR_PATEL, "on my way in", "SMack5a") == []
        assert _text(session, clinics["riverside"], "+447700900426", "ACK 1", "SMack5b") is None
        # Staff of one clinic are patients at another.
        assert _text(session, clinics["northside"], DR_PATEL, "ACK 1", "SMack5c") is None


def test_five_wrong_codes_in_an_hour_pause_ack_from_that_phone_and_alert_the_admins(
        sessions, clinics, settings):
    priya = "+447700900333"
    with sessions() as session, session.begin():
        # The practice manager administers Riverside's console and has a phone.
        session.execute(update(StaffMember).where(StaffMember.phone == priya)
                        .values(console_role=ConsoleRole.admin))
        escalation_id = _escalate(session, settings, clinics["riverside"], "+447700900428")
        code = _code(session, escalation_id)
        wrong = [c for c in ("ABCD", "WXYZ", "QQQQ", "KKKK", "MMMM", "PPPP") if c != code][:5]
        answers = [_text(session, clinics["riverside"], DR_PATEL, f"ACK {guess}",
                         f"SMguess{n}") for n, guess in enumerate(wrong)]
        assert all("matches no escalation" in reply.body for (reply,) in answers[:4])
        to_patel, to_admin = answers[4]
        assert to_patel.to_number == DR_PATEL and "paused for an hour" in to_patel.body
        assert to_admin.to_number == priya
        assert "5 wrong ACK codes within an hour from Dr Amara Patel's phone" in to_admin.body

        # The right code from that phone is ignored now, unanswered; another phone still works.
        assert _text(session, clinics["riverside"], DR_PATEL, f"ACK {code}", "SMguess6") == []
        assert session.get(Escalation, escalation_id).status == EscalationStatus.open
        (thanks,) = _text(session, clinics["riverside"], DR_HUGHES, f"ACK {code}", "SMguess7")
        assert thanks.body.startswith("Thanks Dr Tom Hughes")
        trail = [(e.action, e.address) for e in session.execute(
            select(AuditEvent).order_by(AuditEvent.id)).scalars()]
        assert trail == [("ack_wrong_code", DR_PATEL)] * 5 + [
            ("ack_guesses_blocked", DR_PATEL), ("acknowledge", DR_HUGHES)]
