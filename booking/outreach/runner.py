"""Running due jobs: check each still makes sense, word it, ask the compliance gate, and store
the message in the outbox (or defer, or drop) in one transaction.

Any number of gateway processes run this. On PostgreSQL each takes its due jobs with
`FOR UPDATE SKIP LOCKED`, so two never hold the same job; on SQLite a pass takes the database's
write lock before it reads, so passes run one after another. A process killed mid-pass commits
nothing: its jobs stay due and the next pass takes them. Sending itself is the outbox's
(stored first, sent until Twilio takes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, false, insert, select, update
from sqlalchemy.orm import Session, selectinload

from booking.calls.recovery import choose_channel, in_whatsapp_window
from booking.messaging.conversations import threads_for
from booking.messaging.outbox import enqueue
from booking.models import (
    Appointment,
    AppointmentStatus,
    Channel,
    Clinic,
    Consent,
    Direction,
    FunnelEvent,
    JobDecision,
    JobKind,
    JobState,
    Message,
    MessageStatus,
    MissedCall,
    ScheduledJob,
    ThreadState,
)
from booking.outreach import wording
from booking.outreach.gate import ComplianceGate, Decision, SentBefore, Verdict
from booking.outreach.planner import SettingsByClinic, reminder_moot_reason

# Caps look back a week; older started messages do not count.
HISTORY = timedelta(days=7)
FUNNEL_KIND = {JobKind.follow_up: "followed_up", JobKind.reminder: "reminded",
               JobKind.rebooking_offer: "rebooking_offered"}


@dataclass(frozen=True)
class Started:
    """A job whose message is now in the outbox."""

    job_id: int
    kind: JobKind
    sender_id: str
    message_ids: tuple[int, ...]


def run_due(session: Session, *, now: datetime, gate: ComplianceGate,
            limit: int = 200) -> list[Started]:
    """Decide up to `limit` due jobs, in the caller's transaction; returns what was sent.

    Decided in memory first, then written together (one flush for the jobs and messages, one
    insert each for the decisions and funnel events): ten thousand reminders due at nine
    o'clock are a few statements per job, not a unit of work each."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks: take its write lock before reading, so no other process
        # can decide these jobs between our read and our commit.
        session.execute(update(ScheduledJob).where(false()).values(deferrals=0))
    jobs = session.execute(
        select(ScheduledJob)
        .where(ScheduledJob.state == JobState.scheduled, ScheduledJob.due_at <= now)
        .order_by(ScheduledJob.due_at, ScheduledJob.id).limit(limit)
        .with_for_update(skip_locked=True, of=ScheduledJob)
        .options(selectinload(ScheduledJob.contact),
                 selectinload(ScheduledJob.thread),
                 selectinload(ScheduledJob.clinic).selectinload(Clinic.opening_hours),
                 selectinload(ScheduledJob.clinic).selectinload(Clinic.closures),
                 selectinload(ScheduledJob.appointment).selectinload(Appointment.service),
                 selectinload(ScheduledJob.appointment).selectinload(Appointment.provider),
                 selectinload(ScheduledJob.appointment).selectinload(Appointment.patient))
    ).scalars().all()
    if not jobs:
        return []
    history = _history(session, contact_ids={job.contact_id for job in jobs}, now=now)
    batch = _Batch(now=now, settings=SettingsByClinic(session))
    with session.no_autoflush:
        for job in jobs:
            _decide(session, job, batch=batch, gate=gate,
                    history=history.setdefault(job.contact_id, []))
    return batch.write(session)


class _Batch:
    """What a pass decided, written together at the end."""

    def __init__(self, *, now: datetime, settings: SettingsByClinic):
        self.now = now
        self.settings = settings  # each clinic's outreach settings, parsed once a pass
        self.decisions: list[dict] = []
        # (job, channel, body, the same-day reminders of the phone's family sent with it)
        self.sends: list[tuple[ScheduledJob, Channel, str, list[ScheduledJob]]] = []

    def settle(self, job: ScheduledJob, outcome: str, reason: str, *,
               until: datetime | None = None, **values) -> None:
        """Change the job (this transaction holds it: see run_due) and record the decision."""
        job.last_reason = reason[:300]
        for key, value in values.items():
            setattr(job, key, value)
        self.decisions.append({"job_id": job.id, "outcome": outcome, "reason": reason[:300],
                               "until": until, "decided_at": self.now})

    def finish(self, job: ScheduledJob, state: JobState, reason: str) -> None:
        self.settle(job, state.value, reason, state=state, finished_at=self.now)

    def write(self, session: Session) -> list[Started]:
        threads = threads_for(session, [(job.clinic, job.contact, channel)
                                        for job, channel, _, _ in self.sends])
        sent = []
        for job, channel, body, together in self.sends:
            thread = threads[job.contact_id]
            messages = enqueue(session, clinic=job.clinic, channel=channel,
                               to_number=job.contact.phone, body=body, author="bot",
                               thread=thread, contact=job.contact, flush=False)
            sent.append((job, together, thread, messages))
        session.flush()  # the messages' ids
        for job, together, thread, messages in sent:
            for each in (job, *together):
                each.thread_id, each.message_id = thread.id, messages[0].id
        session.flush()
        if sent:
            session.execute(insert(FunnelEvent), [
                {"clinic_id": each.clinic_id, "kind": FUNNEL_KIND[each.kind],
                 "contact_id": each.contact_id, "thread_id": thread.id,
                 "detail": {"job_id": each.id}, "occurred_at": self.now}
                for job, together, thread, _ in sent for each in (job, *together)])
        if self.decisions:
            session.execute(insert(JobDecision), self.decisions)
        return [Started(job_id=job.id, kind=job.kind, sender_id=thread.sender_id,
                        message_ids=tuple(m.id for m in messages))
                for job, _, thread, messages in sent]


def _history(session: Session, *, contact_ids: set[int], now: datetime
             ) -> dict[int, list[SentBefore]]:
    """Per contact, the started messages sent to them in the last week."""
    history: dict[int, list[SentBefore]] = {}
    for contact_id, sent_at, subject in session.execute(
            select(ScheduledJob.contact_id, ScheduledJob.finished_at, ScheduledJob.subject)
            .where(ScheduledJob.contact_id.in_(contact_ids),
                   ScheduledJob.state == JobState.sent,
                   ScheduledJob.finished_at >= now - HISTORY)):
        history.setdefault(contact_id, []).append(SentBefore(sent_at=sent_at, subject=subject))
    return history


def _decide(session: Session, job: ScheduledJob, *, batch: _Batch, gate: ComplianceGate,
            history: list[SentBefore]) -> None:
    now = batch.now
    if job.state != JobState.scheduled:
        return  # sent earlier in this pass, with a family member's reminder
    moot = _moot_reason(session, job, now=now)
    if moot is not None:
        batch.finish(job, JobState.cancelled, moot)
        return
    if now >= job.expires_at:
        batch.finish(job, JobState.dropped, "too late to be of use")
        return
    clinic, contact = job.clinic, job.contact
    channel, no_channel = _channel(session, job, now=now, settings=batch.settings)
    if channel is None:
        batch.finish(job, JobState.dropped, no_channel)
        return
    clinic_rules = batch.settings[clinic.id].compliance
    body_rules = gate.body_rules(phone=contact.phone, clinic_country=clinic.country,
                                 clinic_rules=clinic_rules)
    together = _same_day_reminders(session, job) if job.kind == JobKind.reminder else []
    body = _compose(job, together, now=now, max_chars=body_rules.max_chars)
    decision: Decision = gate.decide(
        phone=contact.phone, clinic_country=clinic.country, clinic_timezone=clinic.timezone,
        clinic_name=clinic.name, clinic_rules=clinic_rules, body=body, subject=job.subject,
        now=now, history=history, expires_at=job.expires_at)
    if decision.verdict == Verdict.defer:
        batch.settle(job, "deferred", decision.reason, until=decision.until,
                     due_at=decision.until, deferrals=job.deferrals + 1)
    elif decision.verdict == Verdict.drop:
        batch.finish(job, JobState.dropped, decision.reason)
    else:
        batch.settle(job, "sent", decision.reason or "within the rules", state=JobState.sent,
                     finished_at=now, channel=channel)
        for each in together:
            batch.settle(each, "sent", f"in one message with reminder {job.id} (same day, "
                         "same phone)", state=JobState.sent, finished_at=now, channel=channel)
        batch.sends.append((job, channel, body, together))
        history.append(SentBefore(sent_at=now, subject=job.subject))


def _same_day_reminders(session: Session, job: ScheduledJob) -> list[ScheduledJob]:
    """The phone's other reminders (same step) of appointments on the same local day: a
    family's visits that day get one message, not one each."""
    zone = ZoneInfo(job.clinic.timezone)
    day = job.appointment.starts_at.astimezone(zone).date()
    others = session.execute(
        select(ScheduledJob)
        .where(ScheduledJob.contact_id == job.contact_id, ScheduledJob.id != job.id,
               ScheduledJob.kind == JobKind.reminder, ScheduledJob.step == job.step,
               ScheduledJob.state == JobState.scheduled)
        .with_for_update(skip_locked=True, of=ScheduledJob)
        .options(selectinload(ScheduledJob.appointment).selectinload(Appointment.service),
                 selectinload(ScheduledJob.appointment).selectinload(Appointment.patient))
    ).scalars().all()
    return [other for other in others
            if other.state == JobState.scheduled  # not already sent in this pass
            and other.appointment.status == AppointmentStatus.booked
            and other.appointment.starts_at == other.subject_at
            and other.appointment.starts_at.astimezone(zone).date() == day]


def _compose(job: ScheduledJob, together: list[ScheduledJob], *, now: datetime,
             max_chars: int | None) -> str:
    if job.kind == JobKind.follow_up:
        return wording.follow_up(clinic=job.clinic, contact=job.contact, step=job.step,
                                 now=now, max_chars=max_chars)
    if job.kind == JobKind.reminder:
        visits = sorted([job.appointment, *(other.appointment for other in together)],
                        key=lambda appointment: appointment.starts_at)
        return wording.reminder(clinic=job.clinic, contact=job.contact, appointments=visits,
                                max_chars=max_chars)
    return wording.rebooking_offer(clinic=job.clinic, contact=job.contact,
                                   appointment=job.appointment, max_chars=max_chars)


def _moot_reason(session: Session, job: ScheduledJob, *, now: datetime) -> str | None:
    """Why this job no longer makes sense, if it does not."""
    contact, thread = job.contact, job.thread
    if contact.consent == Consent.opted_out:
        return "the patient opted out"
    if job.kind == JobKind.reminder:
        appointment = job.appointment
        if appointment.status != AppointmentStatus.booked:
            return reminder_moot_reason(appointment.status)
        if appointment.starts_at != job.subject_at:
            return "the appointment was moved"
        return None
    if thread is not None and thread.state == ThreadState.handed_off:
        return "staff have the thread"
    booked_since = session.execute(select(exists().where(
        Appointment.contact_id == contact.id, Appointment.created_at > job.subject_at,
        Appointment.status == AppointmentStatus.booked))).scalar()
    if booked_since:
        return "the patient has booked"
    if job.kind == JobKind.follow_up:
        if session.execute(select(exists().where(
                Message.thread_id == job.thread_id, Message.direction == Direction.inbound,
                Message.created_at >= job.subject_at))).scalar():
            return "the patient replied"
        if session.execute(select(exists().where(
                MissedCall.contact_id == contact.id,
                MissedCall.occurred_at > job.subject_at))).scalar():
            return "the patient called again"
    return None


def _channel(session: Session, job: ScheduledJob, *, now: datetime, settings: SettingsByClinic
             ) -> tuple[Channel | None, str]:
    """The channel to start this message on, or None and why there is none."""
    clinic, contact = job.clinic, job.contact
    if job.thread is not None:
        channel = job.thread.channel
    else:
        channel = choose_channel(clinic=clinic, contact=contact, now=now)
    if job.kind == JobKind.follow_up:
        steps = settings[clinic.id].follow_ups
        rule = steps[job.step].channel if job.step < len(steps) else "same"
        if rule == "sms" or (rule == "sms_if_unread" and channel == Channel.whatsapp
                             and not _last_whatsapp_read(session, job)):
            channel = Channel.sms
    if channel == Channel.whatsapp and not in_whatsapp_window(contact, now):
        # Outside WhatsApp's 24-hour window only an approved template may start a chat.
        channel = Channel.sms
    if channel == Channel.sms and not clinic.sms_number:
        return None, "no SMS number to send from, and WhatsApp needs the patient to write first"
    return channel, ""


def _last_whatsapp_read(session: Session, job: ScheduledJob) -> bool:
    status = session.execute(
        select(Message.status)
        .where(Message.thread_id == job.thread_id, Message.direction == Direction.outbound,
               Message.channel == Channel.whatsapp)
        .order_by(Message.id.desc()).limit(1)).scalar_one_or_none()
    return status == MessageStatus.read
