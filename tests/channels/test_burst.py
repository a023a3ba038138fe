"""Many missed calls at once, as a clinic's phone sees at nine in the morning.

The gateway stores calls reported together in one transaction and decides their text-backs in
batches; none of that may cost a call, send a text twice, or text a repeat caller twice. Through
the real gateway (SQLite, the embedded default), and on PostgreSQL with two processes' worth of
deciders racing over the same calls.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from booking.calls.recovery import (
    AlreadyDecided,
    CallReport,
    decide_text_backs,
    register_missed_calls,
)
from booking.clinics.config import load_clinics_file
from booking.clinics.lookups import find_clinic_by_slug
from booking.db import make_engine, session_factory
from booking.migrate import upgrade
from booking.models import Contact, FunnelEvent, Message, MissedCall, MissedCallStatus
from tests.booking.test_concurrency import postgres_url  # noqa: F401 - a fixture
from tests.channels.conftest import (
    CHANNEL_CLINICS,
    OPEN_NUMBER,
    count,
    new_patient,
    twilio_post,
    wait_until,
    write_clinics,
)

CALLERS = 20


def dial_form(caller: str, call_sid: str) -> dict[str, str]:
    return {"CallSid": call_sid, "From": caller, "To": OPEN_NUMBER,
            "DialCallStatus": "no-answer", "DialBridged": "false"}


@pytest.mark.integration
def test_a_burst_stores_each_call_once_and_texts_each_caller_once(stack, channel_clinics, db):
    callers = [new_patient() for _ in range(CALLERS)]
    forms = [dial_form(caller, f"CAburst{caller[1:]}") for caller in callers]
    forms.append(forms[0])  # Twilio retrying one callback in the middle of the burst
    forms.append(dial_form(callers[1], f"CAburst{callers[1][1:]}again"))  # rang twice at once
    url = f"{stack.gateway}/twilio/voice/dial-status"

    with ThreadPoolExecutor(max_workers=len(forms)) as pool:
        responses = list(pool.map(lambda form: twilio_post(url, form), forms))

    assert [response.status_code for response in responses] == [200] * len(forms)
    assert all("sending you a text message" in response.text for response in responses)
    call_sids = {form["CallSid"] for form in forms}
    # Under make test-stress deciding the burst has taken over 20 s; this test is about each
    # call decided once (make bench is about how fast).
    wait_until(lambda: count(db, MissedCall, MissedCall.call_sid.in_(call_sids),
                             MissedCall.status == MissedCallStatus.pending) == 0,
               timeout=60, message="every call decided")
    statuses = Counter(status for (status,) in db.execute(
        select(MissedCall.status).where(MissedCall.call_sid.in_(call_sids))))
    assert statuses == {MissedCallStatus.texted: CALLERS, MissedCallStatus.duplicate: 1}
    addresses = [*callers, *(f"whatsapp:{caller}" for caller in callers)]
    texted = Counter(to for (to,) in db.execute(
        select(Message.to_number).where(Message.to_number.in_(addresses))))
    assert sorted(texted.values()) == [1] * CALLERS
    for caller in callers:
        (text_back,) = stack.phone.wait_for(caller, count=1)
        assert "Allday Dental" in text_back["body"]
    contact_ids = select(Contact.id).where(Contact.phone.in_(callers))
    events = Counter(kind for (kind,) in db.execute(
        select(FunnelEvent.kind).where(FunnelEvent.contact_id.in_(contact_ids))))
    assert events["missed"] == CALLERS + 1 and events["texted"] == CALLERS


def test_racing_deciders_on_postgres_decide_each_call_once(postgres_url, tmp_path):  # noqa: F811
    upgrade(postgres_url)
    load_clinics_file(database_url=postgres_url,
                      path=write_clinics(tmp_path / "clinics.yml", CHANNEL_CLINICS))
    sessions = session_factory(make_engine(postgres_url))
    with sessions() as session:
        clinic_id = find_clinic_by_slug(session, "nightowl").id
    start = datetime(2026, 3, 10, 10, 0, tzinfo=timezone.utc)
    callers = [f"+4477009005{i:02d}" for i in range(CALLERS)]
    # Each caller rings twice, a minute apart; one CallSid is reported twice.
    reports = [CallReport(clinic_id=clinic_id, caller=caller, call_sid=f"CA{caller[1:]}-{ring}",
                          dial_status="no-answer", source="twilio",
                          occurred_at=start + timedelta(minutes=ring, seconds=index))
               for ring in range(2) for index, caller in enumerate(callers)]
    reports.append(reports[3])
    with sessions() as session, session.begin():
        recorded = register_missed_calls(session, reports)
    assert [r.is_new for r in recorded] == [True] * (2 * CALLERS) + [False]
    assert recorded[-1].missed_call_id == recorded[3].missed_call_id
    ids = [r.missed_call_id for r in recorded[:-1]]

    barrier = threading.Barrier(4)
    decided: list[int] = []

    def decide(batch: list[int]) -> None:
        barrier.wait()
        while True:  # a batch that lost a race is tried again, as the gateway does
            try:
                with sessions() as session, session.begin():
                    outcomes = decide_text_backs(session, batch)
                decided.extend(outcome.missed_call_id for outcome in outcomes)
                return
            except AlreadyDecided:
                continue

    # Four deciders over overlapping batches, each call in at least two of them.
    batches = [ids, ids[::-1], ids[::2] + ids[1::2], ids[len(ids) // 2:] + ids[:len(ids) // 2]]
    threads = [threading.Thread(target=decide, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(decided) == sorted(ids)  # every call decided, and by one decider only
    with sessions() as session:
        statuses = Counter(status for (status,) in session.execute(
            select(MissedCall.status).where(MissedCall.id.in_(ids))))
        texted = Counter(to for (to,) in session.execute(
            select(Message.to_number).where(Message.to_number.in_(callers))))
        missed_events = session.execute(select(FunnelEvent.id).where(
            FunnelEvent.kind == "missed", FunnelEvent.clinic_id == clinic_id)).all()
    assert statuses == {MissedCallStatus.texted: CALLERS, MissedCallStatus.duplicate: CALLERS}
    assert sorted(texted.values()) == [1] * CALLERS
    assert len(missed_events) == 2 * CALLERS
