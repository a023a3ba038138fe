"""The booking conversation: which service, which time, who is coming, then book and confirm.

One action reads every booking turn (yes, a request, a pick, a name, "none of those") against
the `awaiting` slot, so the order of questions is decided in one readable place.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.orm import Session

from actions.runtime import adapter_for, sessions, thread_session
from booking.appointment_booking import confirmation_text, offer_text, propose
from booking.clinics import match_service
from booking.conversations import record_event, rename_contact
from booking.models import Clinic, Contact, Service, utcnow
from booking.scheduling.base import CalendarUnavailable, Slot, SlotUnavailable
from booking.slot_choice import choose, preference

NAME_PREFIX = re.compile(r"^(?:hi|hello|hey)?[,!\s]*(?:it'?s|i'?m|i am|my name is|name'?s|"
                         r"this is)\s+", re.IGNORECASE)


def service_mention(tracker: Tracker) -> str | None:
    for entity in (tracker.latest_message or {}).get("entities", []):
        if entity.get("entity") == "service":
            return str(entity.get("value"))
    return tracker.get_slot("service")


def needs_name(clinic: Clinic, contact: Contact) -> bool:
    required = (clinic.settings or {}).get("required_patient_fields", ["first_name"])
    return "first_name" in required and not contact.first_name


def parse_name(text: str) -> tuple[str, str | None] | None:
    cleaned = NAME_PREFIX.sub("", text.strip()).strip(" .!")
    words = [w for w in re.split(r"\s+", cleaned) if re.fullmatch(r"[^\W\d_][\w'’-]*", w)]
    if not words or len(words) > 4:
        return None
    first, *rest = (w[:1].upper() + w[1:] for w in words)
    return first, " ".join(rest) or None


class ActionBookingTurn(Action):
    def name(self) -> str:
        return "action_booking_turn"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        latest = tracker.latest_message or {}
        intent = (latest.get("intent") or {}).get("name")
        text = latest.get("text") or ""
        awaiting = tracker.get_slot("awaiting")
        offered = [Slot.from_dict(s) for s in tracker.get_slot("offered_slots") or []]
        with thread_session(tracker.sender_id) as (session, thread):
            clinic, contact = thread.clinic, thread.contact
            turn = _Turn(dispatcher, session=session, clinic=clinic, contact=contact,
                         sender_id=tracker.sender_id, now=utcnow())
            if awaiting == "name" and tracker.get_slot("chosen_slot"):
                events = turn.take_name(text, Slot.from_dict(tracker.get_slot("chosen_slot")))
            elif awaiting == "pick" and offered:
                events = turn.pick(text, intent, offered)
            elif intent == "deny":
                dispatcher.utter_message(response="utter_no_problem")
                events = [SlotSet("awaiting", None)]
            else:
                events = turn.start(service_mention(tracker) or text)
            for kind, detail in turn.funnel:
                record_event(session, clinic_id=clinic.id, kind=kind, contact_id=contact.id,
                             thread_id=thread.id, detail=detail)
        return events


class _Turn:
    def __init__(self, dispatcher: CollectingDispatcher, *, session: Session, clinic: Clinic,
                 contact: Contact, sender_id: str, now: datetime):
        self.session = session
        self.say = dispatcher.utter_message
        self.clinic, self.contact, self.now = clinic, contact, now
        self.sender_id = sender_id
        self.adapter = adapter_for(clinic)
        self.zone = ZoneInfo(clinic.timezone)
        self.funnel: list[tuple[str, dict]] = []

    def start(self, mention: str | None) -> list[EventType]:
        service = match_service(services=self.clinic.services, text=mention or "")
        if service is None and len(self.clinic.services) == 1:
            service = self.clinic.services[0]
        if service is None:
            names = ", ".join(s.name for s in self.clinic.services)
            self.say(text=f"Happy to help you book. Which treatment is it for? We offer: {names}.")
            return [SlotSet("awaiting", "service")]
        return self.offer(service, wish=preference(mention or "", now=self.now, zone=self.zone))

    def offer(self, service: Service, *, wish=None, avoid: list[Slot] = (),
              lead_in: str = "") -> list[EventType]:
        try:
            slots = propose(self.adapter, clinic=self.clinic, service=service, now=self.now,
                            wish=wish, avoid=list(avoid))
            if not slots and wish is not None:
                lead_in = (lead_in + " Nothing is free then, so here are the nearest times."
                           ).strip()
                slots = propose(self.adapter, clinic=self.clinic, service=service, now=self.now,
                                avoid=list(avoid))
        except CalendarUnavailable:
            self.say(response="utter_calendar_down")
            return [SlotSet("awaiting", None)]
        if not slots:
            self.say(text=f"Sorry, there's nothing free for {service.name} in the next two "
                          "weeks. A member of the team will text you to find a time.")
            return [SlotSet("awaiting", None)]
        self.say(text=(lead_in + "\n" if lead_in else "") + offer_text(
            slots, clinic=self.clinic, service=service))
        self.funnel.append(("offered", {"service": service.slug, "count": len(slots)}))
        return [SlotSet("service", service.slug), SlotSet("awaiting", "pick"),
                SlotSet("offered_slots", [s.to_dict() for s in slots])]

    def pick(self, text: str, intent: str | None, offered: list[Slot]) -> list[EventType]:
        service = self._service(offered[0].service)
        index = choose(text, [s.starts_at for s in offered], zone=self.zone)
        if index is None and intent == "affirm" and len(offered) == 1:
            index = 0
        if index is not None:
            return self.chosen(offered[index], service)
        wish = preference(text, now=self.now, zone=self.zone)
        if wish is not None or intent == "deny":
            return self.offer(service, wish=wish, avoid=offered,
                              lead_in="No problem, how about one of these?")
        self.say(text=f"Which time suits you? Reply 1 to {len(offered)}, or tell me another "
                      "day or time.")
        return []

    def chosen(self, slot: Slot, service: Service) -> list[EventType]:
        if needs_name(self.clinic, self.contact):
            self.say(text="Great choice. What name should I put the booking under?")
            return [SlotSet("awaiting", "name"), SlotSet("chosen_slot", slot.to_dict())]
        return self.book(slot, service)

    def take_name(self, text: str, slot: Slot) -> list[EventType]:
        name = parse_name(text)
        if name is None:
            self.say(text="Sorry, I didn't catch that. What's your name, please?")
            return []
        # Committed on its own: the outer transaction must hold no write lock while the
        # adapter books (SQLite has one writer at a time).
        with sessions()() as session, session.begin():
            rename_contact(session, contact_id=self.contact.id, first_name=name[0],
                           last_name=name[1])
        self.session.refresh(self.contact)
        return self.book(slot, self._service(slot.service))

    def book(self, slot: Slot, service: Service) -> list[EventType]:
        try:
            appointment = self.adapter.book(
                slot=slot, contact=self.contact, service=service,
                idempotency_key=f"{self.sender_id}@{slot.starts_at.isoformat()}",
            )
        except SlotUnavailable:
            return self.offer(service, wish=None, avoid=[slot],
                              lead_in="Sorry, that time was just taken.")
        except CalendarUnavailable:
            self.say(response="utter_calendar_down")
            return [SlotSet("awaiting", "pick")]
        self.say(text=confirmation_text(appointment, clinic=self.clinic, service=service))
        self.funnel.append(("booked", {"appointment_id": appointment.id}))
        return [SlotSet("awaiting", None), SlotSet("offered_slots", None),
                SlotSet("chosen_slot", None), SlotSet("appointment_id", appointment.id)]

    def _service(self, slug: str) -> Service:
        return next(s for s in self.clinic.services if s.slug == slug)
