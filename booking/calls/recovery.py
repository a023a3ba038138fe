"""The missed-call path, top to bottom: record it, decide, text back, tell the dialogue.

1. `register_missed_calls` runs before the webhooks answer: it stores each call once per
   CallSid, as `pending`, for all the calls reported together. That is all Twilio waits for, so
   fifty calls at once are answered quickly, and a crash after the answer loses nothing.
2. `decide_text_backs` runs straight after the answer (and, for anything a crash left
   `pending`, from the gateway's sweeper): it works out whether each caller should hear from us
   (opted out? texted a few minutes ago? a number or country the clinic does not text? over
   this hour's cap?), on which channel and in which words, and writes the text-backs into the
   outbox and the funnel events, in one transaction that only one process can complete for a
   call.
3. The gateway then delivers the stored text-backs; with each it stores, in the same
   transaction, the inbox's news of the call for the dialogue (`EXTERNAL_missed_call`), so the
   dialogue knows why the patient is replying before it reads the reply.

`record_missed_call` does 1 and 2 in one transaction, for callers that need no fast answer."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from booking.calls import destinations, hourly_caps
from booking.calls import text_back as wording
from booking.calls.hourly_caps import Allowance, HourlyCaps
from booking.db import insert_ignoring_duplicates
from booking.messaging.conversations import (
    get_or_create_contact,
    record_event,
    threads_for,
)
from booking.messaging.outbox import enqueue
from booking.models import (
    Channel,
    ChannelPolicy,
    Clinic,
    Consent,
    Contact,
    Direction,
    FunnelEvent,
    Message,
    MissedCall,
    MissedCallStatus,
    Thread,
    utcnow,
)
from booking.outreach import jobs
from booking.settings import get_settings

logger = logging.getLogger(__name__)

# Someone who rings three times in a few minutes wants one text, not three.
REPEAT_CALL_WINDOW = timedelta(minutes=10)
# WhatsApp lets a business send free-form text only within 24 hours of the patient's last message.
WHATSAPP_SESSION_WINDOW = timedelta(hours=24)


class AlreadyDecided(Exception):
    """Another process wrote this call's text-back first; this transaction must roll back."""


@dataclass(frozen=True)
class RecordedCall:
    missed_call_id: int
    status: MissedCallStatus  # `pending` for a new call; what was decided for a repeat
    is_new: bool  # False when this CallSid had been recorded already
    will_text: bool  # what the voice answer may promise: a text-back is (or will be) on its way


@dataclass(frozen=True)
class MissedCallOutcome:
    missed_call_id: int
    status: MissedCallStatus
    message_ids: tuple[int, ...]  # the stored text-back, to deliver now
    sender_id: str | None
    thread_id: int | None
    channel: Channel | None
    is_new: bool  # False when the decision had been made already
    # Set on the first call of the hour a clinic's cap (or the global one) refused: staff are
    # to be told, once.
    cap_reached: Allowance | None = None


@dataclass(frozen=True)
class CallReport:
    """A missed call as a webhook reports it, before it is stored."""

    clinic_id: int
    caller: str
    call_sid: str
    dial_status: str
    source: str
    occurred_at: datetime


def register_missed_call(
    session: Session,
    *,
    clinic: Clinic,
    caller: str,
    call_sid: str,
    dial_status: str,
    source: str,
    occurred_at: datetime,
) -> RecordedCall:
    """Store one missed call as pending; see `register_missed_calls`."""
    return register_missed_calls(session, [CallReport(
        clinic_id=clinic.id, caller=caller, call_sid=call_sid, dial_status=dial_status,
        source=source, occurred_at=occurred_at)])[0]


def register_missed_calls(session: Session, reports: list[CallReport]) -> list[RecordedCall]:
    """Store missed calls as pending, once per CallSid; their text-backs are decided afterwards.

    This is on the path Twilio waits on, so it is a few set-based statements whatever the
    number of calls: find or add the callers, look for CallSids already stored, add the rest (a
    CallSid stored meanwhile by another process is skipped by the unique key, not by an error).
    Funnel events are written when the calls are decided. Returns one result per report.
    """
    contacts = _contacts_for_calls(session, {(r.clinic_id, r.caller) for r in reports})
    keys = {(r.clinic_id, r.call_sid) for r in reports}
    stored_before = _stored_calls(session, keys)
    new = {(r.clinic_id, r.call_sid): r for r in reversed(reports)
           if (r.clinic_id, r.call_sid) not in stored_before}  # the first report of a CallSid
    if new:
        session.execute(
            insert_ignoring_duplicates(session, MissedCall, ("clinic_id", "call_sid")),
            [{"clinic_id": r.clinic_id, "contact_id": contacts[r.clinic_id, r.caller][0],
              "call_sid": r.call_sid, "source": r.source, "dial_status": r.dial_status,
              "occurred_at": r.occurred_at, "status": MissedCallStatus.pending}
             for r in new.values()])
    # A CallSid another process stored between our look and our insert counts as new here too;
    # that only means a second follow-up, which finds the call decided and does nothing.
    stored = _stored_calls(session, set(new)) if new else {}
    recorded, answered = [], set()
    for report in reports:
        key = (report.clinic_id, report.call_sid)
        if key in stored_before or key in answered:
            recorded.append(_repeat(*(stored_before.get(key) or stored[key])))
            continue
        answered.add(key)
        missed_call_id, status = stored[key]
        recorded.append(RecordedCall(
            missed_call_id=missed_call_id, status=status, is_new=True,
            will_text=contacts[report.clinic_id, report.caller][1] != Consent.opted_out))
    return recorded


def _by_clinic_and(session: Session, column, keys: set[tuple[int, str]], *values
                   ) -> dict[tuple[int, str], tuple]:
    """Rows of `column`'s table whose (clinic_id, column) is one of `keys`: key -> values."""
    model = column.class_
    rows = session.execute(
        select(model.clinic_id, column, *values)
        .where(model.clinic_id.in_({clinic_id for clinic_id, _ in keys}),
               column.in_({value for _, value in keys})))
    return {(clinic_id, key): tuple(rest) for clinic_id, key, *rest in rows
            if (clinic_id, key) in keys}


def _stored_calls(session: Session, keys: set[tuple[int, str]]
                  ) -> dict[tuple[int, str], tuple[int, MissedCallStatus]]:
    return _by_clinic_and(session, MissedCall.call_sid, keys, MissedCall.id, MissedCall.status)


def _contacts_for_calls(session: Session, callers: set[tuple[int, str]]
                        ) -> dict[tuple[int, str], tuple[int, Consent]]:
    """(clinic, phone) -> (contact id, consent), adding the callers we never heard from."""
    def find(wanted: set[tuple[int, str]]) -> dict[tuple[int, str], tuple[int, Consent]]:
        return _by_clinic_and(session, Contact.phone, wanted, Contact.id, Contact.consent)

    found = find(callers)
    missing = callers - set(found)
    if missing:
        now = utcnow()
        # Another webhook may add the same caller at the same moment: the unique key settles it.
        session.execute(insert_ignoring_duplicates(session, Contact, ("clinic_id", "phone")), [
            {"clinic_id": clinic_id, "phone": phone, "consent": Consent.implied,
             "is_known_patient": False, "whatsapp_unreachable": False, "created_at": now}
            for clinic_id, phone in missing])
        found.update(find(missing))
    return found


def _repeat(missed_call_id: int, status: MissedCallStatus) -> RecordedCall:
    return RecordedCall(missed_call_id=missed_call_id, status=status, is_new=False,
                        will_text=status in (MissedCallStatus.pending, MissedCallStatus.texted,
                                             MissedCallStatus.duplicate))


def text_back(session: Session, *, missed_call_id: int) -> MissedCallOutcome | None:
    """Decide one pending missed call; see `decide_text_backs`."""
    outcomes = decide_text_backs(session, [missed_call_id])
    return outcomes[0] if outcomes else None


def decide_text_backs(session: Session, missed_call_ids: list[int], *,
                      caps: HourlyCaps | None = None) -> list[MissedCallOutcome]:
    """Decide pending missed calls and store their text-backs; decided calls are left alone.

    A caller the clinic may not text (`destinations`), and calls over this hour's caps
    (`hourly_caps`, from the settings unless `caps` says), are marked `refused` with the reason
    and a `text_back_refused` funnel event; nothing is sent to them.

    Set-based, so a burst of calls is a handful of statements rather than a dozen per call:
    fifty calls at once is what the clinic's phone does at nine in the morning. Returns one
    outcome per call that was pending, in the order the calls were made. Raises AlreadyDecided
    when another process decided one of them during this transaction (the caller rolls back, so
    nothing is stored twice).
    """
    contact_ids = sorted(set(session.execute(
        select(MissedCall.contact_id).where(MissedCall.id.in_(missed_call_ids),
                                            MissedCall.status == MissedCallStatus.pending)
    ).scalars()))
    if not contact_ids:
        return []
    # One caller's calls are decided one at a time (row locks on PostgreSQL, taken in id order
    # so two processes never wait on each other), so three rings at once make one text-back.
    # NO KEY UPDATE: a webhook storing this caller's next call (a foreign key to the contact)
    # does not wait for the decision.
    contacts = {contact.id: contact for contact in session.execute(
        select(Contact).where(Contact.id.in_(contact_ids)).order_by(Contact.id)
        .with_for_update(key_share=True)).scalars()}
    # Read after the locks: a call another process decided meanwhile is no longer pending.
    calls = list(session.execute(
        select(MissedCall).where(MissedCall.id.in_(missed_call_ids),
                                 MissedCall.status == MissedCallStatus.pending)
        .order_by(MissedCall.occurred_at, MissedCall.id)).scalars())
    if not calls:
        return []
    # A new call supersedes the follow-ups of the last one (its own are planned afresh).
    jobs.cancel_pending(session, contact_ids=contact_ids, reason="the patient called again",
                        kinds=jobs.FOLLOW_UPS_AND_OFFERS)
    clinics = _clinics_with_hours(session, {call.clinic_id for call in calls})
    last_texted = _last_texted(session, contact_ids=list(contacts),
                               since=calls[0].occurred_at - REPEAT_CALL_WINDOW)
    last_inbound = _last_inbound_channels(
        session, [contacts[call.contact_id] for call in calls
                  if clinics[call.clinic_id].channel_policy == ChannelPolicy.whatsapp_then_sms])

    outcomes: dict[int, MissedCallOutcome] = {}
    refusals: list[tuple[MissedCall, dict]] = []
    texting = []
    for call in calls:
        contact, clinic = contacts[call.contact_id], clinics[call.clinic_id]
        texted = last_texted.get(contact.id)
        refused = destinations.refusal(clinic, contact.phone)
        if contact.consent == Consent.opted_out:
            _settle(session, call, MissedCallStatus.opted_out)
        elif texted is not None and texted >= call.occurred_at - REPEAT_CALL_WINDOW:
            _settle(session, call, MissedCallStatus.duplicate)
        elif refused is not None:
            _settle(session, call, MissedCallStatus.refused, refused_reason=refused.code)
            refusals.append((call, {"reason": refused.reason, "detail": refused.detail}))
        else:
            last_texted[contact.id] = call.occurred_at
            texting.append((call, clinic, contact, choose_channel(
                clinic=clinic, contact=contact, now=call.occurred_at,
                last_inbound=last_inbound.get(contact.id))))
            continue
        outcomes[call.id] = _outcome(call, message_ids=(), is_new=True)

    texting, capped = _within_hourly_caps(session, texting, caps=caps or HourlyCaps.from_settings(
        get_settings()))
    for call, allowance in capped:
        _settle(session, call, MissedCallStatus.refused, refused_reason=allowance.refused_by)
        refusals.append((call, {"reason": allowance.refused_by, "detail": str(allowance.cap)}))
        outcomes[call.id] = _outcome(call, message_ids=(), is_new=True,
                                     cap_reached=allowance if allowance.alert else None)

    threads = threads_for(session, [(clinic, contact, channel)
                                     for _, clinic, contact, channel in texting])
    for call, clinic, contact, channel in texting:
        thread = threads[contact.id]
        template = _whatsapp_template(clinic=clinic, contact=contact, channel=channel,
                                      now=call.occurred_at)
        body = (template.body if template else
                wording.compose(clinic=clinic, contact=contact, now=call.occurred_at))
        messages = enqueue(session, clinic=clinic, channel=channel, to_number=contact.phone,
                           body=body, author="bot", thread=thread, contact=contact,
                           content_sid=template.content_sid if template else None,
                           content_variables=template.content_variables if template else None)
        _settle(session, call, MissedCallStatus.texted, texted_at=call.occurred_at,
                thread_id=thread.id)
        outcomes[call.id] = _outcome(call, message_ids=tuple(m.id for m in messages),
                                     is_new=True, thread=thread, channel=channel)

    now = utcnow()
    session.execute(insert(FunnelEvent), [
        *({"clinic_id": call.clinic_id, "kind": "missed", "contact_id": call.contact_id,
           "thread_id": None, "occurred_at": call.occurred_at,
           "detail": {"source": call.source, "dial_status": call.dial_status}}
          for call in calls),
        *({"clinic_id": clinic.id, "kind": "texted", "contact_id": contact.id,
           "thread_id": threads[contact.id].id, "occurred_at": now,
           "detail": {"channel": channel.value}}
          for _, clinic, contact, channel in texting),
        *({"clinic_id": call.clinic_id, "kind": "text_back_refused",
           "contact_id": call.contact_id, "thread_id": None, "occurred_at": now,
           "detail": detail}
          for call, detail in refusals)])
    return [outcomes[call.id] for call in calls]


def _within_hourly_caps(session: Session, texting: list[tuple], *, caps: HourlyCaps
                        ) -> tuple[list[tuple], list[tuple[MissedCall, Allowance]]]:
    """The text-backs this hour's caps allow (the earliest calls first), and the calls over a
    cap with the allowance that refused them."""
    if not texting:
        return texting, []
    wanted = Counter(clinic for _, clinic, _, _ in texting)
    allowances = hourly_caps.take(session, wanted=dict(wanted), caps=caps, now=utcnow())
    allowed, capped, taken, told = [], [], Counter(), set()
    for entry in texting:
        call, clinic = entry[0], entry[1]
        allowance = allowances[clinic.id]
        if taken[clinic.id] < allowance.granted:
            taken[clinic.id] += 1
            allowed.append(entry)
            continue
        # Only the clinic's first refused call carries the alert: staff hear of it once.
        capped.append((call, replace(allowance, alert=allowance.alert and clinic.id not in told)))
        told.add(clinic.id)
    return allowed, capped


def _clinics_with_hours(session: Session, clinic_ids: set[int]) -> dict[int, Clinic]:
    """The clinics, with what the wording needs (opening hours, closures) loaded up front."""
    return {clinic.id: clinic for clinic in session.execute(
        select(Clinic).where(Clinic.id.in_(clinic_ids))
        .options(selectinload(Clinic.opening_hours), selectinload(Clinic.closures))).scalars()}


def _last_texted(session: Session, *, contact_ids: list[int], since: datetime
                 ) -> dict[int, datetime]:
    """Per contact, when we last texted them back after a missed call, if since `since`."""
    return dict(session.execute(
        select(MissedCall.contact_id, func.max(MissedCall.texted_at))
        .where(MissedCall.contact_id.in_(contact_ids),
               MissedCall.status == MissedCallStatus.texted, MissedCall.texted_at >= since)
        .group_by(MissedCall.contact_id)).all())


def _last_inbound_channels(session: Session, contacts: list[Contact]) -> dict[int, Channel]:
    """Per contact, the channel they last wrote to the clinic on, if they ever did."""
    if not contacts:
        return {}
    owner = {(contact.clinic_id, address): contact.id for contact in contacts
             for address in (contact.phone, f"whatsapp:{contact.phone}")}
    latest = (select(func.max(Message.id))
              .where(Message.direction == Direction.inbound,
                     Message.clinic_id.in_({contact.clinic_id for contact in contacts}),
                     Message.from_number.in_({address for _, address in owner}))
              .group_by(Message.clinic_id, Message.from_number))
    channels: dict[int, tuple[int, Channel]] = {}
    for message_id, clinic_id, from_number, channel in session.execute(
            select(Message.id, Message.clinic_id, Message.from_number, Message.channel)
            .where(Message.id.in_(latest))):
        contact_id = owner.get((clinic_id, from_number))
        if contact_id is not None and message_id > channels.get(contact_id, (0, None))[0]:
            channels[contact_id] = (message_id, channel)
    return {contact_id: channel for contact_id, (_, channel) in channels.items()}


def record_missed_call(
    session: Session,
    *,
    clinic: Clinic,
    caller: str,
    call_sid: str,
    dial_status: str,
    source: str,
    occurred_at: datetime,
) -> MissedCallOutcome:
    """Store a missed call and, when the caller should hear from us, its text-back."""
    recorded = register_missed_call(session, clinic=clinic, caller=caller, call_sid=call_sid,
                                    dial_status=dial_status, source=source,
                                    occurred_at=occurred_at)
    decided = recorded.is_new and text_back(session, missed_call_id=recorded.missed_call_id)
    return decided or _outcome(session.get(MissedCall, recorded.missed_call_id),
                               message_ids=(), is_new=False)


def undecided_missed_calls(session: Session, *, recorded_before: datetime,
                           limit: int = 50) -> list[int]:
    """Calls still pending: their webhook answered, but the process died before deciding."""
    return list(session.execute(
        select(MissedCall.id).where(MissedCall.status == MissedCallStatus.pending,
                                    MissedCall.occurred_at < recorded_before)
        .order_by(MissedCall.id).limit(limit)
    ).scalars())


def _settle(session: Session, missed: MissedCall, status: MissedCallStatus, **values) -> None:
    """Compare-and-set pending -> decided: whoever gets here second rolls back."""
    session.flush()
    changed = session.execute(
        update(MissedCall)
        .where(MissedCall.id == missed.id, MissedCall.status == MissedCallStatus.pending)
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        raise AlreadyDecided(f"missed call {missed.id} was decided elsewhere")
    # The row already holds these values: mirror them without flushing them a second time.
    for key, value in {"status": status, **values}.items():
        set_committed_value(missed, key, value)


def record_answered_call(
    session: Session, *, clinic: Clinic, caller: str, call_sid: str, occurred_at: datetime
) -> None:
    """An answered call is logged too, so the clinic's funnel shows what share was missed."""
    if _find(session, clinic=clinic, call_sid=call_sid) is not None:
        return
    contact = get_or_create_contact(session, clinic=clinic, phone=caller)
    jobs.cancel_pending(session, contact_ids=[contact.id], reason="the patient's call was answered",
                        kinds=jobs.FOLLOW_UPS_AND_OFFERS)
    session.add(MissedCall(clinic_id=clinic.id, contact_id=contact.id, call_sid=call_sid,
                           source="twilio", dial_status="completed",
                           status=MissedCallStatus.answered, occurred_at=occurred_at))
    record_event(session, clinic_id=clinic.id, kind="answered", contact_id=contact.id)


def choose_channel(*, clinic: Clinic, contact: Contact, now: datetime,
                   last_inbound: Channel | None = None) -> Channel:
    """The channel for a text-back: the clinic's policy, bent by what we know of the contact.

    - `sms` policy, or no WhatsApp number: SMS.
    - WhatsApp failed to reach this contact before, or (`whatsapp_then_sms`) they last wrote to
      us by SMS: SMS, if the clinic has an SMS number.
    - WhatsApp outside the 24-hour window needs the clinic's approved template for the moment
      (open, or closed with when it opens); without one, SMS if there is an SMS number.
    - otherwise WhatsApp.
    """
    if clinic.channel_policy == ChannelPolicy.sms or not clinic.whatsapp_number:
        return Channel.sms
    if not clinic.sms_number:
        return Channel.whatsapp
    if contact.whatsapp_unreachable:
        return Channel.sms
    if clinic.channel_policy == ChannelPolicy.whatsapp_then_sms and last_inbound == Channel.sms:
        return Channel.sms
    if not in_whatsapp_window(contact, now) and wording.whatsapp_template(
            clinic=clinic, contact=contact, now=now) is None:
        return Channel.sms
    return Channel.whatsapp


def in_whatsapp_window(contact: Contact, now: datetime) -> bool:
    """Whether WhatsApp still allows free-form text: the patient wrote within 24 hours."""
    last = contact.last_whatsapp_inbound_at
    return last is not None and timedelta(0) <= now - last < WHATSAPP_SESSION_WINDOW


def _whatsapp_template(*, clinic: Clinic, contact: Contact, channel: Channel,
                       now: datetime) -> wording.WhatsAppTemplate | None:
    """Outside the 24-hour window WhatsApp only delivers an approved template (Content API)."""
    if channel != Channel.whatsapp or in_whatsapp_window(contact, now):
        return None
    template = wording.whatsapp_template(clinic=clinic, contact=contact, now=now)
    if template is None:
        raise ValueError(f"clinic {clinic.slug} sends WhatsApp but has no approved text-back "
                         "template for now (settings.whatsapp)")
    return template


def _find(session: Session, *, clinic: Clinic, call_sid: str) -> MissedCall | None:
    return session.execute(
        select(MissedCall).where(MissedCall.clinic_id == clinic.id, MissedCall.call_sid == call_sid)
    ).scalar_one_or_none()


def _outcome(missed: MissedCall, *, message_ids: tuple[int, ...], is_new: bool,
             thread: Thread | None = None, channel: Channel | None = None,
             cap_reached: Allowance | None = None) -> MissedCallOutcome:
    return MissedCallOutcome(
        missed_call_id=missed.id, status=missed.status, message_ids=message_ids,
        sender_id=thread.sender_id if thread else None, thread_id=thread.id if thread else None,
        channel=channel, is_new=is_new, cap_reached=cap_reached,
    )
