"""`/hooks/missed-call` for other phone systems: HMAC over timestamp and body, stale and
replayed requests refused, and nothing stored for a request that is refused."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from booking.gateway.missed_call_hook import signature_for
from booking.models import Contact, Message, MissedCall, MissedCallStatus, WebhookReplay
from tests.channels.conftest import CLOSED_NUMBER, count, new_patient, wait_until
from tests.stack import HMAC_SECRET

pytestmark = pytest.mark.integration


def post_hook(stack, payload: dict | bytes, *, timestamp: int | None = None,
              secret: str = HMAC_SECRET, signature: str | None = None,
              headers: dict | None = None) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    sent = {"Content-Type": "application/json", "X-Ringback-Timestamp": stamp,
            "X-Ringback-Signature": signature or signature_for(secret=secret, timestamp=stamp,
                                                               body=body)}
    return httpx.post(f"{stack.gateway}/hooks/missed-call", content=body,
                      headers={**sent, **(headers or {})}, timeout=30)


def rows(db) -> tuple[int, int, int, int]:
    """Row counts, once no stored call is still waiting for its text-back to be decided."""
    wait_until(lambda: count(db, MissedCall, MissedCall.status == MissedCallStatus.pending) == 0,
               message="no undecided calls")
    return (count(db, MissedCall), count(db, Contact), count(db, Message),
            count(db, WebhookReplay))


def test_a_signed_hook_records_the_call_and_texts_back(stack, channel_clinics, db):
    caller = new_patient()
    response = post_hook(stack, {"call_id": f"pbx-{caller}", "caller": caller,
                                 "clinic": "nightowl"})
    assert response.status_code == 202
    assert response.json()["status"] == MissedCallStatus.pending.value  # text-back follows
    assert not response.json()["duplicate_delivery"]
    (text_back,) = stack.phone.wait_for(caller, count=1)
    assert "Nightowl Physio" in text_back["body"]


def test_the_same_call_sent_again_with_a_fresh_signature_is_one_call(stack, channel_clinics,
                                                                     db):
    caller = new_patient()
    payload = {"call_id": f"pbx-again-{caller}", "caller": caller, "to": CLOSED_NUMBER}
    now = int(time.time())
    first = post_hook(stack, payload, timestamp=now)
    second = post_hook(stack, payload, timestamp=now - 1)  # so a different signature
    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json()["duplicate_delivery"] is True
    assert second.json()["missed_call_id"] == first.json()["missed_call_id"]
    stack.phone.wait_for(caller, count=1)
    assert count(db, Message, Message.to_number == caller) == 1


def test_a_replayed_request_is_refused(stack, channel_clinics, db):
    caller = new_patient()
    payload = {"call_id": f"pbx-replay-{caller}", "caller": caller, "clinic": "nightowl"}
    stamp = int(time.time())
    assert post_hook(stack, payload, timestamp=stamp).status_code == 202
    before = rows(db)
    replay = post_hook(stack, payload, timestamp=stamp)  # byte-for-byte the same request
    assert replay.status_code == 409
    assert rows(db) == before


@pytest.mark.parametrize(("case", "status"), [
    ("stale", 401), ("future", 401), ("wrong secret", 401), ("no signature", 401),
    ("no timestamp", 401), ("body changed", 401), ("not json", 422), ("bad caller", 422),
    ("no clinic given", 422), ("unknown clinic", 404), ("unknown number", 404),
    ("unknown clinic, wrong secret", 401),
    ("oversized", 413), ("naive time", 422),
])
def test_bad_requests_are_refused_and_store_nothing(stack, channel_clinics, db, case, status):
    caller = new_patient()
    good = {"call_id": f"pbx-bad-{case}-{caller}", "caller": caller, "clinic": "nightowl"}
    before = rows(db)
    now = int(time.time())
    # A minute past the 300 s window: the request may take seconds to arrive on a busy machine.
    if case == "stale":
        response = post_hook(stack, good, timestamp=now - 360)
    elif case == "future":
        response = post_hook(stack, good, timestamp=now + 360)
    elif case == "wrong secret":
        response = post_hook(stack, good, secret="not-the-secret")
    elif case == "no signature":
        response = post_hook(stack, good, headers={"X-Ringback-Signature": ""})
    elif case == "no timestamp":
        response = post_hook(stack, good, headers={"X-Ringback-Timestamp": ""})
    elif case == "body changed":
        body = json.dumps(good).encode()
        signature = signature_for(secret=HMAC_SECRET, timestamp=str(now), body=body)
        response = post_hook(stack, json.dumps({**good, "caller": "+447700900999"}).encode(),
                             timestamp=now, signature=signature)
    elif case == "not json":
        response = post_hook(stack, b"call_id=1&caller=2")
    elif case == "bad caller":
        response = post_hook(stack, {**good, "caller": "not a number"})
    elif case == "no clinic given":
        response = post_hook(stack, {"call_id": "x", "caller": caller})
    elif case == "unknown clinic":
        response = post_hook(stack, {**good, "clinic": "no-such-clinic"})
    elif case == "unknown clinic, wrong secret":  # a stranger cannot probe for clinics
        response = post_hook(stack, {**good, "clinic": "no-such-clinic"}, secret="guess")
    elif case == "unknown number":
        response = post_hook(stack, {"call_id": "x", "caller": caller, "to": "+441632960999"})
    elif case == "oversized":
        response = post_hook(stack, {**good, "padding": "x" * 70_000})
    else:
        response = post_hook(stack, {**good, "occurred_at": "2026-11-20T10:00:00"})
    assert response.status_code == status, response.text
    assert rows(db) == before
