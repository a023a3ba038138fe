"""The missed-call path on a real database: recorded once, deduplicated, personalised, and on
the channel the clinic's policy and the contact's history call for."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from booking.calls.recovery import choose_channel, record_missed_call
from booking.calls.text_back import compose, describe_opening
from booking.models import (
    Channel,
    Consent,
    Contact,
    Direction,
    Message,
    MessageStatus,
    MissedCall,
    MissedCallStatus,
)
from tests.channels.conftest import new_patient, new_us_patient

# Riverside (Europe/London): Mon-Fri 08:00-18:00 (Thu to 20:00), Sat 09:00-13:00, Sun shut.
TUESDAY_10AM = datetime(2026, 3, 10, 10, 0, tzinfo=timezone.utc)
TUESDAY_7PM = datetime(2026, 3, 10, 19, 0, tzinfo=timezone.utc)
SATURDAY_2PM = datetime(2026, 3, 14, 14, 0, tzinfo=timezone.utc)
BST_TUESDAY_7PM = datetime(2026, 7, 14, 18, 0, tzinfo=timezone.utc)  # 19:00 in London


def missed(sessions, slug: str, caller: str, *, at: datetime, call_sid: str | None = None,
           contact: dict | None = None):
    with sessions() as session, session.begin():
        from booking.clinics.lookups import find_clinic_by_slug

        clinic = find_clinic_by_slug(session, slug)
        if contact:
            existing = session.execute(select(Contact).where(
                Contact.clinic_id == clinic.id, Contact.phone == caller)).scalar_one_or_none()
            if existing is None:
                session.add(Contact(clinic_id=clinic.id, phone=caller, **contact))
                session.flush()
        return record_missed_call(session, clinic=clinic, caller=caller,
                                  call_sid=call_sid or f"CA{caller}{at.timestamp()}",
                                  dial_status="no-answer", source="twilio", occurred_at=at)


def outbound(sessions, outcome) -> list[Message]:
    with sessions() as session:
        return [session.get(Message, i) for i in outcome.message_ids]


def test_a_call_sid_is_recorded_once_however_often_twilio_reports_it(sessions, clinics):
    caller = new_us_patient()
    first = missed(sessions, "northside", caller, at=TUESDAY_10AM, call_sid="CAonce")
    again = missed(sessions, "northside", caller, at=TUESDAY_10AM, call_sid="CAonce")
    assert first.is_new and first.message_ids
    assert not again.is_new and again.message_ids == ()
    assert again.missed_call_id == first.missed_call_id
    with sessions() as session:
        assert len(session.execute(select(MissedCall).where(
            MissedCall.call_sid == "CAonce")).all()) == 1


def test_three_calls_in_ten_minutes_get_one_text_back(sessions, clinics):
    caller = new_us_patient()
    outcomes = [missed(sessions, "northside", caller, at=TUESDAY_10AM + timedelta(minutes=m))
                for m in (0, 4, 9)]
    assert [o.status for o in outcomes] == [MissedCallStatus.texted, MissedCallStatus.duplicate,
                                            MissedCallStatus.duplicate]
    assert [bool(o.message_ids) for o in outcomes] == [True, False, False]
    later = missed(sessions, "northside", caller, at=TUESDAY_10AM + timedelta(minutes=25))
    assert later.status == MissedCallStatus.texted and later.message_ids


def test_opted_out_callers_are_recorded_but_never_texted(sessions, clinics):
    caller = new_us_patient()
    outcome = missed(sessions, "northside", caller, at=TUESDAY_10AM,
                     contact={"consent": Consent.opted_out})
    assert outcome.status == MissedCallStatus.opted_out and outcome.message_ids == ()
    with sessions() as session:
        assert session.execute(select(Message).where(
            Message.to_number == caller)).first() is None


def test_text_back_names_the_practice_and_says_how_to_opt_out(sessions, clinics):
    (message,) = outbound(sessions, missed(sessions, "northside", new_us_patient(),
                                           at=datetime(2026, 3, 10, 15, 0, tzinfo=timezone.utc)))
    assert message.body.startswith("Sorry we missed your call at Northside Physio.")
    assert "Reply STOP to opt out." in message.body
    assert (message.channel, message.direction, message.status) == (
        Channel.sms, Direction.outbound, MessageStatus.pending)


@pytest.mark.parametrize(("at", "expected"), [
    (TUESDAY_7PM, "open again at 8:00 tomorrow"),
    (BST_TUESDAY_7PM, "open again at 8:00 tomorrow"),
    (SATURDAY_2PM, "open again at 8:00 on Monday"),
    (datetime(2026, 3, 10, 6, 0, tzinfo=timezone.utc), "open again at 8:00 today"),
])
def test_closed_text_back_says_when_the_clinic_opens_in_local_time(clinics, at, expected):
    text = compose(clinic=clinics["riverside"], contact=Contact(phone="+447700900000"), now=at)
    assert expected in " ".join(text.split())
    assert "Riverside Dental & Aesthetics" in text and "STOP" in text


def test_open_text_back_does_not_talk_about_opening_times(clinics):
    text = compose(clinic=clinics["riverside"], contact=Contact(phone="+447700900000"),
                   now=TUESDAY_10AM)
    assert "closed" not in text and "open again" not in text


def test_known_patients_are_greeted_by_first_name_and_strangers_are_not(clinics):
    clinic = clinics["riverside"]
    known = Contact(phone="+447700900000", first_name="Ann", is_known_patient=True)
    guessed = Contact(phone="+447700900000", first_name="Bob", is_known_patient=False)
    assert compose(clinic=clinic, contact=known, now=TUESDAY_10AM).startswith("Hi Ann, sorry")
    assert "Bob" not in compose(clinic=clinic, contact=guessed, now=TUESDAY_10AM)


def test_a_clinic_template_without_name_or_stop_gets_both_added(clinics):
    clinic = clinics["northside"]
    original = clinic.settings
    clinic.settings = {**original, "templates": {"text_back_open": "Missed you!"}}
    try:
        text = compose(clinic=clinic, contact=Contact(phone="+12025550123"),
                       now=TUESDAY_10AM.replace(hour=16))
    finally:
        clinic.settings = original
    assert text == "Northside Physio: Missed you! Reply STOP to opt out."


def test_a_broken_clinic_template_still_sends_the_default(clinics):
    clinic = clinics["northside"]
    original = clinic.settings
    clinic.settings = {**original, "templates": {"text_back_open": "{% if %}"}}
    try:
        text = compose(clinic=clinic, contact=Contact(phone="+12025550123"),
                       now=TUESDAY_10AM.replace(hour=16))
    finally:
        clinic.settings = original
    assert text.startswith("Sorry we missed your call at Northside Physio.")


def test_describe_opening_beyond_a_week_names_the_date():
    now = datetime(2026, 12, 20, 20, 0)
    assert describe_opening(datetime(2026, 12, 28, 8, 30), now) == "8:30 on Monday 28 December"


# -- channel ----------------------------------------------------------------------------------


def test_whatsapp_outside_the_window_uses_the_approved_template(sessions, clinics):
    caller = new_patient()
    (message,) = outbound(sessions, missed(sessions, "riverside", caller, at=TUESDAY_10AM,
                                           contact={"first_name": "Ann",
                                                    "is_known_patient": True}))
    assert message.channel == Channel.whatsapp
    assert message.to_number == f"whatsapp:{caller}"
    assert message.content_sid == "HX00000000000000000000000000000001"
    assert message.content_variables == {"1": "Riverside Dental & Aesthetics", "2": "Ann"}
    # What the patient reads, for staff and an SMS fallback: the approved text filled in.
    assert message.body == ("Sorry we missed your call at Riverside Dental & Aesthetics. Hi Ann, "
                            "reply YES to book an appointment, or tell us what you need. Reply "
                            "STOP to opt out.")


def test_whatsapp_inside_the_window_is_free_form(sessions, clinics):
    caller = new_patient()
    (message,) = outbound(sessions, missed(
        sessions, "riverside", caller, at=TUESDAY_10AM,
        contact={"last_whatsapp_inbound_at": TUESDAY_10AM - timedelta(hours=23)}))
    assert message.channel == Channel.whatsapp and message.content_sid is None


def _contact(**fields) -> Contact:
    return Contact(phone="+447700900000", whatsapp_unreachable=False, **fields)


def test_channel_follows_policy_and_contact_history(clinics):
    riverside, northside = clinics["riverside"], clinics["northside"]
    assert choose_channel(clinic=northside, contact=_contact(), now=TUESDAY_10AM) == Channel.sms
    assert choose_channel(clinic=riverside, contact=_contact(),
                          now=TUESDAY_10AM) == Channel.whatsapp
    unreachable = Contact(phone="+447700900000", whatsapp_unreachable=True)
    assert choose_channel(clinic=riverside, contact=unreachable,
                          now=TUESDAY_10AM) == Channel.sms
    # They last wrote to us by SMS: whatsapp_then_sms follows them there.
    assert choose_channel(clinic=riverside, contact=_contact(), now=TUESDAY_10AM,
                          last_inbound=Channel.sms) == Channel.sms
    assert choose_channel(clinic=riverside, contact=_contact(), now=TUESDAY_10AM,
                          last_inbound=Channel.whatsapp) == Channel.whatsapp


def test_whatsapp_without_an_approved_template_falls_back_to_sms_outside_the_window(clinics):
    allday = clinics["allday"]
    original = allday.settings
    allday.settings = {**original, "whatsapp": {}}
    in_window = _contact(last_whatsapp_inbound_at=TUESDAY_10AM - timedelta(hours=1))
    try:
        assert choose_channel(clinic=allday, contact=_contact(), now=TUESDAY_10AM) == Channel.sms
        assert choose_channel(clinic=allday, contact=in_window,
                              now=TUESDAY_10AM) == Channel.whatsapp
    finally:
        allday.settings = original
