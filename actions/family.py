"""Who a booking is for: the phone's owner, someone they name, or several people at once.

The people of the booking in progress are in the `booking_for` slot, the one being booked
first. A booking that names nobody is for the owner, unless someone else is on file for this
phone: then the bot asks (`awaiting` "who"). "For me and my son" books the owner, then offers
the son the times nearest theirs. The reading and the wording live in booking.dialogue.family.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from booking.dialogue import family
from booking.dialogue.patient_details import parse_name
from booking.models import Appointment, Patient, Service

if TYPE_CHECKING:  # the conversation calls this module; this module only reads it
    from actions.booking import Conversation

_ME = re.compile(r"^\W*(?:it'?s\s+)?(?:for\s+)?(?:me|myself|mine|i am|i'?m)\b", re.IGNORECASE)
_BOTH = re.compile(r"^\W*(?:both|all|all of (?:us|them)|everyone)\b", re.IGNORECASE)
_SOMEONE_ELSE = re.compile(r"\b(?:someone|somebody|sb) else\b|\banother (?:person|one)\b",
                           re.IGNORECASE)
_NAME_GIVEN = re.compile(r"\bname(?:\s+is|'s)\b", re.IGNORECASE)
ASK_WHO_ELSE = ("Who is it for? Tell me their name, or who they are to you (like \"my son "
                "Jack\").")


def resolve(conversation: Conversation, people: list[family.Person]
            ) -> tuple[list[Patient], list[Patient]]:
    """(who the people are, the choices left when one of them is ambiguous, else [])."""
    household = conversation.household()
    chosen: list[Patient] = []
    for person in people:
        found = family.candidates(person, household)
        if len(found) > 1:
            return chosen, found
        if not found:
            chosen.append(family.new_patient(conversation.contact, person))
            continue
        patient = found[0]
        if person.first_name and not patient.first_name:  # "my son Jack": now we know
            patient.first_name, patient.last_name = person.first_name, person.last_name
        chosen.append(patient)
    return chosen, []


def choose_for(conversation: Conversation, patients: list[Patient]) -> None:
    conversation.set(booking_for=[family.to_slot(p) for p in patients], who_options=None)


def settle_who(conversation: Conversation, *, carried: list | None = None) -> bool:
    """At the start of a booking: who it is for. False when the bot asked instead."""
    people = conversation.people_named()
    if people:
        chosen, ambiguous = resolve(conversation, people)
        if ambiguous:
            ask(conversation, ambiguous)
            return False
    elif carried:  # "book another time?" after a cancellation: for the same person
        chosen = [p for p in (family.from_slot(v, session=conversation.session,
                                               contact=conversation.contact) for v in carried)
                  if p is not None]
    elif family.needs_asking(conversation.household()):
        ask(conversation, everyone(conversation))
        return False
    else:
        chosen = []
    choose_for(conversation, chosen or [family.owner_of(conversation.session,
                                                        conversation.contact)])
    return True


def everyone(conversation: Conversation) -> list[Patient]:
    """The people on file, with the owner first even when they never booked for themselves."""
    household = conversation.household()
    if any(p.relation == family.SELF for p in household):
        return household
    return [family.owner_of(conversation.session, conversation.contact), *household]


def ask(conversation: Conversation, options: list[Patient]) -> None:
    conversation.set(awaiting="who", who_options=[family.to_slot(p) for p in options])
    conversation.say(family.who_question(options))


def options(conversation: Conversation) -> list[Patient]:
    return [p for p in (family.from_slot(v, session=conversation.session,
                                         contact=conversation.contact)
                        for v in conversation.slot("who_options") or []) if p is not None]


def answer(conversation: Conversation) -> list[Patient] | None:
    """The people a reply to "who is it for?" picks, or None when it picks nobody."""
    listed = options(conversation)
    picked = family.choose_listed(conversation.text, listed)
    if picked is not None:
        return [picked]
    if _BOTH.search(conversation.text) and len(listed) == 2:
        return listed
    people = conversation.people_named()
    if not people and _ME.search(conversation.text):
        people = [family.Person(relation=family.SELF)]
    if not people:
        name = parse_name(conversation.text)
        if name is not None:
            people = [family.Person(first_name=name[0], last_name=name[1])]
    if not people:
        return None
    chosen, ambiguous = resolve(conversation, people)
    return None if ambiguous else chosen


def understands(conversation: Conversation) -> bool:
    return answer(conversation) is not None or bool(_SOMEONE_ELSE.search(conversation.text))


def take_answer(conversation: Conversation) -> None:
    """The reply to "who is it for?": then the treatment, or the times."""
    chosen = answer(conversation)
    if chosen is None:
        if _SOMEONE_ELSE.search(conversation.text):
            conversation.say(ASK_WHO_ELSE)
        elif conversation.intent == "deny" or conversation.done_for_now():
            conversation.close()
        else:
            conversation.missed("Sorry, I didn't catch who. " + family.who_question(
                options(conversation)))
        return
    choose_for(conversation, chosen)
    conversation.continue_booking()


def switch(conversation: Conversation) -> bool:
    """"Actually it's for my son" while times are offered or details asked: the booking is
    now for them. False when the message names nobody new."""
    people = conversation.people_named()
    if not people:
        return False
    chosen, ambiguous = resolve(conversation, people)
    if ambiguous or not chosen:
        return False
    current = conversation.booking_for()
    if [family.to_slot(p) for p in chosen] == [family.to_slot(p) for p in current] or (
            len(chosen) == 1 and any(_same(chosen[0], p) for p in current[:1])):
        return False
    choose_for(conversation, chosen)
    return True


def _same(one: Patient, other: Patient) -> bool:
    if one.id is not None or other.id is not None:
        return one.id == other.id
    return (one.relation, (one.first_name or "").lower()) == (
        other.relation, (other.first_name or "").lower())


def whose_times(conversation: Conversation) -> str:
    """Who the offered times are for, unless just the phone's owner: "For Emma:"."""
    labels = [family.label(p) for p in conversation.booking_for()]
    if labels == ["you"]:
        return ""
    if len(labels) == 1:
        return f"For {labels[0]}:"
    return f"Let's find times for {labels[0]} first, then {' and '.join(labels[1:])}."


def next_person(conversation: Conversation, booked: Appointment, service: Service,
                rest: list[dict], together: list[list[str]]) -> None:
    """After one person's booking, offer the next the times nearest it (back to back where
    free); never overlapping what was booked together, since one grown-up brings them."""
    conversation.set(booking_for=rest, booked_together=[
        *together, [booked.starts_at.isoformat(), booked.ends_at.isoformat()]])
    upcoming = conversation.person()
    conversation.offer(service, near=booked.ends_at, lead_in=(
        f"Now for {family.label(upcoming)}. The times nearest "
        f"{'yours' if family.label(booked.patient) == 'you' else family.label(booked.patient)}:"))


def asks_for_someone(conversation: Conversation) -> bool:
    """"And one for my son too": a booking request that names whom, not their name."""
    return bool(conversation.people_named()) and not _NAME_GIVEN.search(conversation.text)


def named_patients(conversation: Conversation) -> list[Patient] | None:
    """The people on file a change request names ("cancel Emma's appointment"): None when it
    names nobody, [] when it names someone this phone has not booked for."""
    people = conversation.people_named()
    if not people:
        return None
    household = conversation.household()
    return [p for person in people for p in family.candidates(person, household)]


def label_of(people: list[family.Person]) -> str:
    person = people[0]
    if person.first_name:
        return person.first_name
    return "you" if person.is_self else f"your {person.relation}"


def rename(conversation: Conversation, appointment_id: int | None) -> bool:
    """"Emma's name is Emma Taylor" after a booking: the person's name is corrected."""
    if not _NAME_GIVEN.search(conversation.text):
        return False
    name = parse_name(conversation.text)
    named = named_patients(conversation)
    booked = (conversation.session.get(Appointment, appointment_id) if appointment_id
              else None)
    target = named[0] if named else booked.patient if booked is not None else None
    if name is None or target is None:
        return False
    target.first_name, target.last_name = name[0], name[1] or target.last_name
    if target.relation == family.SELF:
        conversation.contact.first_name = target.first_name
        conversation.contact.last_name = target.last_name
    full = " ".join(filter(None, [target.first_name, target.last_name]))
    conversation.say(f"Thanks, I've noted the name: {full}.")
    return True
