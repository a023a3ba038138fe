"""Every Twilio webhook, on the gateway and on Rasa, refuses bad input with a clear 4xx and
stores nothing: forged or missing signatures, tampering, wrong encodings, oversized bodies,
unknown numbers, missing fields. Replays are harmless."""

from __future__ import annotations

import httpx
import pytest

from booking.models import Contact, FunnelEvent, Message, MissedCall, MissedCallStatus, Thread
from booking.twilio_signature import SIGNATURE_HEADER, sign
from tests.channels.conftest import (
    OPEN_NUMBER,
    OPEN_WHATSAPP,
    count,
    new_patient,
    twilio_post,
    wait_until,
)

pytestmark = pytest.mark.integration

# (service, path, a valid form for it)
WEBHOOKS = [
    ("gateway", "/twilio/voice", {"CallSid": "CAbad", "From": "+447700900999",
                                  "To": OPEN_NUMBER, "CallStatus": "ringing"}),
    ("gateway", "/twilio/voice/dial-status", {"CallSid": "CAbad", "From": "+447700900999",
                                              "To": OPEN_NUMBER, "DialCallStatus": "busy"}),
    ("gateway", "/twilio/voice/call-status", {"CallSid": "CAbad", "From": "+447700900999",
                                              "To": OPEN_NUMBER, "CallStatus": "completed"}),
    ("gateway", "/twilio/messaging/status", {"MessageSid": "SMbad", "MessageStatus": "failed",
                                             "ErrorCode": "30003"}),
    ("rasa", "/webhooks/twilio_sms/webhook", {"MessageSid": "SMbadin", "From": "+447700900999",
                                              "To": OPEN_NUMBER, "Body": "book me in"}),
    ("rasa", "/webhooks/twilio_whatsapp/webhook", {
        "MessageSid": "SMbadwa", "From": "whatsapp:+447700900999",
        "To": f"whatsapp:{OPEN_WHATSAPP}", "Body": "book me in"}),
]
IDS = [path for _, path, _ in WEBHOOKS]


def url_of(stack, service: str, path: str) -> str:
    return f"{stack.gateway if service == 'gateway' else stack.rasa}{path}"


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


@pytest.mark.parametrize(("service", "path", "form"), WEBHOOKS, ids=IDS)
def test_forged_missing_or_misdirected_signatures_are_refused(stack, channel_clinics, db,
                                                               service, path, form):
    url = url_of(stack, service, path)
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


@pytest.mark.parametrize(("service", "path", "form"), WEBHOOKS, ids=IDS)
def test_malformed_or_oversized_bodies_are_refused(stack, channel_clinics, db, service, path,
                                                   form):
    url = url_of(stack, service, path)
    before = snapshot(db)
    assert raw_post(url, b'{"From": "+447700900999"}',
                    content_type="application/json").status_code == 415
    assert raw_post(url, b"From=%2B44\xff\xfe&To=1").status_code == 400  # not UTF-8
    assert raw_post(url, b"From=1&From=2").status_code == 400  # a field twice
    assert raw_post(url, b"just some text").status_code == 400
    assert raw_post(url, b"Body=" + b"x" * 70_000).status_code == 413
    assert snapshot(db) == before


@pytest.mark.parametrize(("service", "path", "form", "status"), [
    ("gateway", "/twilio/voice", {"CallSid": "CAnum", "From": "+447700900999",
                                  "To": "+441632960999"}, 404),
    ("gateway", "/twilio/voice/dial-status", {"CallSid": "CAnum", "From": "+447700900999",
                                              "To": "+441632960999",
                                              "DialCallStatus": "busy"}, 404),
    ("gateway", "/twilio/voice/call-status", {"CallSid": "CAnum", "From": "+447700900999",
                                              "To": "+441632960999",
                                              "CallStatus": "completed"}, 404),
    # The clinic's WhatsApp sender is not a voice number.
    ("gateway", "/twilio/voice", {"CallSid": "CAnum", "From": "+447700900999",
                                  "To": OPEN_WHATSAPP}, 404),
    ("rasa", "/webhooks/twilio_sms/webhook", {"MessageSid": "SMnum", "From": "+447700900999",
                                              "To": "+441632960999", "Body": "hi"}, 404),
    # A WhatsApp number reached over the SMS webhook (or the other way round) is no clinic's.
    ("rasa", "/webhooks/twilio_sms/webhook", {"MessageSid": "SMnum2", "From": "+447700900999",
                                              "To": OPEN_WHATSAPP, "Body": "hi"}, 404),
    ("rasa", "/webhooks/twilio_whatsapp/webhook", {
        "MessageSid": "SMnum3", "From": "whatsapp:+447700900999",
        "To": f"whatsapp:{OPEN_NUMBER}", "Body": "hi"}, 404),
    ("rasa", "/webhooks/twilio_sms/webhook", {"MessageSid": "SMnum4", "From": "not-a-phone",
                                              "To": OPEN_NUMBER, "Body": "hi"}, 400),
    ("gateway", "/twilio/voice/dial-status", {"CallSid": "CAmissing", "To": OPEN_NUMBER}, 400),
    ("gateway", "/twilio/messaging/status", {"MessageSid": "SMmissing"}, 400),
    ("rasa", "/webhooks/twilio_sms/webhook", {"From": "+447700900999", "To": OPEN_NUMBER,
                                              "Body": "no sid"}, 400),
])
def test_unknown_numbers_and_missing_fields_are_refused(stack, channel_clinics, db, service,
                                                        path, form, status):
    before = snapshot(db)
    response = twilio_post(url_of(stack, service, path), form)
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
