"""The inbox: every patient message is stored once before Twilio gets its answer, and reaches
the dialogue in order, exactly as often as it takes to get the dialogue's replies stored.

1. `accept` (the intake, right after the webhook stored the message as it came: see
   `booking.messaging.arrivals`): store the message once per MessageSid;
   answer staff (`staff_replies`), STOP/START/HELP (`consent`) and words-less photos here; run
   the red-flag rules, so an emergency is escalated at once whatever state the dialogue is in;
   queue what the dialogue should read as an `InboxItem`.
2. `claim_due` (a gateway worker): the oldest waiting item of each thread, leased to one
   worker; a later message of the same patient waits until the earlier one is done, across
   any number of gateway processes (the order and the claim are rows, not memory).
3. The worker's outcome, stored with whatever must be sent: `answered` (the replies go into the
   outbox in the same transaction), `retry_later` (the dialogue is down or failed: back off,
   and past `INBOX_MAX_WAIT_SECONDS` `hand_to_staff` with one holding reply).
The missed call reaches the dialogue the same way (`queue_event`, stored with its text-back),
so the dialogue hears of it before the patient's reply, however fast that comes.
A thread staff hold is theirs: its messages are `held`, not read by the bot; the patient's
first message after a handover gets one line saying the team has it (`HELD_REPLY`).
The worker itself is `booking.gateway.messaging.InboxWorker`.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import bindparam, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import BindParameter

from booking.clinics.lookups import find_clinic_by_number
from booking.escalation import staff_replies
from booking.escalation.escalations import hand_over, open_escalations
from booking.messaging import consent
from booking.messaging.conversations import (
    log_inbound,
    patient_thread,
    store_bot_reply,
)
from booking.messaging.outbox import enqueue
from booking.messaging.phones import to_e164
from booking.models import (
    Channel,
    Clinic,
    Consent,
    Direction,
    Escalation,
    EscalationReason,
    EscalationStatus,
    InboxItem,
    InboxState,
    JobState,
    Message,
    ScheduledJob,
    Thread,
    ThreadState,
)
from booking.outreach import jobs
from booking.settings import PROJECT_ROOT, Settings
from nlu_components.red_flag_rules import Firing, RedFlagRules

RED_FLAGS_FILE = PROJECT_ROOT / "data" / "red_flags.yml"
# Rasa reads "/intent{...}" as a command, after any spaces: none may reach it.
_COMMAND_LEAD = re.compile(r"^[\s/]+")
# What the bot says to a photo or a location with no words: it cannot read either.
NO_WORDS_REPLY = ("Thanks, {clinic} received your {what}, but we can only read text here. "
                  "Please tell us in words what you need, or reply YES to book.")
# A message to a thread staff hold: the patient hears once that it reached the team.
HELD_REPLY = "Thanks, the {clinic} team has this message too."
MAX_ERROR_CHARS = 300
_CLINICS_BY_NUMBER = "inbox: clinics by number"


@lru_cache(maxsize=1)
def red_flag_rules() -> RedFlagRules:
    """The same rule file, and the same rule code, as the NLU pipeline's safety net."""
    return RedFlagRules.from_file(RED_FLAGS_FILE)


def patient_text(body: str) -> str:
    """What the dialogue reads: the body without leading slashes and spaces (command syntax)."""
    return _COMMAND_LEAD.sub("", body).strip()


def storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL; the rest of the message is kept."""
    return text.replace("\x00", "")


@dataclass(frozen=True)
class Accepted:
    reply_ids: tuple[int, ...]  # stored now (keywords, staff, safety net): send at once
    queued: bool  # an InboxItem waits for the dialogue
    duplicate: bool = False  # Twilio retried a MessageSid we already have


def accept(session: Session, *, channel: Channel, params: dict[str, str],
           now: datetime) -> Accepted:
    """Store one inbound message (a Twilio messaging webhook's fields) and decide its way.

    LookupError: no clinic receives this channel at `To`. ValueError: `From` is no phone number.
    """
    to_number = params["To"].removeprefix("whatsapp:")
    body = storable(params.get("Body", ""))
    clinic = _clinic_at(session, to_number)
    if clinic is None or to_number != _clinic_number(clinic, channel):
        raise LookupError(f"no clinic receives {channel.value} at this number")
    phone = to_e164(params["From"].removeprefix("whatsapp:"), default_region=clinic.country)
    # Staff texting the clinic number ("ACK 7KQ2") are not patients: never the dialogue.
    staff_out = staff_replies.handle_staff_message(
        session, clinic=clinic, from_number=phone, body=body, channel=channel,
        to_number=params["To"], twilio_sid=params["MessageSid"])
    if staff_out is not None:
        return Accepted(reply_ids=tuple(m.id for m in staff_out), queued=False)
    # One writer per thread at a time, so a thread's items get ids in the order they commit:
    # the order the dialogue reads them in.
    thread = patient_thread(session, clinic=clinic, phone=phone, channel=channel)
    contact = thread.contact
    media_count = _count(params.get("NumMedia"))
    seen, replied_before, jobs_waiting = session.execute(_FIRST_LOOK, {
        "sid": params["MessageSid"], "thread_id": thread.id, "contact_id": contact.id}).one()
    if seen:
        return Accepted(reply_ids=(), queued=False, duplicate=True)
    message = log_inbound(
        session, clinic=clinic, thread=thread, channel=channel, from_number=params["From"],
        to_number=params["To"], body=body, twilio_sid=params["MessageSid"],
        media_count=media_count, received_at=now, first_reply=not replied_before)
    if channel == Channel.whatsapp:
        contact.whatsapp_unreachable = False  # they just wrote to us on WhatsApp
    if jobs_waiting:  # they are talking to us: no "just checking in" after this
        jobs.cancel_pending(session, contact_ids=[contact.id], reason="the patient replied",
                            kinds=jobs.ANSWERED_BY_A_MESSAGE, now=now)
    keyword = consent.keyword_in(body)
    if keyword == consent.Keyword.opt_out:
        replies = consent.opt_out(session, clinic=clinic, contact=contact, thread=thread)
    elif keyword == consent.Keyword.opt_in:
        replies = consent.opt_in(session, clinic=clinic, contact=contact, thread=thread)
    elif keyword == consent.Keyword.help:
        replies = consent.help_reply(session, clinic=clinic, contact=contact, thread=thread)
    else:
        replies = []
    text = patient_text(body)
    listening = keyword is None and contact.consent != Consent.opted_out
    if not listening:
        return Accepted(reply_ids=tuple(m.id for m in replies), queued=False)
    if not text:
        return Accepted(reply_ids=tuple(m.id for m in _no_words_reply(
            session, thread=thread, params=params, media_count=media_count)), queued=False)
    firing = red_flag_rules().first_match(text)
    if firing is not None and not _urgent_already_open(session, thread):
        return Accepted(reply_ids=_escalate_emergency(session, thread=thread, text=text,
                                                      firing=firing, now=now),
                        queued=False)
    session.add(InboxItem(message=message, thread_id=thread.id, text=text,
                          state=InboxState.waiting, attempts=0, received_at=now))
    held_reply = HELD_REPLY.format(clinic=clinic.name)
    told = (_tell_patient(session, thread=thread, text=held_reply)
            if _not_yet_told_since_handover(session, thread, held_reply) else ())
    return Accepted(reply_ids=told, queued=True)


# Built once, like the other statements every patient message runs. Messages are taken in one
# at a time (the intake's passes, see `booking.messaging.arrivals`), so looking finds a
# MessageSid Twilio sent again (the unique SID stays the backstop); the same look tells whether
# this is the patient's first reply and whether scheduled texts wait that it makes needless
# (the lock on those is taken only when there are some).
_FIRST_LOOK = select(
    exists().where(Message.twilio_sid == bindparam("sid")),
    exists().where(Message.thread_id == bindparam("thread_id"),
                   Message.direction == Direction.inbound),
    exists().where(ScheduledJob.contact_id == bindparam("contact_id"),
                   ScheduledJob.state == JobState.scheduled,
                   ScheduledJob.kind.in_(jobs.ANSWERED_BY_A_MESSAGE)))


def _escalate_emergency(session: Session, *, thread: Thread, text: str, firing: Firing,
                        now: datetime) -> tuple[int, ...]:
    """The on-call alert and the patient's safety message, stored now; the dialogue does not
    see this message, so it is escalated once."""
    handover = hand_over(session, thread=thread, reason=EscalationReason.urgent, intent=None,
                         red_flag=firing.as_output(), last_message=text, instant=now)
    told = _tell_patient(session, thread=thread, text=handover.patient_message)
    # The on-call text first: it is what gets a clinician to an emergency.
    return (*handover.alert_message_ids, *told)


def _not_yet_told_since_handover(session: Session, thread: Thread, held_reply: str) -> bool:
    """Staff hold the thread since an escalation and the patient has not yet been told that
    the team has their messages: told once (the bot will not answer), not after every one."""
    if thread.state != ThreadState.handed_off:
        return False
    opened = session.execute(select(func.max(Escalation.opened_at))
                             .where(Escalation.thread_id == thread.id)).scalar()
    if opened is None:
        return False  # staff took the thread themselves and are writing in it
    return not session.execute(select(exists().where(
        Message.thread_id == thread.id, Message.direction == Direction.outbound,
        Message.body == held_reply, Message.created_at >= opened))).scalar()


def _urgent_already_open(session: Session, thread: Thread) -> bool:
    """Staff are already on an emergency in this thread: do not page them again."""
    return any(e.reason == EscalationReason.urgent and e.status == EscalationStatus.open
               for e in open_escalations(session, thread=thread))


def _tell_patient(session: Session, *, thread: Thread, text: str) -> tuple[int, ...]:
    return tuple(m.id for m in enqueue(
        session, clinic=thread.clinic, channel=thread.channel, to_number=thread.contact.phone,
        body=text, author="bot", thread=thread, contact=thread.contact))


def _no_words_reply(session: Session, *, thread: Thread, params: dict[str, str],
                    media_count: int) -> list[Message]:
    """A photo or a location alone: say we cannot read it (unless staff have the thread)."""
    if thread.state == ThreadState.handed_off:
        return []
    if params.get("Latitude") and params.get("Longitude"):
        what = "location"
    elif media_count:
        what = "photo" if media_count == 1 else "photos"
    else:
        return []  # an empty text: nothing to answer
    return enqueue(session, clinic=thread.clinic, channel=thread.channel,
                   to_number=thread.contact.phone, author="bot", thread=thread,
                   contact=thread.contact,
                   body=NO_WORDS_REPLY.format(clinic=thread.clinic.name, what=what))


def _clinic_at(session: Session, number: str) -> Clinic | None:
    """Looked up once per session: an intake pass takes a burst in, mostly to a few numbers."""
    clinics = session.info.setdefault(_CLINICS_BY_NUMBER, {})
    if number not in clinics:
        clinics[number] = find_clinic_by_number(session, number)
    return clinics[number]


def _clinic_number(clinic: Clinic, channel: Channel) -> str | None:
    return clinic.whatsapp_number if channel == Channel.whatsapp else clinic.sms_number


def _count(value: str | None) -> int:
    try:
        return min(max(0, int(value or 0)), 100)
    except ValueError:
        return 0


def queue_event(session: Session, *, thread_id: int, message_id: int, intent: str,
                now: datetime) -> None:
    """Tell the dialogue of an event (the missed call, stored with its text-back `message_id`)
    in the thread's order: before any reply the patient sends to that text-back."""
    session.add(InboxItem(message_id=message_id, thread_id=thread_id, text="", intent=intent,
                          state=InboxState.waiting, attempts=0, received_at=now))


# -- the worker's side ----------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """One item leased to one worker: what the dialogue needs to read it."""

    item_id: int
    claim_token: str
    sender_id: str
    text: str
    metadata: dict
    received_at: datetime
    intent: str | None = None  # an event to tell the dialogue, not a message to read


@dataclass(frozen=True)
class InboxPolicy:
    max_wait: timedelta
    first_retry: float
    max_retry: float
    lease: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> InboxPolicy:
        return cls(max_wait=timedelta(seconds=settings.inbox_max_wait_seconds),
                   first_retry=settings.inbox_first_retry_seconds,
                   max_retry=settings.inbox_max_retry_seconds,
                   # Longer than one delivery may take, so a live worker never loses its item.
                   lease=timedelta(seconds=settings.rasa_timeout_seconds + 30))

    def retry_delay(self, attempts: int) -> timedelta:
        # Jitter keeps the workers of several gateways from retrying in lockstep.
        ceiling = min(self.max_retry, self.first_retry * 2 ** max(0, attempts - 1))
        return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


_EARLIER = aliased(InboxItem, name="earlier")
# Built once: a worker claims after every delivery. Due: waiting, its retry time come, no live
# lease, and no older waiting item of its thread.
_NOW = bindparam("now", type_=InboxItem.received_at.type)
_DUE = (select(InboxItem.id).where(
    InboxItem.state == InboxState.waiting,
    or_(InboxItem.next_attempt_at.is_(None), InboxItem.next_attempt_at <= _NOW),
    or_(InboxItem.claimed_until.is_(None), InboxItem.claimed_until < _NOW),
    ~exists().where(_EARLIER.thread_id == InboxItem.thread_id,
                    _EARLIER.state == InboxState.waiting,
                    _EARLIER.id < InboxItem.id),
).order_by(InboxItem.id).limit(bindparam("limit")))
# Conditional, so two workers reading the same candidates cannot both take one.
_LEASE = (update(InboxItem).where(
    InboxItem.id.in_(bindparam("ids", expanding=True)), InboxItem.state == InboxState.waiting,
    or_(InboxItem.claimed_until.is_(None), InboxItem.claimed_until < _NOW))
    .values(claim_token=bindparam("token"),
            claimed_until=bindparam("until", type_=InboxItem.claimed_until.type),
            attempts=InboxItem.attempts + 1)
    .execution_options(synchronize_session=False))
_LEASED = (select(InboxItem.id, InboxItem.text, InboxItem.intent, InboxItem.received_at,
                  Thread.sender_id, Thread.state.label("thread_state"),
                  Clinic.slug.label("clinic"), Message.id.label("message_id"),
                  Message.channel, Message.media_count)
           .join(Thread, Thread.id == InboxItem.thread_id)
           .join(Clinic, Clinic.id == Thread.clinic_id)
           .join(Message, Message.id == InboxItem.message_id)
           .where(InboxItem.claim_token == bindparam("token")).order_by(InboxItem.id))


def claim_due(session: Session, *, now: datetime, limit: int,
              policy: InboxPolicy) -> list[Claimed]:
    """Lease up to `limit` items whose turn has come: each its thread's oldest waiting one.

    Items of threads staff hold are marked held on the way, which lets the next one through.
    One lease token per call: the items it leases are this worker's, whichever it is.
    """
    claimed: list[Claimed] = []
    while len(claimed) < limit:
        candidates = list(session.execute(_DUE, {"now": now, "limit": limit - len(claimed)})
                          .scalars())
        if not candidates:
            break
        token = str(uuid.uuid4())
        session.execute(_LEASE, {"ids": candidates, "now": now, "token": token,
                                 "until": now + policy.lease})
        won = session.execute(_LEASED, {"token": token}).all()
        held = [row.id for row in won if row.thread_state == ThreadState.handed_off]
        claimed.extend(
            Claimed(item_id=row.id, claim_token=token, sender_id=row.sender_id, text=row.text,
                    metadata={"clinic": row.clinic, "channel": row.channel.value,
                              "message_id": row.message_id, "media_count": row.media_count},
                    received_at=row.received_at, intent=row.intent)
            for row in won if row.thread_state != ThreadState.handed_off)
        if not held:
            break
        session.execute(
            update(InboxItem).where(InboxItem.id.in_(held))
            .values(**_finished(InboxState.held, now))
            .execution_options(synchronize_session=False))
    return claimed


def _owned(session: Session, claimed: Claimed) -> InboxItem | None:
    item = session.get(InboxItem, claimed.item_id, with_for_update=True)
    if item is None or item.state != InboxState.waiting or item.claim_token != claimed.claim_token:
        return None  # the lease ran out and another worker has it
    return item


def _finished(state: InboxState, at: datetime | BindParameter) -> dict:
    """What an item finished in `state` holds, however it is finished (loaded or by UPDATE):
    no lease, no retry."""
    return {"state": state, "finished_at": at, "claim_token": None, "claimed_until": None,
            "next_attempt_at": None}


def _finish(item: InboxItem, state: InboxState, now: datetime) -> None:
    for column, value in _finished(state, now).items():
        setattr(item, column, value)


# Finished and owned-checked in one statement, which locks the row as a load would. Built once
# (building a statement costs more than running it), like the other statements each message
# runs here.
_FINISH_ANSWERED = (
    update(InboxItem).where(InboxItem.id == bindparam("item_id"),
                            InboxItem.state == InboxState.waiting,
                            InboxItem.claim_token == bindparam("token"))
    .values(**_finished(InboxState.answered, _NOW))
    .execution_options(synchronize_session=False))


def answered(session: Session, *, claimed: Claimed, replies: list[str],
             now: datetime) -> tuple[int, ...]:
    """The dialogue answered: its replies go to the outbox and the item is done, together."""
    # On the connection: through the session, an UPDATE of a mapped class is an ORM statement,
    # annotated (and its cache key computed) anew on every execution; nothing pending in the
    # session concerns the item.
    finished = session.connection().execute(_FINISH_ANSWERED, {
        "item_id": claimed.item_id, "token": claimed.claim_token, "now": now}).rowcount
    if not finished:
        return ()  # the lease ran out and another worker has it
    return tuple(m.id for text in replies if text.strip()
                 for m in store_bot_reply(session, sender_id=claimed.sender_id, text=text))


def retry_later(session: Session, *, claimed: Claimed, error: str, now: datetime,
                policy: InboxPolicy) -> tuple[int, ...]:
    """The dialogue could not answer: try again later, or hand the thread to staff once the
    patient has waited too long. Returns what must be sent now."""
    item = _owned(session, claimed)
    if item is None:
        return ()
    item.last_error = error[:MAX_ERROR_CHARS]
    if item.thread.state == ThreadState.handed_off:  # staff took the thread meanwhile
        _finish(item, InboxState.held, now)
        return ()
    if now - item.received_at >= policy.max_wait:
        if item.intent is not None:  # nobody wrote: nothing for staff, the reply goes next
            _finish(item, InboxState.expired, now)
            return ()
        return hand_to_staff(session, item=item, now=now)
    item.claim_token = item.claimed_until = None
    item.next_attempt_at = now + policy.retry_delay(item.attempts)
    return ()


def hand_to_staff(session: Session, *, item: InboxItem, now: datetime) -> tuple[int, ...]:
    """The dialogue is unavailable: staff get the thread with its waiting messages, and the
    patient one holding reply."""
    thread = item.thread
    waiting = session.execute(
        select(InboxItem).where(InboxItem.thread_id == thread.id,
                                InboxItem.state == InboxState.waiting)
        .order_by(InboxItem.id)
    ).scalars().all()
    handover = hand_over(session, thread=thread, reason=EscalationReason.bot_unavailable,
                         intent=None, red_flag=None,
                         last_message=" / ".join(w.text for w in waiting if w.intent is None)
                         or item.text,
                         instant=now)
    for each in waiting:
        _finish(each, InboxState.handed_to_staff, now)
    return (*handover.alert_message_ids,
            *_tell_patient(session, thread=thread, text=handover.patient_message))


__all__ = ["Accepted", "Claimed", "InboxPolicy", "accept", "answered", "claim_due",
           "hand_to_staff", "patient_text", "queue_event", "red_flag_rules", "retry_later",
           "storable"]
