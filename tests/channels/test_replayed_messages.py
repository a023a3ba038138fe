"""A message delivered to Rasa twice (the gateway got no answer the first time: Rasa was
killed after saving the turn, the connection broke) is read once and answered with the same
replies (connectors/gateway_channel.py); and only the gateway, with its token, posts messages and
events to that channel."""

from __future__ import annotations

import uuid

import httpx
import pytest
from rasa.shared.core.events import (
    ActionExecuted,
    BotUttered,
    UserUtteranceReverted,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from booking.messaging.rasa_client import GATEWAY_CHANNEL_PATH, GATEWAY_EVENT_PATH
from connectors.gateway_channel import replies_given

CLINIC_NUMBER = "+441632960001"


def _tracker(*events) -> DialogueStateTracker:
    return DialogueStateTracker.from_events("riverside:+447700900001", list(events), slots=[])


def test_the_replies_a_message_was_given_are_found_by_its_id():
    tracker = _tracker(
        UserUttered("yes please", message_id="inbox-1"),
        BotUttered("Which treatment?", {"buttons": [{"title": "Check-up"}]}),
        ActionExecuted("action_listen"),
        UserUttered("a check up", message_id="inbox-2"),
        BotUttered("Tuesday at 10? "),
    )
    assert replies_given(tracker, "inbox-1") == [
        {"buttons": [{"title": "Check-up"}], "text": "Which treatment?"}]
    assert replies_given(tracker, "inbox-2") == [{"text": "Tuesday at 10?"}]


def test_a_message_never_read_or_whose_turn_was_rewound_has_no_replies():
    tracker = _tracker(UserUttered("yes please", message_id="inbox-1"),
                       BotUttered("Which treatment?"), UserUtteranceReverted())
    assert replies_given(tracker, "inbox-1") is None
    assert replies_given(tracker, "inbox-9") is None


def test_a_message_read_without_a_reply_is_answered_with_none_again():
    tracker = _tracker(UserUttered("hello?", message_id="inbox-3"),
                       ActionExecuted("action_listen"))
    assert replies_given(tracker, "inbox-3") == []


@pytest.mark.integration
def test_the_same_message_id_twice_is_read_once_and_answered_alike(stack):
    patient = f"+4477009{uuid.uuid4().int % 10**5:05d}"
    stack.phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    stack.phone.wait_for(patient, count=1)  # the text-back: the patient has a thread now
    sender = f"riverside:{patient}"
    message = {"sender": sender, "text": "what time do you open?",
               "message_id": f"inbox-replay-{uuid.uuid4().hex}", "metadata": {}}
    headers = {"Authorization": f"Bearer {stack.env['RASA_TOKEN']}"}

    def deliver() -> list[str]:
        answer = httpx.post(stack.rasa + GATEWAY_CHANNEL_PATH, json=message, headers=headers,
                            timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()["replies"]

    first, again = deliver(), deliver()
    assert first and again == first
    tracker = httpx.get(stack.rasa_api(f"/conversations/{sender}/tracker"), timeout=30).json()
    assert [event["text"] for event in tracker["events"] if event["event"] == "user"
            and event.get("message_id") == message["message_id"]] == [message["text"]]


@pytest.mark.integration
@pytest.mark.parametrize("path", [GATEWAY_CHANNEL_PATH, GATEWAY_EVENT_PATH])
def test_the_gateway_channel_refuses_callers_without_the_gateway_token(stack, path):
    body = {"sender": "riverside:+447700900697", "text": "hello",
            "intent": "EXTERNAL_missed_call", "entities": {}}
    for headers in ({}, {"Authorization": "Bearer wrong-token"}):
        refused = httpx.post(stack.rasa + path, json=body, headers=headers, timeout=30)
        assert refused.status_code == 401, (path, headers, refused.text)
