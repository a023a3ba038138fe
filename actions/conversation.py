"""Actions around the booking: the missed-call start, FAQ answers, small talk, opt-out, and
not understanding. Each one knows what the booking is waiting for, so an interruption is
answered and the booking carries on where it was."""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.booking import BOOKING_SLOTS, CLARIFY, Conversation, conversation_turn
from actions.runtime import outbox, thread_session
from booking.dialogue import cues
from booking.dialogue.appointment_booking import not_offered_text
from actions.steps import OFFERED_TO_BOOK, REMINDED
from booking.dialogue.faq import answer, topics_in
from booking.messaging import consent
from booking.models import Appointment, JobKind, utcnow
from booking.outreach import jobs

GREETING = "Hi! Reply YES to book an appointment, or tell me what you need."
YOU_ARE_WELCOME = "You're welcome! Reply here any time if you need us."
GOODBYE = "Thanks for getting in touch. Reply here any time if you need us."
CLARIFY_MID_STEP = "Sorry, I didn't quite get that."
TALK_TO_SOMEONE = "Or say \"talk to someone\" and the team will reply."
OUT_OF_SCOPE = ("I can help with appointments and questions about the clinic. For anything "
                "else, say \"talk to someone\" and the team will get back to you.")


def with_resume(conversation: Conversation, text: str) -> None:
    """Say `text`, then ask the pending question again so the booking carries on."""
    conversation.say(text)
    prompt = conversation.resume_prompt()
    if prompt:
        conversation.say(prompt)


class ActionStartFromMissedCall(Action):
    """A new missed call (its text-back already sent by the gateway) starts the booking afresh."""

    def name(self) -> str:
        return "action_start_from_missed_call"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        return _fresh_start()


def _fresh_start(**slots: Any) -> list[EventType]:
    return [SlotSet(name, None) for name in (*BOOKING_SLOTS, "service")
            if name not in slots] + [SlotSet("offer_rounds", 0), SlotSet("misses", 0)] + [
        SlotSet(name, value) for name, value in slots.items()]


class ActionStartFromReminder(Action):
    """The gateway is sending a reminder: the patient's next words answer it (confirm, move,
    cancel). Like the missed-call start, it only sets the scene: the gateway stored the reminder
    before telling the dialogue, and sends it after."""

    def name(self) -> str:
        return "action_start_from_reminder"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        with thread_session(tracker.sender_id) as (session, thread):
            reminded = jobs.reminded_together(session, contact_id=thread.contact_id)
        if not reminded:
            return []
        if len(reminded) == 1:
            return _fresh_start(awaiting=REMINDED, change_kind="reminder",
                                change_target=reminded[0])
        return _fresh_start(awaiting=REMINDED, change_kind="reminder",
                            change_candidates=reminded)


class ActionStartFromRebookingOffer(Action):
    """The gateway offered a new time after a no-show or a cancellation: "yes" books the same
    treatment."""

    def name(self) -> str:
        return "action_start_from_rebooking_offer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        with thread_session(tracker.sender_id) as (session, thread):
            job = jobs.latest_sent(session, contact_id=thread.contact_id,
                                   kind=JobKind.rebooking_offer)
            appointment = session.get(Appointment, job.appointment_id) if job else None
            service = appointment.service.slug if appointment is not None else None
        return _fresh_start(awaiting=OFFERED_TO_BOOK, service=service)


def answer_questions(conversation: Conversation) -> None:
    """Answer every question in the message from clinic config, then carry on the booking.

    With nothing in progress, a message that also asks to book, or names a treatment ("are you
    open Saturdays? it's for a clean"), gets the answer and then the offer of times.
    """
    mention = next((str(e.get("value")) for e in conversation.entities
                    if e.get("entity") == "service"), None)
    reply = answer(conversation.intent, clinic=conversation.clinic, text=conversation.text,
                   service=mention, current_service=conversation.current_service(),
                   now=conversation.now)
    if conversation.awaiting in (None, "booked") and (
            conversation.wants_to_book() or conversation.named_service(forgiving=True)):
        conversation.say(reply)
        conversation.start(service=conversation.named_service(forgiving=True))
        return
    with_resume(conversation, reply)


class ActionAnswerFaq(Action):
    """Answers come from the clinic's configuration, so a clinic changes them without retraining."""

    def name(self) -> str:
        return "action_answer_faq"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        return conversation_turn(tracker, dispatcher, answer_questions)


class ActionSmallTalk(Action):
    """Hello, thanks, goodbye; "hi, it's Sam" still answers "what name?"."""

    def name(self) -> str:
        return "action_small_talk"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        def handle(conversation: Conversation) -> None:
            # First: "nothing sooner?" was once read as goodbye; it answers the pending question.
            if conversation.awaiting and conversation.understands():
                conversation.handle()
            elif conversation.intent == "goodbye":
                conversation.end_booking()
                conversation.say(GOODBYE)
            elif conversation.intent == "greet":
                with_resume(conversation, GREETING if conversation.resume_prompt() is None
                            else "Hi!")
            else:
                prompt = conversation.resume_prompt()
                conversation.say("You're welcome!" if prompt else YOU_ARE_WELCOME)
                if prompt:
                    conversation.say(prompt)
                if conversation.awaiting == "booked":
                    conversation.set(awaiting=None)

        return conversation_turn(tracker, dispatcher, handle)


# Words that make an opt-out unmistakable. Without them, a guess of `opt_out` is not enough to
# stop all texts: "Pam", asked for a name, was once read as opt_out at 0.51.
_OPT_OUT_WORDS = re.compile(
    r"\b(?:stop|unsubscribe|opt(?:ing)?[\s-]?out|(?:do not|don'?t|never) (?:text|message|"
    r"contact|sms)|no more (?:texts?|messages?)|remove (?:me|my (?:number|details))|"
    r"leave me alone|take me off|stop (?:texting|messaging))\b", re.IGNORECASE)
SURE_OPT_OUT = 0.8


class ActionOptOut(Action):
    """'Stop texting me' in words: the same opt-out as the STOP keyword.

    Stopping every text is hard to undo for a patient mid-booking, so a message that answers
    the pending question and has no opt-out words is taken as that answer instead.
    """

    def name(self) -> str:
        return "action_opt_out"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        confidence = float(((tracker.latest_message or {}).get("intent") or {})
                           .get("confidence") or 0)
        with thread_session(tracker.sender_id) as (session, thread):
            conversation = Conversation(tracker, session=session, thread=thread, now=utcnow())
            not_a_patient = cues.wrong_number(conversation.text)
            if not (not_a_patient or _OPT_OUT_WORDS.search(conversation.text)):
                if conversation.understands():
                    conversation.handle()
                    return conversation.finish(dispatcher)
                if confidence < SURE_OPT_OUT:
                    conversation.missed(CLARIFY)
                    return conversation.finish(dispatcher)
            confirmation = consent.opt_out(session, clinic=thread.clinic, contact=thread.contact,
                                           thread=thread, wrong_number=not_a_patient)
        await outbox().deliver([m.id for m in confirmation])
        return [SlotSet(name, None) for name in BOOKING_SLOTS]


class ActionClarify(Action):
    """Low confidence or off-topic. A message that answers the pending question is used as
    such; otherwise the options are spelled out once, and a second miss goes to staff."""

    def name(self) -> str:
        return "action_clarify"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        def handle(conversation: Conversation) -> None:
            if conversation.understands():
                conversation.handle()
            elif topics_in(conversation.text):  # a question the classifier was unsure of
                answer_questions(conversation)
            elif conversation.unoffered_treatment():
                with_resume(conversation, not_offered_text(
                    conversation.unoffered_treatment(), clinic=conversation.clinic,
                    services=conversation.services))
                conversation.missed_this_turn = True  # answered, neither progress nor a miss
            elif conversation.intent == "out_of_scope":
                with_resume(conversation, OUT_OF_SCOPE)
                conversation.missed_this_turn = True  # neither progress nor a miss
            else:
                prompt = conversation.resume_prompt()
                if prompt:
                    conversation.missed(f"{CLARIFY_MID_STEP} {prompt}\n{TALK_TO_SOMEONE}")
                else:
                    conversation.missed(CLARIFY)

        return conversation_turn(tracker, dispatcher, handle)
