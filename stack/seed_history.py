"""Synthetic history for a development database, so a newcomer's dashboard has something to show.

Everything made here is marked as made up: calls have source "synthetic" (the dashboard says so
whenever a period holds any), funnel events carry {"synthetic": true}, appointments'
idempotency keys and messages' Twilio ids start with "synthetic-"/"SYNTH", and callers use
numbers reserved for drama and fiction (Ofcom's 020 7946 0xxx and friends; 555-01xx in North
America), so no real person is texted or stored. `ringback seed-history` refuses to run in
production and refuses a clinic that already has synthetic history.

The shape follows what clinics report: most calls in opening hours, peaks at opening and after
lunch, quieter weekends; about a third missed; most text-backs leave within seconds; about
half the patients reply within minutes; most of those are offered times and many book.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session, selectinload

from booking.messaging.conversations import sender_id_for
from booking.models import (
    Appointment,
    AppointmentStatus,
    Channel,
    Clinic,
    Consent,
    Contact,
    Direction,
    Escalation,
    EscalationReason,
    EscalationStatus,
    FunnelEvent,
    Message,
    MessageStatus,
    MissedCall,
    MissedCallStatus,
    Service,
    Thread,
)
from booking.reports.metrics import SYNTHETIC_SOURCE

# Relative call volume by local hour, and by weekday (Monday first).
HOURLY = [0.1, 0.05, 0.05, 0.05, 0.05, 0.1, 0.3, 1.2, 3.5, 4.0, 3.2, 2.8, 2.4, 3.4, 3.0, 2.6,
          2.5, 2.8, 1.6, 0.8, 0.5, 0.4, 0.3, 0.2]
WEEKDAY = [1.3, 1.1, 1.0, 1.0, 0.95, 0.55, 0.3]
MISSED_SHARE = {True: 0.22, False: 0.9}  # by "the clinic is usually open at this hour"
REPEAT_WINDOW = timedelta(minutes=10)
REPLY_SHARE, OFFER_SHARE, BOOK_SHARE = 0.55, 0.78, 0.62
ESCALATE_SHARE, OPT_OUT_SHARE, UNDELIVERED_SHARE = 0.08, 0.02, 0.02
REASONS = [(EscalationReason.human, 0.5), (EscalationReason.billing, 0.25),
           (EscalationReason.not_understood, 0.15), (EscalationReason.urgent, 0.1)]
SYNTHETIC_GB = ["+44207946", "+44113496", "+44114496", "+44115496", "+44116496", "+44117496",
                "+44118496", "+44121496", "+44131496", "+44141496", "+44151496", "+44161496",
                "+44191498"]


class AlreadySeeded(Exception):
    """The clinic has synthetic history already: seeding twice would double it."""


@dataclass(frozen=True)
class Seeded:
    calls: int
    missed: int
    messages: int
    appointments: int
    escalations: int


def synthetic_numbers(country: str, count: int) -> list[str]:
    """Fictional phone numbers: Ofcom's drama ranges, or North America's 555-0100..0199."""
    if country == "GB":
        pool = [f"{prefix}0{n:03d}" for prefix in SYNTHETIC_GB for n in range(1000)]
    else:
        pool = [f"+1{area}55501{n:02d}" for area in range(201, 990) for n in range(100)]
    # A long history runs out of fictional numbers before it runs out of calls: callers repeat.
    return pool[:count]


def _open_hours(clinic: Clinic) -> set[tuple[int, int]]:
    return {(row.weekday, hour) for row in clinic.opening_hours
            for hour in range(row.opens.hour, max(row.closes.hour, row.opens.hour + 1))}


def _lognormal(rng: random.Random, median: float, spread: float = 0.8) -> float:
    return median * rng.lognormvariate(0, spread)


class _Writer:
    """Collects rows for bulk inserts, one list per table."""

    def __init__(self, clinic: Clinic, rng: random.Random, end: datetime):
        self.clinic, self.rng, self.end = clinic, rng, end
        self.calls: list[dict] = []
        self.messages: list[dict] = []
        self.events: list[dict] = []
        self.appointments: list[dict] = []
        self.escalations: list[dict] = []
        self.last_activity: dict[int, datetime] = {}

    def event(self, kind: str, at: datetime, contact: Contact, thread: Thread | None) -> None:
        self.events.append({"clinic_id": self.clinic.id, "kind": kind, "contact_id": contact.id,
                            "thread_id": thread.id if thread else None, "occurred_at": at,
                            "detail": {"synthetic": True}})

    def message(self, thread: Thread, direction: Direction, at: datetime, body: str, *,
                author: str, status: MessageStatus = MessageStatus.delivered) -> None:
        outbound = direction == Direction.outbound
        self.last_activity[thread.id] = max(at, self.last_activity.get(thread.id, at))
        clinic_number = self.clinic.sms_number or "+10000000000"
        self.messages.append({
            "clinic_id": self.clinic.id, "thread_id": thread.id, "direction": direction,
            "channel": Channel.sms, "author": author,
            "from_number": clinic_number if outbound else thread.contact.phone,
            "to_number": thread.contact.phone if outbound else clinic_number,
            "body": body, "twilio_sid": f"SYNTH{uuid.uuid4().hex}",
            "status": status if outbound else MessageStatus.received,
            "attempts": 1 if outbound else 0, "media_count": 0, "created_at": at,
            "sent_at": at if outbound and status != MessageStatus.failed else None,
            "status_updated_at": at})


def _appointment_start(rng: random.Random, booked: datetime, zone: ZoneInfo) -> datetime:
    day = booked.astimezone(zone).date() + timedelta(days=rng.randint(1, 14))
    while day.weekday() >= 5:
        day += timedelta(days=1)
    wall = time(rng.randint(9, 16), rng.choice((0, 15, 30, 45)))
    return datetime.combine(day, wall, tzinfo=zone).astimezone(timezone.utc)


def seed_history(session: Session, *, clinic_slug: str, days: int, end: datetime,
                 missed_per_day: float = 8.0, seed: int = 17) -> Seeded:
    """Write `days` local days of synthetic history for one clinic, ending at `end`."""
    clinic = session.execute(
        select(Clinic).where(Clinic.slug == clinic_slug)
        .options(selectinload(Clinic.opening_hours), selectinload(Clinic.staff),
                 selectinload(Clinic.services).selectinload(Service.providers))
    ).scalar_one_or_none()
    if clinic is None:
        raise LookupError(f"no clinic {clinic_slug!r}")
    if session.execute(select(MissedCall.id).where(
            MissedCall.clinic_id == clinic.id,
            MissedCall.source == SYNTHETIC_SOURCE).limit(1)).first():
        raise AlreadySeeded(f"{clinic.slug} already has synthetic history")
    rng = random.Random(seed)
    zone = ZoneInfo(clinic.timezone)
    open_hours = _open_hours(clinic)
    # Expected calls per day so that missed calls come out at `missed_per_day`.
    mean_missed_share = sum(
        HOURLY[h] * WEEKDAY[d] * MISSED_SHARE[(d, h) in open_hours]
        for d in range(7) for h in range(24)) / sum(HOURLY[h] * WEEKDAY[d]
                                                      for d in range(7) for h in range(24))
    calls_per_day = missed_per_day / mean_missed_share
    # Enough callers that most ring once; some ring again, as real patients do.
    first_day = end.astimezone(zone).date() - timedelta(days=days - 1)
    began = datetime.combine(first_day, time(0), tzinfo=zone).astimezone(timezone.utc)
    callers = _callers(session, clinic, int(max(50, missed_per_day * days * 1.5)), began)
    services = [s for s in clinic.services if s.duration_minutes]
    writer = _Writer(clinic, rng, end)
    last_texted: dict[int, datetime] = {}
    replied_threads: set[int] = set()
    hour_weights = [(d, h, HOURLY[h] * WEEKDAY[d]) for d in range(7) for h in range(24)]
    mean_weight = sum(w for _, _, w in hour_weights) / 7
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        weekday = day.weekday()
        weights = [HOURLY[h] * WEEKDAY[weekday] for h in range(24)]
        expected = calls_per_day * sum(weights) / mean_weight
        for _ in range(_poisson(rng, expected)):
            hour = rng.choices(range(24), weights)[0]
            at = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)),
                                  tzinfo=zone).astimezone(timezone.utc)
            if at >= end:
                continue
            contact, thread = rng.choice(callers)
            missed = rng.random() < MISSED_SHARE[(weekday, hour) in open_hours]
            _call(writer, contact, thread, at, missed=missed, services=services,
                  last_texted=last_texted, replied_threads=replied_threads, zone=zone)
    return _write(session, writer)


def _poisson(rng: random.Random, mean: float) -> int:
    # Sum of a normal approximation is plenty for daily call counts.
    return max(0, round(rng.gauss(mean, mean ** 0.5)))


def _callers(session: Session, clinic: Clinic, count: int,
             began: datetime) -> list[tuple[Contact, Thread]]:
    numbers = synthetic_numbers(clinic.country, count)
    existing = {c.phone: c for c in session.execute(
        select(Contact).where(Contact.clinic_id == clinic.id, Contact.phone.in_(numbers))
    ).scalars()}
    contacts = [existing.get(number) or Contact(clinic_id=clinic.id, phone=number)
                for number in numbers]
    session.add_all(contacts)
    session.flush()
    threads = {t.contact_id: t for t in session.execute(
        select(Thread).where(Thread.contact_id.in_([c.id for c in contacts]))).scalars()}
    for contact in contacts:
        if contact.id not in threads:
            threads[contact.id] = Thread(
                clinic_id=clinic.id, contact_id=contact.id, contact=contact,
                sender_id=sender_id_for(clinic_slug=clinic.slug, phone=contact.phone),
                opened_at=began, last_activity_at=began)
            session.add(threads[contact.id])
    session.flush()
    return [(contact, threads[contact.id]) for contact in contacts]


def _call(w: _Writer, contact: Contact, thread: Thread, at: datetime, *, missed: bool,
          services: list[Service], last_texted: dict[int, datetime], replied_threads: set[int],
          zone: ZoneInfo) -> None:
    rng = w.rng
    row = {"clinic_id": w.clinic.id, "contact_id": contact.id,
           "call_sid": f"SYNTH{uuid.uuid4().hex}", "source": SYNTHETIC_SOURCE,
           "dial_status": "no-answer" if missed else "completed", "occurred_at": at,
           "texted_at": None, "thread_id": None}
    w.calls.append(row)
    if not missed:
        row["status"] = MissedCallStatus.answered
        w.event("answered", at, contact, None)
        return
    w.event("missed", at, contact, None)
    if contact.consent == Consent.opted_out:
        row["status"] = MissedCallStatus.opted_out
        return
    if contact.id in last_texted and at - last_texted[contact.id] < REPEAT_WINDOW:
        row["status"] = MissedCallStatus.duplicate
        return
    last_texted[contact.id] = at
    sent = at + timedelta(seconds=1 + _lognormal(rng, 6, 0.6))
    row.update(status=MissedCallStatus.texted, texted_at=at, thread_id=thread.id)
    undelivered = rng.random() < UNDELIVERED_SHARE
    w.message(thread, Direction.outbound, at + timedelta(seconds=1),
              "Sorry we missed your call. Reply YES to book, or tell us what you need.",
              author="bot",
              status=MessageStatus.undelivered if undelivered else MessageStatus.delivered)
    w.messages[-1]["sent_at"] = sent
    w.event("texted", sent, contact, thread)
    if undelivered or rng.random() > REPLY_SHARE:
        return
    reply = sent + timedelta(seconds=_lognormal(rng, 240, 1.1))
    w.message(thread, Direction.inbound, reply, "Yes please, I'd like to book", author="patient")
    if thread.id not in replied_threads:
        replied_threads.add(thread.id)
        w.event("replied", reply, contact, thread)
    if rng.random() < OPT_OUT_SHARE:
        contact.consent = Consent.opted_out
        contact.consent_changed_at = reply
        w.event("opted_out", reply, contact, thread)
        return
    # Only escalations long settled: synthetic ones must never wait in the live queue.
    if rng.random() < ESCALATE_SHARE and reply + timedelta(hours=3) < w.end:
        _escalate(w, contact, thread, reply + timedelta(seconds=2))
        return
    if rng.random() > OFFER_SHARE:
        w.message(thread, Direction.outbound, reply + timedelta(seconds=2),
                  "Thanks, the team will text you back.", author="bot")
        return
    service = rng.choice(services)
    w.message(thread, Direction.outbound, reply + timedelta(seconds=2),
              "What would you like to book?", author="bot")
    answered = reply + timedelta(seconds=2 + _lognormal(rng, 40, 0.8))
    w.message(thread, Direction.inbound, answered, service.name, author="patient")
    offered = answered + timedelta(seconds=3)
    w.message(thread, Direction.outbound, offered, f"I can offer these {service.name} times:",
              author="bot")
    w.event("offered", offered, contact, thread)
    picked = offered + timedelta(seconds=_lognormal(rng, 90, 0.9))
    w.message(thread, Direction.inbound, picked, "The first one", author="patient")
    if rng.random() > BOOK_SHARE:
        w.message(thread, Direction.outbound, picked + timedelta(seconds=2),
                  "No problem. Text us any time to book.", author="bot")
        return
    w.message(thread, Direction.outbound, picked + timedelta(seconds=2),
              "You're booked. See you then.", author="bot")
    w.event("booked", picked + timedelta(seconds=2), contact, thread)
    starts = _appointment_start(rng, picked, zone)
    if starts + timedelta(hours=1) > w.end:
        status = AppointmentStatus.booked
    else:
        status = rng.choices([AppointmentStatus.completed, AppointmentStatus.no_show,
                              AppointmentStatus.cancelled], [0.88, 0.07, 0.05])[0]
    w.appointments.append({
        "clinic_id": w.clinic.id, "contact_id": contact.id, "service_id": service.id,
        "provider_id": service.providers[0].id if service.providers else None,
        "starts_at": starts, "ends_at": starts + timedelta(minutes=service.duration_minutes),
        "status": status, "source": "bot", "idempotency_key": f"synthetic-{uuid.uuid4().hex}",
        "created_at": picked + timedelta(seconds=2), "updated_at": picked})


def _escalate(w: _Writer, contact: Contact, thread: Thread, at: datetime) -> None:
    reason = w.rng.choices([r for r, _ in REASONS], [p for _, p in REASONS])[0]
    staff = w.rng.choice(w.clinic.staff).id if w.clinic.staff else None
    wait = _lognormal(w.rng, 90 if reason == EscalationReason.urgent else 420, 0.9)
    acknowledged = at + timedelta(seconds=min(wait, 3600))
    resolved = acknowledged + timedelta(minutes=w.rng.randint(3, 60))
    w.escalations.append({
        "clinic_id": w.clinic.id, "thread_id": thread.id, "contact_id": contact.id,
        "reason": reason, "priority": 1 if reason == EscalationReason.urgent else 2,
        "summary": f"Synthetic {reason.value} escalation", "transcript": [],
        "bot_told_patient": "", "opened_at": at,
        "status": EscalationStatus.resolved, "acknowledged_at": acknowledged,
        "resolved_at": resolved, "alert_count": 1, "acknowledged_by_id": staff,
        "resolved_by_id": staff})
    w.event("escalated", at, contact, thread)


def _write(session: Session, w: _Writer) -> Seeded:
    for model, rows in ((MissedCall, w.calls), (Message, w.messages), (FunnelEvent, w.events),
                        (Appointment, w.appointments), (Escalation, w.escalations)):
        for start in range(0, len(rows), 5000):
            session.execute(insert(model), rows[start:start + 5000])
    # Threads sort by their last message in the console, as real ones do.
    if w.last_activity:
        session.execute(update(Thread).where(Thread.id == bindparam("thread_id"))
                        .values(opened_at=bindparam("at"), last_activity_at=bindparam("at"))
                        .execution_options(synchronize_session=False),
                        [{"thread_id": thread_id, "at": at}
                         for thread_id, at in w.last_activity.items()])
    session.flush()
    return Seeded(calls=len(w.calls),
                  missed=sum(1 for c in w.calls if c["status"] != MissedCallStatus.answered),
                  messages=len(w.messages), appointments=len(w.appointments),
                  escalations=len(w.escalations))

