"""The staff console over plain HTTP against the running stack: sign-in, CSRF, clinic scoping,
acknowledging, taking over and handing back, staff acknowledging by text, and ids or forms that
are no use answered with a 4xx."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import select

from booking.db import MAX_ROW_ID
from booking.models import (
    Contact,
    EscalationAlert,
    EscalationStatus,
    Message,
    StaffMember,
    Thread,
    ThreadState,
)
from tests.booking.test_concurrency import postgres_url  # noqa: F401 - a fixture
from tests.channels.conftest import wait_until
from tests.channels.test_bad_input import gateway_only  # noqa: F401 - a fixture
from tests.channels.test_missed_call_hook import post_hook
from tests.console.conftest import (
    CLINIC_NUMBER,
    URGENT,
    bot_answer,
    csrf_of,
    new_patient,
    rasa_paused,
    sign_in,
    thread_of,
    urgent_escalation,
)

pytestmark = pytest.mark.integration

DR_PATEL, DR_HUGHES = "+447700900111", "+447700900222"


def test_console_pages_need_a_sign_in(stack):
    with httpx.Client(base_url=stack.gateway) as http:
        page = http.get("/console/escalations?status=open")
        assert page.status_code == 303
        assert page.headers["location"] == (
            "/console/login?next=/console/escalations%3Fstatus%3Dopen")
        assert http.get("/console/threads/1/updates").status_code == 401
        assert http.get("/console/escalations/rows").status_code == 401
        login = http.get("/console/login")
        assert "default-src 'self'" in login.headers["content-security-policy"]
        assert login.headers["cache-control"] == "no-store"


def test_wrong_password_and_sign_in_throttling(stack):
    with httpx.Client(base_url=stack.gateway) as http:
        token = csrf_of(http.get("/console/login").text)
        statuses = [http.post("/console/login", data={
            "username": "nobody-at-all", "password": f"guess-{n}", "csrf_token": token}
        ).status_code for n in range(6)]
        assert statuses == [401] * 5 + [429]
        assert "Too many failed sign-ins" in http.post("/console/login", data={
            "username": "nobody-at-all", "password": "x", "csrf_token": token}).text
        # A sign-in without the form's token is refused before any password is checked.
        assert http.post("/console/login", data={
            "username": "riverside-admin", "password": "riverside-demo"}).status_code == 403
    # The throttle is per username (and, more loosely, per address): others still sign in.
    sign_in(stack.gateway, "riverside-admin", "riverside-demo").http.close()


def test_posts_need_the_csrf_token_and_our_origin(stack, db, riverside_staff):
    patient = new_patient()
    escalation = urgent_escalation(stack, db, patient)
    path = f"/console/escalations/{escalation.id}/ack"
    assert riverside_staff.http.post(path).status_code == 403
    assert riverside_staff.http.post(path, data={"csrf_token": "forged"}).status_code == 403
    assert riverside_staff.post(path, headers={"Origin": "https://evil.example"}
                                ).status_code == 403
    db.expire_all()
    assert db.get(type(escalation), escalation.id).status == EscalationStatus.open
    assert riverside_staff.post(path).status_code == 303


def test_urgent_escalation_in_the_queue_and_thread_for_its_clinic_only(
        stack, db, riverside_staff, northside_staff):
    patient = new_patient()
    escalation = urgent_escalation(stack, db, patient)
    thread_id = escalation.thread_id

    queue = riverside_staff.http.get("/console/escalations").text
    assert patient in queue
    assert f"/console/threads/{thread_id}" in queue
    assert patient in riverside_staff.http.get("/console/escalations/rows?reason=urgent").text
    assert patient not in riverside_staff.http.get("/console/escalations?reason=billing").text
    assert patient not in riverside_staff.http.get("/console/escalations?status=resolved").text

    page = riverside_staff.http.get(f"/console/threads/{thread_id}").text
    assert URGENT in page  # the transcript
    assert "URGENT: patient wrote" in page and "red flag:" in page  # the summary
    assert "If this is life-threatening, call 999 now." in page  # what the bot told them
    assert escalation.red_flag_rule in page

    # Another clinic's staff: not in their queue, and every way in is a 404.
    assert patient not in northside_staff.http.get("/console/escalations?status=all").text
    assert patient not in northside_staff.http.get("/console/threads").text
    for path in (f"/console/threads/{thread_id}", f"/console/threads/{thread_id}/updates",
                 f"/console/escalations/{escalation.id}"):
        assert northside_staff.http.get(path).status_code == 404, path
    for path in (f"/console/escalations/{escalation.id}/ack",
                 f"/console/escalations/{escalation.id}/resolve",
                 f"/console/threads/{thread_id}/take-over",
                 f"/console/threads/{thread_id}/hand-back",
                 f"/console/threads/{thread_id}/reply"):
        assert northside_staff.post(path, {"body": "hello"}).status_code == 404, path
    db.expire_all()
    assert db.get(type(escalation), escalation.id).status == EscalationStatus.open
    assert not db.execute(select(Message).where(Message.thread_id == thread_id,
                                                Message.author.like("staff:%"))).first()

    acknowledged = riverside_staff.post(f"/console/escalations/{escalation.id}/ack")
    assert acknowledged.headers["location"] == f"/console/threads/{thread_id}"
    db.expire_all()
    escalation = db.get(type(escalation), escalation.id)
    assert escalation.status == EscalationStatus.acknowledged
    assert escalation.next_alert_at is None
    ack = db.execute(select(EscalationAlert).where(
        EscalationAlert.escalation_id == escalation.id, EscalationAlert.kind == "ack")
    ).scalar_one()
    assert ack.channel == "console"
    assert db.get(StaffMember, ack.staff_id).account.username == "riverside-admin"


def test_take_over_a_bot_thread_reply_and_hand_back(stack, db, riverside_staff):
    patient = new_patient()
    stack.phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    stack.phone.wait_for(patient, count=1)
    thread = thread_of(db, patient)
    assert thread.state == ThreadState.bot
    assert f"/console/threads/{thread.id}" in riverside_staff.http.get(
        "/console/threads?state=bot").text

    # Replying before taking over is refused: the bot might be mid-sentence.
    assert riverside_staff.post(f"/console/threads/{thread.id}/reply",
                                {"body": "hello"}).status_code == 409

    assert riverside_staff.post(f"/console/threads/{thread.id}/take-over").status_code == 303
    assert rasa_paused(stack, thread.sender_id)
    thread = thread_of(db, patient)
    assert thread.state == ThreadState.handed_off
    assert db.get(StaffMember, thread.handed_off_to_id).account.username == "riverside-admin"

    text = "Hi, this is Riverside reception. When would suit you for a call?"
    sent = riverside_staff.post(f"/console/threads/{thread.id}/reply", {"body": text})
    assert sent.status_code == 303
    # The thread is still on WhatsApp (the text-back's channel); outside WhatsApp's window the
    # outbox falls back to SMS, so the phone may see the reply twice: at least once is enough.
    stack.phone.wait_for(patient, count=1, where=lambda message: message["body"] == text)
    # One row, or two once WhatsApp's undeliverable report has made the SMS copy: both staff's.
    authors = db.execute(select(Message.author).where(Message.thread_id == thread.id,
                                                      Message.body == text)).scalars().all()
    assert authors and set(authors) == {f"staff:{thread.handed_off_to_id}"}

    # The patient's answer reaches the console's live feed, and the bot stays quiet.
    page = riverside_staff.http.get(f"/console/threads/{thread.id}").text
    last_id = int(re.findall(r'data-message-id="(\d+)"', page)[-1])
    stack.phone.text(sender=patient, clinic_number=CLINIC_NUMBER, body="after 5pm please")
    deadline = time.monotonic() + 30
    while True:
        updates = riverside_staff.http.get(f"/console/threads/{thread.id}/updates",
                                           params={"after": last_id}).json()
        if "after 5pm please" in updates["messages_html"]:
            break
        assert time.monotonic() < deadline, "the patient's message never reached the console"
        time.sleep(0.2)
    assert updates["state"] == "handed_off"
    assert updates["last_id"] > last_id

    assert riverside_staff.post(f"/console/threads/{thread.id}/hand-back").status_code == 303
    assert not rasa_paused(stack, thread.sender_id)
    thread = thread_of(db, patient)
    assert thread.state == ThreadState.bot and thread.handed_off_to_id is None
    assert bot_answer(stack, db, patient, "yes please, I'd like to book")


def test_on_call_clinician_acknowledges_by_text(stack, db):
    patient = new_patient()
    escalation = urgent_escalation(stack, db, patient)
    alert = stack.phone.wait_for(
        DR_PATEL, count=1, where=lambda m: f"ACK {escalation.ack_code} " in m["body"])[0]
    assert patient in alert["body"]

    # The escalation's number is not enough: a spoofed sender id could guess it.
    stack.phone.text(sender=DR_PATEL, clinic_number=CLINIC_NUMBER, body=f"ACK {escalation.id}")
    stack.phone.wait_for(DR_PATEL, count=1,
                         where=lambda m: m["body"].startswith("That code matches no escalation"))
    stack.phone.text(sender=DR_PATEL, clinic_number=CLINIC_NUMBER,
                     body=f"ACK {escalation.ack_code}")
    confirmation = stack.phone.wait_for(
        DR_PATEL, count=1, where=lambda m: f"escalation {escalation.id} is yours" in m["body"])
    assert confirmation[0]["body"].startswith("Thanks Dr Amara Patel")
    db.expire_all()
    escalation = db.get(type(escalation), escalation.id)
    assert escalation.status == EscalationStatus.acknowledged
    assert db.get(StaffMember, escalation.acknowledged_by_id).phone == DR_PATEL
    # The clinician's text never reached the bot as a patient's message.
    assert db.execute(select(Message).where(Message.thread_id == escalation.thread_id,
                                            Message.author.like("staff:%"))).first() is None


def test_the_running_gateway_repeats_an_unacknowledged_alert_to_the_backup(stack, db):
    patient = new_patient()
    escalation = urgent_escalation(stack, db, patient)
    # Stand in for ten minutes passing: the repeat is due now. The gateway's sweeper, not
    # this test, must notice it in the database and send it.
    escalation.next_alert_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    db.commit()
    repeat = stack.phone.wait_for(
        DR_HUGHES, count=1, where=lambda m: f"ACK {escalation.ack_code} " in m["body"])[0]
    assert repeat["body"].startswith("REPEAT (2), not yet acknowledged: URGENT")
    assert patient in repeat["body"]
    db.expire_all()
    escalation = db.get(type(escalation), escalation.id)
    assert escalation.alert_count == 2
    assert escalation.next_alert_at > datetime.now(timezone.utc)


# Ids no row can have: beyond 64 bits (SQLite's driver raises on it), beyond PostgreSQL's
# integer, zero, and not a number at all.
IMPOSSIBLE_IDS = ("99999999999999999999", str(MAX_ROW_ID + 1), "0", "abc")


def test_ids_no_row_can_have_are_unknown_ids(gateway_only):  # noqa: F811
    with httpx.Client(base_url=gateway_only.gateway) as anonymous:
        # Signing in comes first, whatever the id.
        assert anonymous.get(f"/console/threads/{IMPOSSIBLE_IDS[0]}").status_code == 303
    patient = new_patient()
    assert post_hook(gateway_only, {"call_id": f"console-{patient[1:]}", "caller": patient,
                                    "clinic": "riverside"}).status_code == 202

    def thread_id() -> int | None:
        with gateway_only.session() as session:
            return session.execute(select(Thread.id).join(Contact).where(
                Contact.phone == patient)).scalar_one_or_none()

    thread = wait_until(thread_id, message="the text-back's thread")
    staff = sign_in(gateway_only.gateway, "riverside-admin", "riverside-demo")
    try:
        pages = {path: staff.http.get(path).status_code for bad in IMPOSSIBLE_IDS for path in (
            f"/console/threads/{bad}", f"/console/threads/{bad}/updates",
            f"/console/escalations/{bad}")}
        actions = {path: staff.post(path, {"body": "hello"}).status_code
                   for bad in IMPOSSIBLE_IDS for path in (
                       f"/console/escalations/{bad}/ack", f"/console/escalations/{bad}/resolve",
                       f"/console/threads/{bad}/take-over", f"/console/threads/{bad}/hand-back",
                       f"/console/threads/{bad}/reply")}
        assert pages == {path: 404 for path in pages}
        assert actions == {path: 404 for path in actions}
        # The live feed's cursor is a message id too: one past any is refused, not queried.
        updates = f"/console/threads/{thread}/updates"
        assert staff.http.get(updates, params={"after": IMPOSSIBLE_IDS[0]}).status_code == 422
        newest = staff.http.get(updates, params={"after": MAX_ROW_ID})
        assert newest.status_code == 200 and newest.json()["last_id"] == MAX_ROW_ID
    finally:
        staff.http.close()


MALFORMED_MULTIPART = [
    ("multipart/form-data; boundary=x", b"garbage"),
    ("multipart/form-data", b"csrf_token=x"),  # no boundary
    ("multipart/form-data; boundary=x", b"--x\r\nnot a header\r\n\r\n--x--\r\n"),
]
FORM_ROUTES = ["/console/login", "/console/logout", "/console/escalations/1/ack",
               "/console/escalations/1/resolve", "/console/threads/1/take-over",
               "/console/threads/1/hand-back", "/console/threads/1/reply"]


def test_a_malformed_multipart_form_is_a_bad_request(stack, riverside_staff):
    statuses = {(path, content_type, body): riverside_staff.http.post(
        path, content=body, headers={"Content-Type": content_type}).status_code
        for path in FORM_ROUTES for content_type, body in MALFORMED_MULTIPART}
    assert statuses == {key: 400 for key in statuses}
    # Nothing was done: not even the sign-out.
    assert riverside_staff.http.get("/console/escalations").status_code == 200
