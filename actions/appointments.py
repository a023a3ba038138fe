"""Moving and cancelling an existing appointment by text.

The upcoming appointments are found by the phone's number (the thread's contact), for everyone
it books for; "cancel Emma's appointment" keeps to that person's. With several, the bot asks
which, naming whose each one is. Nothing changes until the patient confirms, and the confirmation
question carries the clinic's late-cancellation terms when the appointment is within its notice
period. The wording and the policy live in booking.dialogue.appointment_changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actions import family
from actions.steps import BOOKING_STEPS, CALENDAR_DOWN, JUST_BOOKED, OFFERED_TO_BOOK, REMINDED
from booking.dialogue import cues
from booking.dialogue.appointment_booking import confirmation_text
from booking.dialogue.appointment_changes import (
    answer_is_yes,
    cancel_question,
    cancelled_text,
    choose_appointment,
    kept_text,
    nothing_to_change_text,
    reschedule_question,
    which_question,
    whose_summary,
)
from booking.dialogue.family import SELF, label
from booking.models import Appointment, Patient, Service, utcnow
from booking.scheduling.base import CalendarUnavailable, InvalidRequest, Slot, SlotUnavailable

if TYPE_CHECKING:  # the conversation calls this module; this module only reads it
    from actions.booking import Conversation

yes_or_no = answer_is_yes


def treatment(conversation: Conversation, appointment: Appointment) -> Service:
    """The appointment's service as the clinic's catalogue has it (with its clinicians)."""
    return next(s for s in conversation.services if s.id == appointment.service_id)


def upcoming(conversation: Conversation) -> list[Appointment]:
    return conversation.adapter.upcoming_for_contact(contact=conversation.contact)


def _target(conversation: Conversation) -> Appointment | None:
    wanted = conversation.slot("change_target")
    return next((a for a in upcoming(conversation) if a.id == wanted), None)


def _candidates(conversation: Conversation) -> list[Appointment]:
    wanted = conversation.slot("change_candidates") or []
    return [a for a in upcoming(conversation) if a.id in wanted]


def _theirs(appointments: list[Appointment], patients: list[Patient]) -> list[Appointment]:
    """The appointments of these people (one keyed in without a person is the owner's)."""
    ids = {p.id for p in patients}
    owner = any(p.relation == SELF for p in patients)
    return [a for a in appointments
            if a.patient_id in ids or (a.patient_id is None and owner)]


def _named_pick(conversation: Conversation, appointments: list[Appointment]
                ) -> list[Appointment]:
    """The appointments a reply narrows to by naming whose ("Emma's", "the one for my son")."""
    named = family.named_patients(conversation)
    return appointments if not named else _theirs(appointments, named)


def _choose(conversation: Conversation, appointments: list[Appointment]) -> Appointment | None:
    pool = _named_pick(conversation, appointments)
    if len(pool) == 1:
        return pool[0]
    return choose_appointment(conversation.text, pool, clinic=conversation.clinic,
                              now=conversation.now, date_order=conversation.date_order)


def start_change(conversation: Conversation, kind: str) -> None:
    """'Cancel my appointment' / 'can I move it to Friday': find which, then confirm."""
    try:
        appointments = upcoming(conversation)
        reminded = _target(conversation) if conversation.awaiting == REMINDED else None
    except CalendarUnavailable:
        conversation.say(CALENDAR_DOWN)
        return
    if not appointments and conversation.awaiting in BOOKING_STEPS:
        if kind == "reschedule":  # "can we change it to Friday" about the times just offered
            conversation.handle()
        else:
            conversation.end_booking()
            conversation.say("No problem, I've stopped that booking. If you need us later, "
                             "just reply here.")
        return
    conversation.end_booking()
    named = family.named_patients(conversation)
    for_whom = None
    if named is not None:  # "cancel Emma's appointment": only hers
        appointments = _theirs(appointments, named)
        for_whom = label(named[0]) if named else family.label_of(conversation.people_named())
    if not appointments:
        conversation.set(awaiting=OFFERED_TO_BOOK)
        conversation.say(nothing_to_change_text(clinic=conversation.clinic, kind=kind,
                                                for_whom=for_whom))
        return
    if reminded is not None:  # "can I come later?" answering its reminder
        change(conversation, reminded, kind, wish_text=conversation.text)
        return
    chosen = appointments[0] if len(appointments) == 1 else _choose(conversation, appointments)
    if chosen is None:
        conversation.set(awaiting="which_appointment", change_kind=kind,
                         change_candidates=[a.id for a in appointments])
        conversation.say(which_question(appointments, clinic=conversation.clinic, kind=kind))
        return
    change(conversation, chosen, kind, wish_text=conversation.text)


def change(conversation: Conversation, appointment: Appointment, kind: str, *,
           wish_text: str | None = None) -> None:
    conversation.set(change_kind=kind, change_target=appointment.id, change_candidates=None)
    if kind == "cancel":
        conversation.set(awaiting="confirm_cancel")
        conversation.say(cancel_question(appointment, clinic=conversation.clinic,
                                         now=conversation.now))
        return
    wish = conversation.wish(wish_text) if wish_text else None
    conversation.set(change_other_day=bool(wish_text and cues.asks_for_another_day(wish_text)))
    moving = whose_summary(appointment, clinic=conversation.clinic)
    conversation.offer(treatment(conversation, appointment), wish=wish,
                       lead_in=f"Sure, let's move {moving}.")


def confirm_new_time(conversation: Conversation, slot: Slot) -> None:
    """A new time is picked for a move: say what will change, and wait for a yes."""
    appointment = _target(conversation)
    if appointment is None:
        _gone(conversation)
        return
    conversation.chosen = slot
    conversation.set(awaiting="confirm_reschedule", chosen_slot=slot.to_dict())
    conversation.say(reschedule_question(appointment, slot.starts_at,
                                         clinic=conversation.clinic, now=conversation.now))


def _gone(conversation: Conversation) -> None:
    conversation.end_booking()
    conversation.say("That appointment isn't booked any more (it may have been changed by the "
                     "clinic). Reply YES to book a new one, or say \"talk to someone\".")
    conversation.set(awaiting=OFFERED_TO_BOOK)


def understands(conversation: Conversation) -> bool:
    if conversation.awaiting == "which_appointment":
        return _choose(conversation, _candidates(conversation)) is not None
    if conversation.awaiting == "confirm_reschedule" and conversation.wish():
        return True
    if conversation.awaiting == REMINDED and (cues.cannot_come(conversation.text)
                                              or conversation.wish()):
        return True
    return yes_or_no(conversation.text) is not None


def resume_prompt(conversation: Conversation) -> str | None:
    kind = conversation.slot("change_kind") or "reschedule"
    if conversation.awaiting == "which_appointment":
        return which_question(_candidates(conversation), clinic=conversation.clinic, kind=kind)
    if conversation.awaiting == REMINDED:
        reminded = _reminded(conversation)
        return reminder_question(reminded, conversation) if reminded else None
    target = _target(conversation)
    if target is None:
        return None
    if conversation.awaiting == "confirm_cancel":
        return cancel_question(target, clinic=conversation.clinic, now=conversation.now)
    if conversation.awaiting == "confirm_reschedule" and conversation.chosen:
        return reschedule_question(target, conversation.chosen.starts_at,
                                   clinic=conversation.clinic, now=conversation.now)
    return None


def continue_change(conversation: Conversation) -> None:
    try:
        if conversation.awaiting == "which_appointment":
            _which(conversation)
        elif conversation.awaiting == "confirm_cancel":
            _confirm_cancel(conversation)
        elif conversation.awaiting == "confirm_reschedule":
            _confirm_reschedule(conversation)
        elif conversation.awaiting == REMINDED:
            _answer_reminder(conversation)
    except CalendarUnavailable:
        conversation.say(CALENDAR_DOWN)


def _reminded(conversation: Conversation) -> list[Appointment]:
    """The appointments the reminder was about: one, or a family's on the same day."""
    if conversation.slot("change_candidates"):
        return _candidates(conversation)
    target = _target(conversation)
    return [target] if target is not None else []


def reminder_question(appointments: list[Appointment], conversation: Conversation) -> str:
    visits = " and ".join(whose_summary(a, clinic=conversation.clinic) for a in appointments)
    return (f"Can you still make {visits}? Reply YES to confirm, or tell me if you need to "
            "move or cancel" + (" one" if len(appointments) > 1 else " it") + ".")


def _answer_reminder(conversation: Conversation) -> None:
    """The patient's answer to a reminder: yes confirms it; "can't make it" cancels it, unless
    they name another time ("can I do Friday?"), which moves it. For a family's reminder, a
    change says whose ("Emma can't make it") or is asked about."""
    appointments = _reminded(conversation)
    if not appointments:
        _gone(conversation)
        return
    text = conversation.text
    answer = yes_or_no(text)
    if conversation.wish() is not None or (conversation.intent == "reschedule"
                                           and answer is not True):
        kind = "reschedule"
    elif cues.cannot_come(text) or answer is False or conversation.intent == "cancel":
        kind = "cancel"
    elif answer is True:
        _confirm(conversation, appointments)
        return
    else:
        conversation.missed("Sorry, I didn't quite get that. "
                            + reminder_question(appointments, conversation))
        return
    chosen = appointments[0] if len(appointments) == 1 else _choose(conversation, appointments)
    if chosen is not None:
        change(conversation, chosen, kind, wish_text=text if kind == "reschedule" else None)
        return
    conversation.set(awaiting="which_appointment", change_kind=kind,
                     change_candidates=[a.id for a in appointments])
    conversation.say(which_question(appointments, clinic=conversation.clinic, kind=kind))


def _confirm(conversation: Conversation, appointments: list[Appointment]) -> None:
    """Yes to a reminder: each appointment it was about is confirmed, on the appointment."""
    for appointment in appointments:
        stored = conversation.session.get(Appointment, appointment.id)
        if stored is not None and stored.confirmed_at is None:
            stored.confirmed_at = utcnow()
            conversation.funnel.append(("confirmed", {"appointment_id": appointment.id}))
    conversation.end_booking(awaiting=JUST_BOOKED, appointment_id=appointments[0].id)
    visits = " and ".join(whose_summary(a, clinic=conversation.clinic) for a in appointments)
    conversation.say(f"Thanks, that's confirmed: {visits}. See you then!")


def _which(conversation: Conversation) -> None:
    candidates = _candidates(conversation)
    kind = conversation.slot("change_kind") or "reschedule"
    chosen = _choose(conversation, candidates)
    if chosen is not None:
        change(conversation, chosen, kind)
    elif yes_or_no(conversation.text) is False or conversation.done_for_now():
        conversation.close()
    elif not candidates:
        _gone(conversation)
    else:
        conversation.missed("Sorry, which one? "
                            + which_question(candidates, clinic=conversation.clinic, kind=kind))


def _confirm_cancel(conversation: Conversation) -> None:
    appointment = _target(conversation)
    if appointment is None:
        _gone(conversation)
        return
    answer = yes_or_no(conversation.text)
    if answer is True:
        cancelled = conversation.adapter.cancel(appointment_id=appointment.id)
        conversation.funnel.append(("cancelled", {"appointment_id": cancelled.id}))
        # Keep the service and the person, so "yes" to "book another time?" offers the same
        # treatment for them.
        conversation.end_booking(awaiting=OFFERED_TO_BOOK, service=appointment.service.slug,
                                 booking_for=[{"id": appointment.patient_id}]
                                 if appointment.patient_id else None)
        conversation.say(cancelled_text(appointment, clinic=conversation.clinic))
    elif answer is False:
        conversation.end_booking()
        conversation.say(kept_text(appointment, clinic=conversation.clinic))
    else:
        conversation.missed(cancel_question(appointment, clinic=conversation.clinic,
                                            now=conversation.now))


def _confirm_reschedule(conversation: Conversation) -> None:
    appointment = _target(conversation)
    if appointment is None:
        _gone(conversation)
        return
    answer = yes_or_no(conversation.text)
    new_slot = conversation.chosen
    if answer is True and new_slot is not None:
        try:
            moved = conversation.adapter.reschedule(
                appointment_id=appointment.id, new_slot=new_slot,
                idempotency_key=conversation.idempotency_key("move", appointment.id,
                                                             new_slot.starts_at))
        except SlotUnavailable:
            conversation.slot_taken(new_slot, treatment(conversation, appointment))
            return
        except InvalidRequest:
            _gone(conversation)
            return
        conversation.funnel.append(("rescheduled", {"appointment_id": moved.id,
                                                    "from_appointment_id": appointment.id}))
        conversation.end_booking(awaiting=JUST_BOOKED, appointment_id=moved.id)
        conversation.say(confirmation_text(
            moved, clinic=conversation.clinic, service=treatment(conversation, appointment),
            lead_in="Done, you're moved" if label(moved.patient) == "you" else "Done, moved"))
    elif answer is False:
        conversation.end_booking()
        conversation.say(kept_text(appointment, clinic=conversation.clinic))
    elif conversation.wish():
        conversation.offer(treatment(conversation, appointment), wish=conversation.wish(),
                           lead_in="Sure.")
    else:
        conversation.missed(reschedule_question(appointment, new_slot.starts_at,
                                                clinic=conversation.clinic,
                                                now=conversation.now))
