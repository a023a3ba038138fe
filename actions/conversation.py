"""Actions around the booking: the missed-call start, FAQ answers, opt-out, not understanding."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.runtime import outbox, thread_session
from booking import consent
from booking.faq import answer


class ActionStartFromMissedCall(Action):
    """A new missed call (its text-back already sent by the gateway) starts the booking afresh."""

    def name(self) -> str:
        return "action_start_from_missed_call"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        return [SlotSet("awaiting", None), SlotSet("offered_slots", None),
                SlotSet("chosen_slot", None)]


class ActionAnswerFaq(Action):
    """Answers come from the clinic's configuration, so a clinic changes them without retraining."""

    def name(self) -> str:
        return "action_answer_faq"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        latest = tracker.latest_message or {}
        intent = (latest.get("intent") or {}).get("name")
        mention = next((e.get("value") for e in latest.get("entities", [])
                        if e.get("entity") == "service"), None)
        with thread_session(tracker.sender_id) as (_, thread):
            dispatcher.utter_message(text=answer(intent, clinic=thread.clinic, service=mention))
        if tracker.get_slot("awaiting") == "pick":
            dispatcher.utter_message(response="utter_resume_pick")
        return []


class ActionOptOut(Action):
    """'Stop texting me' in words: the same opt-out as the STOP keyword."""

    def name(self) -> str:
        return "action_opt_out"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        with thread_session(tracker.sender_id) as (session, thread):
            confirmation = consent.opt_out(session, clinic=thread.clinic, contact=thread.contact,
                                           thread=thread)
        await outbox().deliver([m.id for m in confirmation])
        return [SlotSet("awaiting", None)]


class ActionClarify(Action):
    """First miss: spell out the options. A second miss in a row: a person takes over."""

    def name(self) -> str:
        return "action_clarify"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        if previous_bot_action(tracker) == self.name():
            return [FollowupAction("action_escalate")]
        dispatcher.utter_message(response="utter_clarify")
        return []


def previous_bot_action(tracker: Tracker) -> str | None:
    """The last action the bot ran before the patient's latest message."""
    seen_latest_user = False
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            if seen_latest_user:
                return None
            seen_latest_user = True
        elif (seen_latest_user and event.get("event") == "action"
              and event.get("name") != "action_listen"):
            return event.get("name")
    return None
