"""Moving and cancelling an existing appointment by text.

The patient's upcoming appointments are found by their number (the thread's contact); with
several, the bot asks which. Nothing changes until the patient confirms, and the confirmation
question carries the clinic's late-cancellation terms when the appointment is within its notice
period. The wording and the policy live in booking.dialogue.appointment_changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actions.steps import BOOKING_STEPS, CALENDAR_DOWN, JUST_BOOKED, OFFERED_TO_BOOK
from booking.dialogue.appointment_booking import confirmation_text
from booking.dialogue.appointment_changes import (
    answer_is_yes,
    cancel_question,
    cancelled_text,
    choose_appointment,
    kept_text,
    nothing_to_change_text,
    reschedule_question,
    summary,
    which_question,
)
from booking.models import Appointment, Service
from booking.scheduling.base import CalendarUnavailable, InvalidRequest, Slot, SlotUnavailable

if TYPE_CHECKING:  # the conversation calls this module; this module only reads it
    from actions.booking import Conversation

yes_or_no = answer_is_yes


def treatment(conversation: Conversation, appointment: Appointment) -> Service:
    """The appointment's service as this turn's session knows it (with its clinicians)."""
    return next(s for s in conversation.services if s.id == appointment.service_id)


def upcoming(conversation: Conversation) -> list[Appointment]:
    return conversation.adapter.upcoming_for_contact(contact=conversation.contact)


def _target(conversation: Conversation) -> Appointment | None:
    wanted = conversation.slot("change_target")
    return next((a for a in upcoming(conversation) if a.id == wanted), None)


def _candidates(conversation: Conversation) -> list[Appointment]:
    wanted = conversation.slot("change_candidates") or []
    return [a for a in upcoming(conversation) if a.id in wanted]


def start_change(conversation: Conversation, kind: str) -> None:
    """'Cancel my appointment' / 'can I move it to Friday': find which, then confirm."""
    try:
        appointments = upcoming(conversation)
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
    if not appointments:
        conversation.set(awaiting=OFFERED_TO_BOOK)
        conversation.say(nothing_to_change_text(clinic=conversation.clinic, kind=kind))
        return
    chosen = appointments[0] if len(appointments) == 1 else choose_appointment(
        conversation.text, appointments, clinic=conversation.clinic, now=conversation.now,
        date_order=conversation.date_order)
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
    moving = summary(appointment, clinic=conversation.clinic)
    conversation.offer(treatment(conversation, appointment), wish=wish,
                       lead_in=f"Sure, let's move your {moving}.")


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
        return choose_appointment(conversation.text, _candidates(conversation),
                                  clinic=conversation.clinic, now=conversation.now,
                                  date_order=conversation.date_order) is not None
    if conversation.awaiting == "confirm_reschedule" and conversation.wish():
        return True
    return yes_or_no(conversation.text) is not None


def resume_prompt(conversation: Conversation) -> str | None:
    kind = conversation.slot("change_kind") or "reschedule"
    if conversation.awaiting == "which_appointment":
        return which_question(_candidates(conversation), clinic=conversation.clinic, kind=kind)
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
    except CalendarUnavailable:
        conversation.say(CALENDAR_DOWN)


def _which(conversation: Conversation) -> None:
    candidates = _candidates(conversation)
    kind = conversation.slot("change_kind") or "reschedule"
    chosen = choose_appointment(conversation.text, candidates, clinic=conversation.clinic,
                                now=conversation.now, date_order=conversation.date_order)
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
        # Keep the service, so "yes" to "book another time?" offers the same treatment.
        conversation.end_booking(awaiting=OFFERED_TO_BOOK, service=appointment.service.slug)
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
        conversation.say(confirmation_text(moved, clinic=conversation.clinic,
                                           service=treatment(conversation, appointment),
                                           lead_in="Done, you're moved"))
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
