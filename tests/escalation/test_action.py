"""action_escalate with a Tracker and a CollectingDispatcher, on a real database and the
Twilio simulator; the process settings come from the environment, as in the action server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions import runtime
from actions.escalation import FALLBACK_MESSAGE, ActionEscalate
from booking.models import Escalation, EscalationReason, Thread, ThreadState, utcnow
from booking.settings import get_settings
from tests.escalation.conftest import ACCOUNT_SID, AUTH_TOKEN, start_thread


@pytest.fixture
def action_server_env(monkeypatch, database_url, twilio_fake) -> Iterator[None]:
    for name, value in {"DATABASE_URL": database_url, "TWILIO_API_BASE_URL": twilio_fake.url,
                        "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                        "GATEWAY_PUBLIC_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(name, value)
    caches = (get_settings, runtime.sessions, runtime.outbox)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


def tracker(sender_id: str, *, text: str, intent: str, red_flag: dict | None = None) -> Tracker:
    latest = {"text": text, "intent": {"name": intent, "confidence": 1.0}, "entities": []}
    if red_flag:
        latest["red_flag"] = red_flag
    return Tracker(sender_id=sender_id, slots={}, latest_message=latest,
                   events=[{"event": "user", "text": text}], paused=False, followup_action=None,
                   active_loop={}, latest_action_name="action_listen")


async def test_escalate_hands_over_alerts_and_pauses(sessions, clinics, action_server_env,
                                                     phones):
    said = "my lip went white after filler"
    with sessions() as session, session.begin():
        sender_id = start_thread(session, clinic_id=clinics["riverside"], phone="+447700900441",
                                 said=[said], at=utcnow()).sender_id
    dispatcher = CollectingDispatcher()
    events = await ActionEscalate().run(
        dispatcher, tracker(sender_id, text=said, intent="urgent",
                            red_flag={"rule": "vascular_occlusion_after_filler"}), domain={})

    with sessions() as session:
        escalation = session.execute(select(Escalation)).scalar_one()
        thread = session.execute(select(Thread).where(Thread.sender_id == sender_id)
                                 ).scalar_one()
        assert escalation.reason == EscalationReason.urgent
        assert escalation.red_flag_rule == "vascular_occlusion_after_filler"
        assert thread.state == ThreadState.handed_off
    assert events == [SlotSet("escalation_id", escalation.id), SlotSet("awaiting", None),
                      ConversationPaused()]
    assert [m["text"] for m in dispatcher.messages] == [escalation.bot_told_patient]
    (alert,) = phones.sent_to("+447700900111")  # sent before the action returned
    assert f"Reply ACK {escalation.ack_code} to take it." in alert["body"]


async def test_a_failed_handover_still_gives_the_safety_message(sessions, clinics,
                                                                action_server_env):
    dispatcher = CollectingDispatcher()
    events = await ActionEscalate().run(
        dispatcher, tracker("riverside:+447700900442", text="chest pain", intent="urgent"),
        domain={})  # no such thread: the handover cannot happen
    assert [m["text"] for m in dispatcher.messages] == [FALLBACK_MESSAGE]
    assert events == [SlotSet("awaiting", None)]  # not paused: nobody would answer
