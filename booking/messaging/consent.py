"""Opt-out and opt-in by keyword, as carriers and Twilio define them for SMS.

Only an exact single-word message counts as a keyword (trimmed, any case), the way Twilio's
default opt-out handling reads it: a bare "CANCEL" opts out, while "cancel my appointment" is a
sentence, goes to the dialogue, and cancels the appointment. Natural-language opt-outs ("stop
texting me") are recognised by the NLU model and end up in `opt_out` here too.
"""

from __future__ import annotations

import enum

from sqlalchemy.orm import Session

from booking.messaging.conversations import record_event
from booking.messaging.outbox import enqueue
from booking.messaging.phones import for_reading
from booking.models import Clinic, Consent, Contact, Message, Thread, utcnow
from booking.outreach import jobs

OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "REVOKE", "OPTOUT", "CANCEL"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})


class Keyword(str, enum.Enum):
    opt_out = "opt_out"
    opt_in = "opt_in"
    help = "help"


def keyword_in(body: str) -> Keyword | None:
    word = body.strip().upper()
    if word in OPT_OUT_KEYWORDS:
        return Keyword.opt_out
    if word in OPT_IN_KEYWORDS:
        return Keyword.opt_in
    if word in HELP_KEYWORDS:
        return Keyword.help
    return None


def opt_out(session: Session, *, clinic: Clinic, contact: Contact, thread: Thread,
            wrong_number: bool = False) -> list[Message]:
    """Stop all messages to this contact from this clinic, after one confirmation.

    Someone who says we have the wrong number gets an apology rather than unsubscribe talk.
    """
    if contact.consent == Consent.opted_out:
        return []
    jobs.cancel_pending(session, contact_ids=[contact.id], reason="the patient opted out")
    body = (f"Sorry to have bothered you. This number won't get any more texts from "
            f"{clinic.name}." if wrong_number else
            f"You're unsubscribed from {clinic.name} texts and will get no more messages. "
            "Reply START to resubscribe.")
    # The confirmation is the one message an opted-out contact still gets.
    return _change_consent(session, clinic=clinic, contact=contact, thread=thread,
                           consent=Consent.opted_out, body=body, ignore_opt_out=True)


def opt_in(session: Session, *, clinic: Clinic, contact: Contact, thread: Thread) -> list[Message]:
    return _change_consent(
        session, clinic=clinic, contact=contact, thread=thread, consent=Consent.opted_in,
        body=(f"You're subscribed to {clinic.name} texts again. Reply YES to book, "
              "or STOP to opt out."))


def _change_consent(session: Session, *, clinic: Clinic, contact: Contact, thread: Thread,
                    consent: Consent, body: str, ignore_opt_out: bool = False) -> list[Message]:
    """Record the change (and its funnel event) and confirm it to the patient."""
    contact.consent = consent
    contact.consent_changed_at = utcnow()
    record_event(session, clinic_id=clinic.id, kind=consent.value, contact_id=contact.id,
                 thread_id=thread.id)
    return enqueue(session, clinic=clinic, channel=thread.channel, to_number=contact.phone,
                   body=body, author="system", thread=thread, contact=contact,
                   ignore_opt_out=ignore_opt_out)


def help_reply(session: Session, *, clinic: Clinic, contact: Contact,
               thread: Thread) -> list[Message]:
    phone = for_reading(clinic.voice_number or clinic.sms_number, country=clinic.country)
    return enqueue(
        session, clinic=clinic, channel=thread.channel, to_number=contact.phone,
        body=(f"{clinic.name}: call us on {phone}. {clinic.address}. "
              "Reply STOP to opt out.").replace(". .", "."),
        author="system", thread=thread, contact=contact, ignore_opt_out=True,
    )
