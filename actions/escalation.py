"""Hand the thread to staff: urgent, billing, "let me talk to someone", or the bot is lost; and
a message wholly in Spanish, which the clinic's settings send to staff or answer briefly."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ConversationPaused, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.runtime import outbox, thread_session
from booking.dialogue.languages import other_language_policy
from booking.escalation.escalations import hand_over
from booking.models import EscalationReason, utcnow

logger = logging.getLogger(__name__)

REASON_FOR_INTENT = {
    "urgent": EscalationReason.urgent,
    "billing": EscalationReason.billing,
    "human": EscalationReason.human,
    "other_language": EscalationReason.human,
}
# Said when the handover itself failed (database down): the patient still gets the safety net.
FALLBACK_MESSAGE = ("If this is an emergency, call your local emergency number now. We could "
                    "not pass your message to the team just now: please call the clinic.")


class ActionEscalate(Action):
    def name(self) -> str:
        return "action_escalate"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        return await escalate(dispatcher, tracker)


async def escalate(dispatcher: CollectingDispatcher, tracker: Tracker,
                   patient_text: str | None = None) -> list[EventType]:
    """Hand over and tell the patient `patient_text`, or the handover's own wording."""
    latest = tracker.latest_message or {}
    intent = (latest.get("intent") or {}).get("name")
    reason = REASON_FOR_INTENT.get(intent, EscalationReason.not_understood)
    try:
        with thread_session(tracker.sender_id) as (session, thread):
            handover = hand_over(
                session, thread=thread, reason=reason, intent=intent,
                red_flag=latest.get("red_flag"), last_message=latest.get("text") or "",
                instant=utcnow(),
            )
    except Exception:
        logger.exception("handover failed for a %s escalation", reason.value)
        dispatcher.utter_message(text=FALLBACK_MESSAGE)
        return [SlotSet("awaiting", None)]
    # The on-call text first: it is what gets a clinician to an emergency.
    await outbox().deliver(handover.alert_message_ids)
    dispatcher.utter_message(text=patient_text or handover.patient_message)
    # The bot stays quiet until staff hand the thread back (a "resume" event).
    return [SlotSet("escalation_id", handover.escalation_id), SlotSet("awaiting", None),
            ConversationPaused()]


class ActionOtherLanguage(Action):
    """A message wholly in Spanish: the clinic's short reply, or a person takes over."""

    def name(self) -> str:
        return "action_other_language"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        with thread_session(tracker.sender_id) as (_, thread):
            policy = other_language_policy(thread.clinic)
        if policy.hand_over:
            return await escalate(dispatcher, tracker, patient_text=policy.reply)
        dispatcher.utter_message(text=policy.reply)
        return []
