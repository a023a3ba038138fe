"""Every Twilio webhook, on the gateway and on Rasa, refuses bad input with a clear 4xx and
stores nothing: forged or missing signatures, tampering, wrong encodings, oversized bodies,
unknown numbers, missing fields, numbers and times no database can hold. Replays are harmless."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from booking.clinics.config import load_clinics_file
from booking.db import MAX_ROW_ID, get_engine
from booking.gateway.app import create_app
from booking.gateway.missed_call_hook import TIMESTAMP_HEADER
from booking.messaging.twilio_signature import SIGNATURE_HEADER, sign
from booking.migrate import upgrade
from booking.models import (
    Contact,
    FunnelEvent,
    InboxItem,
    Message,
    MissedCall,
    MissedCallStatus,
    Thread,
)
from booking.settings import Settings
from tests.booking.test_concurrency import postgres_url  # noqa: F401 - a fixture
from tests.channels.conftest import (
    EXAMPLE_FILE,
    OPEN_NUMBER,
    OPEN_WHATSAPP,
    count,
    new_patient,
    twilio_post,
    wait_until,
)
from tests.channels.test_missed_call_hook import post_hook
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, HMAC_SECRET, free_port, served_in_thread

pytestmark = pytest.mark.integration


@dataclass
class GatewayOnly:
    """The gateway without Rasa, named like `RunningStack` so the stack's helpers work on it."""

    gateway: str
    database_url: str

    def session(self) -> Session:
        return Session(get_engine(self.database_url))


@pytest.fixture(params=["sqlite", "postgres"])
def gateway_only(request: pytest.FixtureRequest, tmp_path) -> Iterator[GatewayOnly]:
    """The real gateway app in this process, on a fresh database of each kind we run on, with
    the example clinics: SQLite and PostgreSQL fail differently on values they cannot hold.
    Twilio and Rasa are unreachable, which the gateway survives (it retries later)."""
    database_url = (f"sqlite:///{tmp_path / 'gateway.db'}" if request.param == "sqlite"
                    else request.getfixturevalue("postgres_url"))
    upgrade(database_url)
    load_clinics_file(database_url=database_url, path=EXAMPLE_FILE)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(database_url=database_url, gateway_public_url=url,
                        console_public_url=url, twilio_account_sid=ACCOUNT_SID,
                        twilio_auth_token=AUTH_TOKEN, missed_call_hmac_secret=HMAC_SECRET,
                        session_secret="test-session-secret",
                        twilio_api_base_url="http://127.0.0.1:9", rasa_url="http://127.0.0.1:9")
    with served_in_thread(create_app(settings), port, name="the gateway"):
        yield GatewayOnly(gateway=url, database_url=database_url)
    get_engine(database_url).dispose()  # before PostgreSQL drops the database

# (path, a valid form for it): every webhook is the gateway's
WEBHOOKS = [
    ("/twilio/voice", {"CallSid": "CAbad", "From": "+447700900999",
                                  "To": OPEN_NUMBER, "CallStatus": "ringing"}),
    ("/twilio/voice/dial-status", {"CallSid": "CAbad", "From": "+447700900999",
                                              "To": OPEN_NUMBER, "DialCallStatus": "busy"}),
    ("/twilio/voice/call-status", {"CallSid": "CAbad", "From": "+447700900999",
                                              "To": OPEN_NUMBER, "CallStatus": "completed"}),
    ("/twilio/messaging/status", {"MessageSid": "SMbad", "MessageStatus": "failed",
                                             "ErrorCode": "30003"}),
    ("/twilio/messaging/sms", {"MessageSid": "SMbadin", "From": "+447700900999",
                                              "To": OPEN_NUMBER, "Body": "book me in"}),
    ("/twilio/messaging/whatsapp", {
        "MessageSid": "SMbadwa", "From": "whatsapp:+447700900999",
        "To": f"whatsapp:{OPEN_WHATSAPP}", "Body": "book me in"}),
]
IDS = [path for path, _ in WEBHOOKS]




def snapshot(db) -> tuple[int, ...]:
    """Row counts, once no stored call is still waiting for its text-back to be decided."""
    wait_until(lambda: count(db, MissedCall, MissedCall.status == MissedCallStatus.pending) == 0,
               message="no undecided calls")
    return tuple(count(db, model) for model in (Message, MissedCall, Contact, Thread,
                                                FunnelEvent))


def raw_post(url: str, content: bytes, *, content_type="application/x-www-form-urlencoded",
             signature: str = "x") -> httpx.Response:
    return httpx.post(url, content=content, timeout=30,
                      headers={"Content-Type": content_type, SIGNATURE_HEADER: signature})


@pytest.mark.parametrize(("path", "form"), WEBHOOKS, ids=IDS)
def test_forged_missing_or_misdirected_signatures_are_refused(stack, channel_clinics, db,
                                                               path, form):
    url = f"{stack.gateway}{path}"
    before = snapshot(db)
    forged = sign(auth_token="not-our-token", url=url, params=form)
    responses = [
        twilio_post(url, form, signature=None),
        twilio_post(url, form, signature=""),
        twilio_post(url, form, signature=forged),
        # Signed for another of our URLs, or for other parameters than those sent.
        twilio_post(url, form, signed_url=f"{stack.gateway}/twilio/voice/other"),
        twilio_post(url, {**form, "From": "+447700900998"},
                    signature=sign(auth_token="test-auth-token-0123456789abcdef", url=url,
                                   params=form)),
    ]
    assert [r.status_code for r in responses] == [403] * 5
    assert snapshot(db) == before


@pytest.mark.parametrize(("path", "form"), WEBHOOKS, ids=IDS)
def test_malformed_or_oversized_bodies_are_refused(stack, channel_clinics, db, path, form):
    url = f"{stack.gateway}{path}"
    before = snapshot(db)
    assert raw_post(url, b'{"From": "+447700900999"}',
                    content_type="application/json").status_code == 415
    assert raw_post(url, b"From=%2B44\xff\xfe&To=1").status_code == 400  # not UTF-8
    assert raw_post(url, b"From=1&From=2").status_code == 400  # a field twice
    assert raw_post(url, b"just some text").status_code == 400
    assert raw_post(url, b"Body=" + b"x" * 70_000).status_code == 413
    assert snapshot(db) == before


@pytest.mark.parametrize(("path", "form", "status"), [
    ("/twilio/voice", {"CallSid": "CAnum", "From": "+447700900999",
                                  "To": "+441632960999"}, 404),
    ("/twilio/voice/dial-status", {"CallSid": "CAnum", "From": "+447700900999",
                                              "To": "+441632960999",
                                              "DialCallStatus": "busy"}, 404),
    ("/twilio/voice/call-status", {"CallSid": "CAnum", "From": "+447700900999",
                                              "To": "+441632960999",
                                              "CallStatus": "completed"}, 404),
    # The clinic's WhatsApp sender is not a voice number.
    ("/twilio/voice", {"CallSid": "CAnum", "From": "+447700900999",
                                  "To": OPEN_WHATSAPP}, 404),
    ("/twilio/messaging/sms", {"MessageSid": "SMnum", "From": "+447700900999",
                                              "To": "+441632960999", "Body": "hi"}, 404),
    # A WhatsApp number reached over the SMS webhook (or the other way round) is no clinic's.
    ("/twilio/messaging/sms", {"MessageSid": "SMnum2", "From": "+447700900999",
                                              "To": OPEN_WHATSAPP, "Body": "hi"}, 404),
    ("/twilio/messaging/whatsapp", {
        "MessageSid": "SMnum3", "From": "whatsapp:+447700900999",
        "To": f"whatsapp:{OPEN_NUMBER}", "Body": "hi"}, 404),
    ("/twilio/messaging/sms", {"MessageSid": "SMnum4", "From": "not-a-phone",
                                              "To": OPEN_NUMBER, "Body": "hi"}, 400),
    ("/twilio/voice/dial-status", {"CallSid": "CAmissing", "To": OPEN_NUMBER}, 400),
    ("/twilio/messaging/status", {"MessageSid": "SMmissing"}, 400),
    ("/twilio/messaging/sms", {"From": "+447700900999", "To": OPEN_NUMBER,
                                              "Body": "no sid"}, 400),
])
def test_unknown_numbers_and_missing_fields_are_refused(stack, channel_clinics, db, path, form,
                                                        status):
    before = snapshot(db)
    response = twilio_post(f"{stack.gateway}{path}", form)
    assert response.status_code == status, response.text
    assert snapshot(db) == before


def test_a_status_report_for_a_message_we_never_sent_changes_nothing(stack, channel_clinics,
                                                                      db):
    before = snapshot(db)
    response = twilio_post(f"{stack.gateway}/twilio/messaging/status",
                           {"MessageSid": "SMnever", "MessageStatus": "undelivered",
                            "ErrorCode": "63016"})
    assert response.status_code == 204  # answered, so Twilio stops retrying
    assert snapshot(db) == before


def test_a_replayed_dial_status_is_one_missed_call_and_one_text_back(stack, channel_clinics,
                                                                     db):
    caller = new_patient()
    form = {"CallSid": f"CAreplay{caller[1:]}", "From": caller, "To": OPEN_NUMBER,
            "DialCallStatus": "no-answer", "DialBridged": "false"}
    url = f"{stack.gateway}/twilio/voice/dial-status"
    assert [twilio_post(url, form).status_code for _ in range(3)] == [200, 200, 200]
    stack.phone.wait_for(caller, count=1)
    assert count(db, MissedCall, MissedCall.call_sid == form["CallSid"]) == 1
    assert count(db, Message, Message.to_number.in_([caller, f"whatsapp:{caller}"])) == 1


def hook_rows(gateway_only: GatewayOnly) -> tuple[int, int, int]:
    with gateway_only.session() as session:
        return (count(session, MissedCall), count(session, Contact), count(session, Message))


def test_the_missed_call_hook_refuses_timestamps_and_times_that_cannot_be(gateway_only):
    caller = new_patient()
    good = {"call_id": f"pbx-impossible-{caller[1:]}", "caller": caller, "clinic": "riverside"}
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    before = hook_rows(gateway_only)
    # "²" is a digit to str.isdigit() but not to int(); int() refuses 5,000 digits outright.
    timestamps = {"²": post_hook(gateway_only, good, headers={TIMESTAMP_HEADER: b"\xb2"}),
                  "5,000 digits": post_hook(gateway_only, good,
                                            headers={TIMESTAMP_HEADER: "9" * 5000}),
                  "words": post_hook(gateway_only, good, headers={TIMESTAMP_HEADER: "now"})}
    # Year 1 and year 9999 overflow when moved to UTC or to the clinic's time zone.
    times = {occurred_at: post_hook(gateway_only, {**good, "occurred_at": occurred_at})
             for occurred_at in ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00",
                                 "9999-12-31T23:59:59-05:00", "1969-12-31T23:59:59Z",
                                 tomorrow)}
    assert {case: (r.status_code, r.json()["detail"]) for case, r in timestamps.items()} == {
        case: (400, "X-Ringback-Timestamp must be Unix seconds: 1 to 10 ASCII digits")
        for case in timestamps}
    assert {case: (r.status_code, r.json()["detail"]) for case, r in times.items()} == {
        case: (400, "occurred_at must lie between 1970-01-01T00:00:00Z and now")
        for case in times}
    assert hook_rows(gateway_only) == before


def test_the_missed_call_hook_refuses_what_its_columns_cannot_hold(gateway_only):
    caller = new_patient()
    good = {"call_id": f"pbx-long-{caller[1:]}", "caller": caller, "clinic": "riverside"}
    before = hook_rows(gateway_only)
    long_call_id = post_hook(gateway_only, {**good, "call_id": "c" * 60})
    long_status = post_hook(gateway_only, {**good, "status": "no-answer" * 4})
    assert long_call_id.status_code == 422, long_call_id.text
    assert long_call_id.json()["detail"][0]["msg"] == "call_id must be 1-59 characters"
    assert long_status.status_code == 422, long_status.text
    assert long_status.json()["detail"][0]["msg"] == "status must be at most 32 characters"
    assert hook_rows(gateway_only) == before
    # The longest call_id allowed is stored whole.
    longest = post_hook(gateway_only, {**good, "call_id": "c" * 59})
    assert longest.status_code == 202, longest.text


def test_a_status_report_naming_no_possible_message_is_refused(gateway_only):
    form = {"MessageSid": "SMimpossible", "MessageStatus": "delivered"}
    refused = {message_id: twilio_post(
        f"{gateway_only.gateway}/twilio/messaging/status?message_id={message_id}", form)
        for message_id in ("99999999999999999999", str(MAX_ROW_ID + 1), "0", "-1", "abc")}
    assert {message_id: (r.status_code, r.json()["detail"])
            for message_id, r in refused.items()} == {
        message_id: (400, "message_id is not the id of a message we sent")
        for message_id in refused}
    # An id that could be ours but is not is answered like an unknown SID.
    unknown = twilio_post(
        f"{gateway_only.gateway}/twilio/messaging/status?message_id={MAX_ROW_ID}", form)
    assert unknown.status_code == 204
    with gateway_only.session() as session:
        assert count(session, Message) == 0


def test_a_nul_byte_in_a_text_is_dropped_and_the_message_kept(gateway_only):
    """PostgreSQL cannot store NUL in text; the patient's message must not be lost for it."""
    form = {"MessageSid": "SMnul", "From": "+447700900998", "To": "+441632960001",
            "Body": "my tooth\x00 hurts"}
    response = twilio_post(f"{gateway_only.gateway}/twilio/messaging/sms", form)
    assert response.status_code == 200, response.text

    def taken_in() -> Message | None:
        with gateway_only.session() as session:
            return session.execute(select(Message).where(Message.twilio_sid == "SMnul")
                                   ).scalar_one_or_none()

    wait_until(taken_in, message="the message taken into the inbox")
    with gateway_only.session() as session:
        message = session.execute(select(Message).where(Message.twilio_sid == "SMnul")
                                  ).scalar_one()
        assert message.body == "my tooth hurts"
        (item,) = session.execute(select(InboxItem).where(InboxItem.message_id == message.id)
                                  ).scalars().all()
        assert item.text == "my tooth hurts"
