"""The booking conversation: which service, which time, who is coming, then book and confirm.

Every turn is read against the `awaiting` slot (what the bot asked last), so the order of
questions is decided in one readable place, whichever intent the message was classified as.
The rules of booking (which times, which details, the wording) live in `booking/`; this module
only moves between steps and keeps the slots.

Each patient message gets one reply. Two misses in a row hand the thread to staff, and so
does turning down too many sets of times: the bot never loops.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.orm import Session

from actions import appointments, family
from actions.runtime import adapter_for, catalogue_of, thread_session
from actions.steps import (
    CALENDAR_DOWN,
    CHANGE_STEPS,
    JUST_BOOKED,
    OFFERED_TO_BOOK,
)
from booking.clinics.lookups import match_service
from booking.dialogue import cues, patient_details
from booking.dialogue import family as people
from booking.dialogue.appointment_booking import (
    MAX_OFFER_ROUNDS,
    confirmation_text,
    describe,
    describe_wish,
    find_provider,
    find_service,
    local_day,
    nearest_to,
    nearest_to_wish,
    not_offered,
    offer_text,
    pick_reminder,
    propose,
    service_question,
    still_free,
)
from booking.dialogue.appointment_changes import answer_is_yes
from booking.dialogue.faq import answer_topic
from booking.dialogue.slot_choice import (
    Preference,
    date_order_for,
    declines,
    matching_offers,
    preference,
    warm_up,
)
from booking.messaging.conversations import record_event
from booking.models import Clinic, Contact, Patient, Provider, Service, Thread, utcnow
from booking.outreach import jobs
from booking.scheduling.base import CalendarUnavailable, Slot, SlotUnavailable

# Slots of one booking attempt, cleared when it ends.
BOOKING_SLOTS = ("awaiting", "offered_slots", "declined_slots", "offer_rounds", "chosen_slot",
                 "wish", "provider", "change_kind", "change_candidates", "change_target",
                 "booking_for", "booked_together", "who_options",
                 "change_other_day")

CLOSE_POLITELY = "No problem. If you need us later, just reply here."
# Never suggest a bare "CANCEL" or "STOP": carriers read those single words as an opt-out.
CLARIFY = ("Sorry, I didn't quite get that. You can reply YES to book, \"move my appointment\" "
           "or \"cancel my appointment\", ask about our hours, prices or address, or say "
           "\"talk to someone\" to reach the team. If it's urgent, say so.")
warm_up()


class Conversation:
    """One patient message handled against the conversation so far; collects one reply."""

    def __init__(self, tracker: Tracker, *, session: Session, thread: Thread, now: datetime):
        latest = tracker.latest_message or {}
        self.tracker = tracker
        self.intent: str | None = (latest.get("intent") or {}).get("name")
        self.text: str = latest.get("text") or ""
        self.entities: list[dict] = latest.get("entities") or []
        self.session, self.thread = session, thread
        # Changes wait for the commit: the adapter books in its own transaction, which must
        # find SQLite's one write lock free (a person's new name is set before booking).
        session.autoflush = False
        self.clinic: Clinic = thread.clinic
        self.contact: Contact = thread.contact
        self.sender_id = tracker.sender_id
        self.now = now
        self.zone = ZoneInfo(self.clinic.timezone)
        self.date_order = date_order_for(self.clinic.locale)
        self.catalogue = catalogue_of(self.clinic)
        self.services: list[Service] = list(self.catalogue.services)
        self.providers: list[Provider] = list(self.catalogue.providers)
        self.adapter = adapter_for(self.clinic)
        # What the tracker says, and what this turn changes.
        self.awaiting: str | None = tracker.get_slot("awaiting")
        self.service_slug: str | None = tracker.get_slot("service")
        self.offered = [Slot.from_dict(s) for s in tracker.get_slot("offered_slots") or []]
        self.declined = [Slot.from_dict(s) for s in tracker.get_slot("declined_slots") or []]
        chosen = tracker.get_slot("chosen_slot")
        self.chosen = Slot.from_dict(chosen) if chosen else None
        self.offer_rounds = int(tracker.get_slot("offer_rounds") or 0)
        self.misses = int(tracker.get_slot("misses") or 0)
        self.replies: list[str] = []
        self.slot_changes: dict[str, Any] = {}
        self.hand_over = False
        self.missed_this_turn = False
        self.funnel: list[tuple[str, dict]] = []
        self._own_times: list[tuple[datetime, datetime]] | None = None
        self._household: list[Patient] | None = None
        self._booking_for: list[Patient] | None = None

    # -- replies and state -------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.replies.append(text.strip())

    def set(self, **slots: Any) -> None:
        self.slot_changes.update(slots)
        if "awaiting" in slots:
            self.awaiting = slots["awaiting"]
        if "booking_for" in slots or "booked_together" in slots:
            self._booking_for, self._own_times = None, None

    def slot(self, name: str) -> Any:
        return self.slot_changes.get(name, self.tracker.get_slot(name))

    def end_booking(self, **keep: Any) -> None:
        """The booking attempt is over (booked, closed, handed over): forget its working state.

        `keep` sets slots afterwards (what the next message should find).
        """
        self.offered, self.declined, self.chosen, self.offer_rounds = [], [], None, 0
        self.set(**{name: None for name in BOOKING_SLOTS})
        self.set(offer_rounds=0, **keep)

    def missed(self, prompt: str) -> None:
        """A message the bot could not use: ask once more; the second miss goes to staff."""
        self.missed_this_turn = True
        if self.misses + 1 >= 2:
            self.handover()
            return
        self.set(misses=self.misses + 1)
        self.say(prompt)

    def handover(self) -> None:
        self.hand_over = True
        self.replies.clear()

    def finish(self, dispatcher: CollectingDispatcher) -> list[EventType]:
        for kind, detail in self.funnel:
            record_event(self.session, clinic_id=self.clinic.id, kind=kind,
                         contact_id=self.contact.id, thread_id=self.thread.id, detail=detail)
        if not self.missed_this_turn and self.misses:
            self.set(misses=0)
        if self.replies:
            dispatcher.utter_message(text="\n\n".join(self.replies))
        # Only real changes: every event is stored and sent with each later action call.
        events: list[EventType] = [SlotSet(name, value)
                                   for name, value in self.slot_changes.items()
                                   if value != self.tracker.get_slot(name)]
        if self.hand_over:
            events.append(FollowupAction("action_escalate"))
        return events

    # -- what the message says ---------------------------------------------------------------

    def named_service(self, *, forgiving: bool = False) -> Service | None:
        """The treatment the message names; `forgiving` also reads typos ("chekup")."""
        for entity in self.entities:
            if entity.get("entity") == "service":
                found = match_service(services=self.services, text=str(entity.get("value")))
                if found is not None:
                    return found
        if forgiving:
            return find_service(self.services, self.text)
        return match_service(services=self.services, text=self.text)

    def unoffered_treatment(self) -> str | None:
        """A treatment named as the patient wrote it ("facials") that the clinic does not list."""
        if self.named_service(forgiving=True) is not None:
            return None
        for entity in self.entities:
            if entity.get("entity") == "service" and entity.get("start") is not None:
                return self.text[entity["start"]:entity["end"]]
        return None

    def current_service(self) -> Service | None:
        """The treatment being booked, or else the one just booked ("what should I bring?")."""
        slug = self.slot("service")
        if slug is None and self.slot("appointment_id"):
            booked = next((a for a in self.adapter.upcoming_for_contact(contact=self.contact)
                           if a.id == self.slot("appointment_id")), None)
            slug = booked.service.slug if booked else None
        return next((s for s in self.services if s.slug == slug), None)

    # -- who it is for ----------------------------------------------------------------------

    def household(self) -> list[Patient]:
        """Everyone this phone has booked for."""
        if self._household is None:
            self._household = people.household(self.session, self.contact)
        return self._household

    def people_named(self) -> list[people.Person]:
        """Who the message says the appointment is for ("for my daughter Emma")."""
        return people.read_people(self.text, not_names=self.catalogue.words,
                                  known_names=[p.first_name for p in self.household()])

    def booking_for(self) -> list[Patient]:
        """The people of the booking in progress, the one being booked first."""
        if self._booking_for is None:
            stored = [people.from_slot(value, session=self.session, contact=self.contact)
                      for value in self.slot("booking_for") or []]
            self._booking_for = [p for p in stored if p is not None] or [
                people.owner_of(self.session, self.contact)]
        return self._booking_for

    def person(self) -> Patient:
        """Who is being booked now."""
        return self.booking_for()[0]

    def own_times(self) -> list[tuple[datetime, datetime]]:
        """When the person being booked or moved already has appointments (but the one being
        moved), and what was booked together with them: offers must not clash with these."""
        if self._own_times is None:
            moving = (self.slot("change_target") if self.slot("change_kind") == "reschedule"
                      else None)
            upcoming = self.adapter.upcoming_for_contact(contact=self.contact)
            owner = next((p.id for p in self.household() if p.relation == people.SELF),
                         people.SELF)

            def whose(patient_id: int | None) -> object:
                return owner if patient_id is None else patient_id  # keyed in: the owner's

            target = next((a for a in upcoming if a.id == moving), None)
            person = self.person()
            if target is not None:
                key = whose(target.patient_id)
            else:
                key = person.id if person.id is not None else (
                    owner if person.relation == people.SELF else object())
            together = [(datetime.fromisoformat(start), datetime.fromisoformat(end))
                        for start, end in self.slot("booked_together") or []]
            self._own_times = [(a.starts_at, a.ends_at) for a in upcoming
                               if a.id != moving and whose(a.patient_id) == key] + together
            if moving is not None and self.slot("change_other_day"):
                # "To a different day": the whole local day it is on now is out.
                self._own_times += [local_day(a.starts_at, self.zone)
                                    for a in upcoming if a.id == moving]
        return self._own_times

    def idempotency_key(self, *parts: object) -> str:
        """One key per patient message and request: a repeat of this message's action (a retry
        after a lost reply) finds the booking it made, but a second booking in the same
        conversation, even at the same time, is a new one."""
        latest = self.tracker.latest_message or {}
        message = (latest.get("metadata") or {}).get("message_id") or latest.get("message_id")
        said = "|".join(map(str, (self.sender_id, message, *parts)))
        return "chat-" + hashlib.sha256(said.encode()).hexdigest()

    def wish(self, text: str | None = None) -> Preference | None:
        return preference(self.text if text is None else text, now=self.now, zone=self.zone,
                          date_order=self.date_order)

    def stored_wish(self) -> Preference | None:
        """The days and times asked for earlier in this booking ("Thursday", "after 5")."""
        stored = self.slot("wish")
        return Preference.from_dict(stored) if isinstance(stored, dict) else None

    def offer_matches(self) -> list[int]:
        return matching_offers(self.text, [s.starts_at for s in self.offered], now=self.now,
                               zone=self.zone, date_order=self.date_order)

    def numbered_service(self) -> Service | None:
        match = re.fullmatch(r"\W*(\d{1,2})\W*", self.text)
        if match and 1 <= int(match[1]) <= len(self.services):
            return self.services[int(match[1]) - 1]
        return None

    def clinician_for(self, service: Service) -> tuple[Provider | None, str]:
        """The clinician asked for now or earlier in this booking, if they offer `service`;
        and a note when the one asked for does not."""
        named = find_provider(self.providers, self.text)
        if named is not None and named not in service.providers:
            others = ("our other clinicians" if len(service.providers) != 1
                      else service.providers[0].name)
            return None, f"{named.name} doesn't do {service.name}, so these are with {others}."
        wanted = named.slug if named else self.slot("provider")
        return next((p for p in service.providers if p.slug == wanted), None), ""

    def wants_to_book(self) -> bool:
        return cues.wants_to_book(self.text)

    def done_for_now(self) -> bool:
        return cues.done_for_now(self.text)

    def understands(self) -> bool:
        """Whether the message answers what the bot is waiting for, whatever its intent."""
        if self.awaiting in CHANGE_STEPS:
            return appointments.understands(self)
        if self.awaiting == "pick":
            return bool(self.offer_matches() or self.wish() or self.named_service()
                        or cues.asks_for_later(self.text) or cues.asks_for_earlier(self.text)
                        or find_provider(self.providers, self.text))
        if self.awaiting == "details":
            return self.detail_answer() is not None
        if self.awaiting == "who":
            return family.understands(self)
        if self.awaiting == "service":
            return bool(self.named_service(forgiving=True) or self.numbered_service())
        if self.awaiting == OFFERED_TO_BOOK:
            return appointments.yes_or_no(self.text) is not None
        return bool(self.named_service() or answer_is_yes(self.text)
                    or (self.wish() and cues.mentions_booking(self.text)))

    def side_answers(self) -> None:
        """Answer a clear question asked alongside a booking step ("yes, how much is it?")."""
        for topic in cues.side_questions(self.text):
            if not self.replies:
                self.say(answer_topic(topic, clinic=self.clinic, now=self.now,
                                      service=self.named_service() or self.current_service()))

    def resume_prompt(self) -> str | None:
        """The pending question, asked again after an interruption; None when nothing pends."""
        if self.awaiting == "who":
            return people.who_question(family.options(self))
        if self.awaiting == "service":
            return service_question(self.services, opening="Back to your booking:")
        if self.awaiting == "pick" and self.offered:
            return pick_reminder(self.offered, clinic=self.clinic)
        if self.awaiting == "details" and self.chosen:
            return (f"To finish booking {describe(self.chosen.starts_at, clinic=self.clinic)}: "
                    + self.detail_question(self.missing_details()))
        if self.awaiting in CHANGE_STEPS:
            return appointments.resume_prompt(self)
        if self.awaiting == OFFERED_TO_BOOK:
            return "Would you like to book an appointment? Reply YES and I'll find some times."
        return None

    # -- the turn --------------------------------------------------------------------------

    def handle(self) -> None:
        if self.awaiting in CHANGE_STEPS:
            appointments.continue_change(self)
            return
        self.side_answers()
        switched = self.named_service()
        current = self.current_service()
        if (self.awaiting in ("pick", "details") and switched is not None
                and current is not None and switched.id != current.id
                and self.slot("change_kind") != "reschedule"):
            self.declined, self.offer_rounds = [], 0
            self.offer(switched, wish=self.wish() or self.stored_wish(),
                       lead_in=f"Sure, {switched.name} instead.")
            return
        if (self.awaiting in ("pick", "details") and self.slot("change_kind") != "reschedule"
                and family.switch(self)):
            self.for_someone_else()
        elif self.awaiting == "details" and self.chosen is not None:
            self.take_details()
        elif self.awaiting == "pick" and self.offered:
            self.pick()
        elif self.awaiting == "service":
            self.take_service()
        elif self.awaiting == "who":
            family.take_answer(self)
        elif self.awaiting == OFFERED_TO_BOOK:
            self.answer_offer_to_book()
        elif self.awaiting == JUST_BOOKED and not (switched or self.wish()
                                                   or self.intent == "book"
                                                   or family.asks_for_someone(self)):
            self.acknowledge_booking()
        elif self.intent == "deny" or self.done_for_now():
            self.close()
        elif (self.intent == "inform" and not answer_is_yes(self.text)
              and not (switched or self.wish() or self.named_service(forgiving=True)
                       or family.asks_for_someone(self))):
            self.missed(CLARIFY)  # a "detail" with nothing in progress is not a request
        else:
            # "And one for my dad too" right after a booking: the same treatment.
            same_again = (self.current_service() if self.awaiting == JUST_BOOKED
                          and family.asks_for_someone(self) else None)
            self.start(service=switched or self.named_service(forgiving=True) or same_again)

    def close(self) -> None:
        self.end_booking()
        self.say(CLOSE_POLITELY)

    def acknowledge_booking(self) -> None:
        if self.intent == "deny":
            self.close()
            return
        self.set(awaiting=None)
        if family.rename(self, self.slot("appointment_id")):
            return
        self.say("Great, see you then! Reply here any time if you need anything.")

    def answer_offer_to_book(self) -> None:
        answer = appointments.yes_or_no(self.text)
        if answer is False or self.done_for_now():
            self.close()
        elif answer is True or self.intent in ("affirm", "book") or self.named_service():
            self.start(service=self.named_service() or self.current_service())
        else:
            self.missed("Would you like to book an appointment? Reply YES or NO.")

    def start(self, *, service: Service | None) -> None:
        """A booking begins: ask who it is for and the treatment only when they are not
        obvious, then offer times."""
        carried = self.slot("booking_for") if self.awaiting == OFFERED_TO_BOOK else None
        self.end_booking(service=None, misses=0)
        if service is None and len(self.services) == 1:
            service = self.services[0]
        wish = self.wish()
        if not family.settle_who(self, carried=carried):
            self.set(service=service.slug if service else None,
                     wish=wish.to_dict() if wish else None)
            return
        self.continue_booking(service=service, wish=wish)

    def continue_booking(self, *, service: Service | None = None,
                         wish: Preference | None = None) -> None:
        """Who it is for is settled: ask the treatment if still unknown, else offer times."""
        service = service or next((s for s in self.services if s.slug == self.slot("service")),
                                  None)
        wish = wish or self.stored_wish()
        if service is None:
            self.set(awaiting="service", wish=wish.to_dict() if wish else None)
            unoffered = self.unoffered_treatment()
            self.say(service_question(self.services) if unoffered is None else " ".join([
                not_offered(unoffered, clinic=self.clinic),
                service_question(self.services, opening="Can I book you in for something else?"),
                "Or say \"talk to someone\"."]))
            return
        self.offer(service, wish=wish, lead_in=family.whose_times(self))

    def take_service(self) -> None:
        service = self.named_service(forgiving=True) or self.numbered_service()
        if service is not None:
            self.offer(service, wish=self.wish() or self.stored_wish(),
                       lead_in=family.whose_times(self))
        elif self.intent == "deny" or self.done_for_now():
            self.close()
        elif self.wish():
            self.set(wish=self.wish().to_dict())
            self.say(service_question(self.services, opening="Got it."))
        else:
            names = ", ".join(s.name for s in self.services)
            self.missed("Sorry, I didn't catch which treatment. We offer: "
                        f"{names}. Reply with the number or the name, or say \"talk to "
                        "someone\".")

    def for_someone_else(self) -> None:
        """The booking in progress is now for someone else: their times, or their details."""
        service = self.current_service() or self._service(self.offered[0].service)
        missing = self.missing_details()
        if self.awaiting == "details" and self.chosen is not None and missing:
            self.say(f"Sure, for {people.label(self.person())}. "
                     + self.detail_question(missing))
        elif self.awaiting == "details" and self.chosen is not None:
            self.book(self.chosen, self._service(self.chosen.service))
        else:
            self.offer(service, wish=self.stored_wish(),
                       lead_in=f"Sure, for {people.label(self.person())}.")

    def offer(self, service: Service, *, wish: Preference | None = None, lead_in: str = "",
              avoid: list[Slot] | None = None, after: datetime | None = None,
              near: datetime | None = None) -> None:
        """Offer two or three real free times, within the wish if there is one, or `after`
        a time ("anything later?"), or `near` one (the next person of a family booking)."""
        avoid = self.declined if avoid is None else avoid
        provider, note = self.clinician_for(service)
        lead_in = " ".join(filter(None, [lead_in, note]))
        by = provider.slug if provider else None
        if self.offer_rounds >= MAX_OFFER_ROUNDS:
            # Several sets turned down: a person finds a time faster than more lists.
            self.end_booking()
            self.handover()
            return
        try:
            if near is not None:
                slots = nearest_to(self.adapter, clinic=self.clinic, service=service,
                                   now=self.now, target=near, avoid=avoid, provider=by,
                                   busy=self.own_times())
            else:
                slots = propose(self.adapter, clinic=self.clinic, service=service,
                                now=max(self.now, after or self.now), wish=wish, avoid=avoid,
                                provider=by, busy=self.own_times())
            if not slots and wish is not None:
                slots = nearest_to_wish(self.adapter, clinic=self.clinic, service=service,
                                        now=self.now, wish=wish, avoid=avoid, provider=by,
                                        busy=self.own_times())
                soonest = not slots  # e.g. a date beyond how far ahead the clinic books
                if soonest:
                    slots = propose(self.adapter, clinic=self.clinic, service=service,
                                    now=self.now, avoid=avoid, provider=by,
                                    busy=self.own_times())
                lead_in = " ".join(filter(None, [
                    lead_in, f"Sorry, nothing is free {describe_wish(wish, clinic=self.clinic)}.",
                    "The soonest times I have:" if soonest else "These are the nearest times."]))
        except CalendarUnavailable:
            self.say(CALENDAR_DOWN)
            return
        if not slots:
            self.end_booking()
            self.say(f"Sorry, there's nothing free for {service.name} in the next few weeks. "
                     "I've asked the team to text you to find a time.")
            self.hand_over = True
            return
        self.say("\n".join(filter(None, [lead_in, offer_text(
            slots, clinic=self.clinic, service=service, provider=provider)])))
        self.offered = slots
        self.set(service=service.slug, awaiting="pick", provider=by,
                 wish=wish.to_dict() if wish is not None else None,
                 offered_slots=[s.to_dict() for s in slots],
                 declined_slots=[s.to_dict() for s in avoid],
                 offer_rounds=self.offer_rounds + 1, chosen_slot=None)
        self.funnel.append(("offered", {"service": service.slug, "count": len(slots)}))

    def pick(self) -> None:
        service = self.current_service() or self._service(self.offered[0].service)
        matches = self.offer_matches()
        if len(matches) == 1 or (not matches and self.intent == "affirm"
                                 and len(self.offered) == 1):
            self.chosen_slot(self.offered[matches[0] if matches else 0], service)
            return
        if len(matches) > 1:
            narrowed = [self.offered[i] for i in matches]
            self.offered = narrowed
            self.set(offered_slots=[s.to_dict() for s in narrowed])
            self.say(pick_reminder(narrowed, clinic=self.clinic).replace(
                "Would one of these times suit you?", "Which of these?"))
            return
        named = find_provider(self.providers, self.text)
        if named is not None and named.slug != self.slot("provider"):
            self.offer(service, wish=self.wish() or self.stored_wish(), avoid=self.declined,
                       lead_in="Sure." if named in service.providers else "")
            return
        declining = self.intent == "deny" or declines(self.text)
        if declining:  # never offered again in this booking
            self.declined = self.declined + [s for s in self.offered if s not in self.declined]
        wish = self.wish()
        if wish is not None:
            self.offer(service, wish=wish, lead_in="No problem." if declining else "")
        elif self.done_for_now():  # before "later": "maybe later" closes
            self.close()
        elif cues.asks_for_later(self.text):
            self.offer(service, after=max(s.starts_at for s in self.offered),
                       avoid=self.declined + self.offered,
                       lead_in="Sure, here are some later times.")
        elif cues.asks_for_earlier(self.text):
            self.earlier_than_offered(service)
        elif declining:  # other times, still on the day or at the time asked for earlier
            self.offer(service, wish=self.stored_wish(),
                       lead_in="No problem, here are some other times (or reply "
                               "\"no thanks\" to leave it for now).")
        else:
            self.missed(f"Which time suits you? Reply 1 to {len(self.offered)}, or tell me "
                        "another day or time (like \"Thursday afternoon\" or \"after 5\").")

    def earlier_than_offered(self, service: Service) -> None:
        try:
            sooner = [s for s in propose(self.adapter, clinic=self.clinic, service=service,
                                         now=self.now, avoid=self.declined + self.offered,
                                         provider=self.slot("provider"),
                                         busy=self.own_times())
                      if s.starts_at < min(o.starts_at for o in self.offered)]
        except CalendarUnavailable:
            self.say(CALENDAR_DOWN)
            return
        if sooner:
            self.offer(service, wish=None, lead_in="Sure, here are some earlier times.",
                       avoid=self.declined + self.offered)
        else:
            self.say("Sorry, those are the earliest times I have.\n"
                     + pick_reminder(self.offered, clinic=self.clinic))

    def chosen_slot(self, slot: Slot, service: Service) -> None:
        if slot.starts_at <= self.now:
            self.offer(service, avoid=[slot], lead_in="Sorry, that time has passed now.")
            return
        try:
            free = still_free(self.adapter, slot)
        except CalendarUnavailable:
            self.say(CALENDAR_DOWN)
            return
        if not free:  # taken since it was offered: say so now, not after the questions
            self.slot_taken(slot, service)
            return
        if self.slot("change_kind") == "reschedule" and self.slot("change_target"):
            appointments.confirm_new_time(self, slot)
            return
        missing = self.missing_details()
        if missing:
            self.chosen = slot
            self.set(awaiting="details", chosen_slot=slot.to_dict())
            self.say(f"Great, {describe(slot.starts_at, clinic=self.clinic)}. "
                     + self.detail_question(missing))
            return
        self.book(slot, service)

    def missing_details(self) -> list[str]:
        return patient_details.missing_fields(self.clinic, self.person(), self.contact)

    def detail_answer(self) -> dict[str, str] | None:
        return patient_details.read_answer(self.missing_details(), self.text,
                                           date_order=self.date_order,
                                           today=self.now.astimezone(self.zone).date())

    def detail_question(self, missing: list[str]) -> str:
        return patient_details.question(missing, date_order=self.date_order,
                                        whose=people.possessive(self.person()))

    def take_details(self) -> None:
        details = self.detail_answer()
        if details is None:
            # "Actually the second one" / "Friday instead?" change the time; while a date of
            # birth or an email is asked for, a date is the answer, not a new wish.
            asking_name = self.missing_details()[:1] in (["first_name"], ["last_name"])
            matches = self.offer_matches() if asking_name else []
            wish = self.wish() if asking_name else None
            if len(matches) == 1:  # "actually the second one"
                self.chosen_slot(self.offered[matches[0]], self._service(self.chosen.service))
            elif wish is not None:
                self.offer(self._service(self.chosen.service), wish=wish, lead_in="Sure.")
            elif self.intent == "deny" or self.done_for_now():
                self.close()
            else:
                self.missed("Sorry, I didn't catch that. "
                            + self.detail_question(self.missing_details()))
            return
        self.note_details(details)  # kept even if the time is taken meanwhile
        still_missing = self.missing_details()
        if still_missing:
            self.say("Thanks. " + self.detail_question(still_missing))
        else:
            self.book(self.chosen, self._service(self.chosen.service))

    def note_details(self, details: dict[str, Any]) -> None:
        """The person's name and date of birth, the phone owner's email; the owner's own name
        is the contact's too (staff see it on the thread)."""
        person = self.person()
        for field, value in details.items():
            if field in patient_details.CONTACT_FIELDS:
                setattr(self.contact, field, value)
                continue
            setattr(person, field, value)
            if person.relation == people.SELF:
                setattr(self.contact, field, value)
        if person.id is None:  # not stored until booked: the slot remembers it meanwhile
            current = self.booking_for()
            self.set(booking_for=[people.to_slot(p) for p in current])
            self._booking_for = current

    def book(self, slot: Slot, service: Service) -> None:
        patient = self.person()
        try:
            appointment = self.adapter.book(
                slot=slot, patient=patient, service=service,
                idempotency_key=self.idempotency_key("book", service.slug, slot.starts_at),
            )
        except SlotUnavailable:
            self.slot_taken(slot, service)
            return
        except CalendarUnavailable:
            self.say(CALENDAR_DOWN)
            return
        self.say(confirmation_text(appointment, clinic=self.clinic, service=service))
        self.funnel.append(("booked", {"appointment_id": appointment.id,
                                       "service": service.slug}))
        jobs.cancel_pending(self.session, contact_ids=[self.contact.id], now=self.now,
                            reason="the patient booked", kinds=jobs.FOLLOW_UPS_AND_OFFERS)
        rest = (self.slot("booking_for") or [])[1:]
        together = self.slot("booked_together") or []
        self.end_booking(service=None, awaiting=JUST_BOOKED, appointment_id=appointment.id)
        if rest:
            family.next_person(self, appointment, service, rest, together)

    def slot_taken(self, slot: Slot, service: Service) -> None:
        """Someone else took the time between our offer and the patient's pick."""
        declined = self.declined + [slot]
        try:
            alternatives = nearest_to(self.adapter, clinic=self.clinic, service=service,
                                      now=self.now, target=slot.starts_at, avoid=declined,
                                      provider=self.slot("provider"), busy=self.own_times())
        except CalendarUnavailable:
            self.say(CALENDAR_DOWN)
            return
        if not alternatives:
            self.end_booking()
            self.say(f"Sorry, {describe(slot.starts_at, clinic=self.clinic)} was just taken "
                     "and nothing else is free nearby. I've asked the team to text you.")
            self.hand_over = True
            return
        self.offered = alternatives
        self.set(service=service.slug, awaiting="pick", chosen_slot=None,
                 offered_slots=[s.to_dict() for s in alternatives],
                 declined_slots=[s.to_dict() for s in declined])
        self.say(f"Sorry, {describe(slot.starts_at, clinic=self.clinic)} was just taken by "
                 "someone else. The nearest times I have:\n"
                 + offer_text(alternatives, clinic=self.clinic, service=service).split("\n", 1)[1])

    def _service(self, slug: str) -> Service:
        return next(s for s in self.services if s.slug == slug)


def conversation_turn(tracker: Tracker, dispatcher: CollectingDispatcher, handle) -> list:
    """Run `handle(conversation)` in a transaction on the tracker's thread; return its events."""
    with thread_session(tracker.sender_id) as (session, thread):
        conversation = Conversation(tracker, session=session, thread=thread, now=utcnow())
        handle(conversation)
        return conversation.finish(dispatcher)


class ActionBookingTurn(Action):
    """Yes, no, a booking request, or a detail: the next step of whatever is in progress."""

    def name(self) -> str:
        return "action_booking_turn"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        return conversation_turn(tracker, dispatcher, Conversation.handle)


class ActionChangeAppointment(Action):
    """'I need to reschedule' / 'cancel my appointment'. The change flow is
    `actions.appointments`; this is its entry point, beside the booking's."""

    def name(self) -> str:
        return "action_change_appointment"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        kind = "cancel" if (tracker.latest_message or {}).get("intent", {}).get(
            "name") == "cancel" else "reschedule"

        def handle(conversation: Conversation) -> None:
            # "Yes, cancel it" to "cancel your check-up?" is a confirmation, not a new request.
            if conversation.awaiting in CHANGE_STEPS and conversation.understands():
                appointments.continue_change(conversation)
            else:
                appointments.start_change(conversation, kind)

        return conversation_turn(tracker, dispatcher, handle)


__all__ = ["ActionBookingTurn", "ActionChangeAppointment", "Conversation", "conversation_turn"]
