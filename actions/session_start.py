"""The start of a conversation session (after domain.yml's session_expiration_time of silence).

Rasa 3.6's own `action_session_start` carries every SlotSet event of the ending session into
the new one, copies included, and Rasa adds a `session_started_metadata` SlotSet at each
session start, so a conversation's tracker grew by one event per session however old the
rest was. This carries each slot's current value over once; the metadata slot is Rasa's to
set afresh.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

SESSION_METADATA_SLOT = "session_started_metadata"


class ActionSessionStart(Action):
    def name(self) -> str:
        return "action_session_start"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        carried = [SlotSet(name, value) for name, value in tracker.slots.items()
                   if value is not None and name != SESSION_METADATA_SLOT]
        return [SessionStarted(), *carried, ActionExecuted("action_listen")]
