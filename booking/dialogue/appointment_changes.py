"""Moving and cancelling a booked appointment by text: which one, the clinic's notice policy,
and the wording of each question and confirmation. Framework-free."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from booking.clinics.lookups import match_service
from booking.dialogue.appointment_booking import change_instructions, describe
from booking.dialogue.family import possessive, treatment, whose_treatment
from booking.dialogue.slot_choice import DAY_FIRST, matching_offers
from booking.models import Appointment, Clinic

DEFAULT_NOTICE_HOURS = 24
DEFAULT_GRACE_MINUTES = 60

_YES = re.compile(r"^\W*(?:y|yes+|yeah|yeh|yep|yup|ya|yea|yh|ye|yas|sure|ok|okay|k|please do|"
                  r"go ahead|do it|confirm(?:ed)?|correct|that'?s right|right|fine|absolutely|"
                  r"definitely|of course)\b", re.IGNORECASE)
_NO = re.compile(r"^\W*(?:n|no|nope|nah|don'?t|do not|not|keep|leave|never ?mind|forget it|"
                 r"cancel that|stop)\b", re.IGNORECASE)


_THUMBS_UP = re.compile("^\\s*(?:\U0001F44D|\U0001F44C|\u2705|\u2714)")  # 👍 👌 ✅ ✔


def answer_is_yes(text: str) -> bool | None:
    """True for a yes, False for a no, None when the reply is neither."""
    if _NO.search(text):
        return False
    if _YES.search(text) or _THUMBS_UP.search(text):
        return True
    return None


def notice_hours(clinic: Clinic) -> int:
    policy = (clinic.settings or {}).get("cancellation") or {}
    return int(policy.get("notice_hours", DEFAULT_NOTICE_HOURS))


def grace_minutes(clinic: Clinic) -> int:
    policy = (clinic.settings or {}).get("cancellation") or {}
    return int(policy.get("grace_minutes", DEFAULT_GRACE_MINUTES))


def is_late_notice(appointment: Appointment, *, clinic: Clinic, now: datetime) -> bool:
    """True when the appointment starts within the clinic's cancellation notice period.

    Not for an appointment booked moments ago: changing a time just picked by mistake costs
    the clinic nothing, and a fee warning for it reads as a trap.
    """
    if appointment.created_at and now - appointment.created_at < timedelta(
            minutes=grace_minutes(clinic)):
        return False
    return appointment.starts_at - now < timedelta(hours=notice_hours(clinic))


def late_notice_warning(appointment: Appointment, *, clinic: Clinic, now: datetime) -> str:
    """The clinic's late-cancellation terms, when they apply to this change; else ''."""
    if not is_late_notice(appointment, clinic=clinic, now=now):
        return ""
    policy = (clinic.settings or {}).get("cancellation") or {}
    fee = (policy.get("late_fee") or "").strip()
    hours = notice_hours(clinic)
    warning = f"It's less than {hours} hours away, so our late-cancellation policy applies."
    return f"{warning} {fee}" if fee else warning


def summary(appointment: Appointment, *, clinic: Clinic) -> str:
    """'Check-up on Thu 27 Nov at 10:00'."""
    return f"{appointment.service.name} on {describe(appointment.starts_at, clinic=clinic)}"


def whose_summary(appointment: Appointment, *, clinic: Clinic) -> str:
    """'your Check-up on Thu 27 Nov at 10:00', "Emma's check-up on Thu 27 Nov at 10:00"."""
    return (f"{whose_treatment(appointment.patient, appointment.service.name)} on "
            f"{describe(appointment.starts_at, clinic=clinic)}")


def _listed(appointment: Appointment, *, clinic: Clinic, family: bool) -> str:
    """A line of "which one?": whose it is, when the appointments are for several people."""
    if not family:
        return summary(appointment, clinic=clinic)
    whose = possessive(appointment.patient)
    return (f"{whose[:1].upper()}{whose[1:]} {treatment(appointment.service.name)} on "
            f"{describe(appointment.starts_at, clinic=clinic)}")


def which_question(appointments: list[Appointment], *, clinic: Clinic, kind: str) -> str:
    verb = "cancel" if kind == "cancel" else "move"
    family = len({a.patient_id for a in appointments}) > 1
    lines = "\n".join(f"{index}. {_listed(appointment, clinic=clinic, family=family)}"
                      for index, appointment in enumerate(appointments, start=1))
    return f"You have {len(appointments)} appointments booked:\n{lines}\nWhich one would you " \
           f"like to {verb}? Reply with the number."


def choose_appointment(text: str, appointments: list[Appointment], *, clinic: Clinic,
                       now: datetime, date_order: str = DAY_FIRST) -> Appointment | None:
    """The appointment the reply points at: by number, day, time or treatment."""
    zone = ZoneInfo(clinic.timezone)
    matches = matching_offers(text, [a.starts_at for a in appointments], now=now, zone=zone,
                              date_order=date_order)
    if len(matches) == 1:
        return appointments[matches[0]]
    pool = [appointments[i] for i in matches] or appointments
    service = match_service(services=list({a.service.id: a.service for a in pool}.values()),
                            text=text)
    if service is not None:
        same = [a for a in pool if a.service_id == service.id]
        if len(same) == 1:
            return same[0]
    return None


def cancel_question(appointment: Appointment, *, clinic: Clinic, now: datetime) -> str:
    warning = late_notice_warning(appointment, clinic=clinic, now=now)
    return " ".join(filter(None, [
        f"Just to check: cancel {whose_summary(appointment, clinic=clinic)}?", warning,
        "Reply YES to cancel it, or NO to keep it."]))


def cancelled_text(appointment: Appointment, *, clinic: Clinic) -> str:
    return (f"Done: {whose_summary(appointment, clinic=clinic)} is cancelled. "
            "Would you like to book another time? Reply YES and I'll find some.")


def kept_text(appointment: Appointment, *, clinic: Clinic) -> str:
    return (f"No problem, {whose_summary(appointment, clinic=clinic)} stays booked. "
            + change_instructions(clinic))


def reschedule_question(appointment: Appointment, new_start: datetime, *, clinic: Clinic,
                        now: datetime) -> str:
    warning = late_notice_warning(appointment, clinic=clinic, now=now)
    return " ".join(filter(None, [
        f"Just to check: move "
        f"{whose_treatment(appointment.patient, appointment.service.name)} from "
        f"{describe(appointment.starts_at, clinic=clinic)} to "
        f"{describe(new_start, clinic=clinic)}?", warning,
        "Reply YES to move it, or NO to keep your current time."]))


def nothing_to_change_text(*, clinic: Clinic, kind: str, for_whom: str | None = None) -> str:
    """`for_whom`: "Emma", "your son", when the patient asked about someone's appointment."""
    verb = "cancel" if kind == "cancel" else "move"
    whom = f"for {for_whom} at {clinic.name}" if for_whom else f"at {clinic.name} for this number"
    return (f"I can't find an upcoming appointment {whom}, so there's nothing to {verb}. "
            "Would you like to book one? Reply YES, or say \"talk to someone\" if you booked "
            "under another number.")
