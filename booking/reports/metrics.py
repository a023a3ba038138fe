"""Every figure a clinic measures, for one period, from one set of functions.

The dashboard, its CSV exports and `ringback funnel` all read their numbers here, so they never
disagree. What each figure means is in README.md ("The dashboard"); in short:

1. `clinic_figures` counts the funnel (`funnel.funnel`: missed, answered, texted, replied,
   offered, booked, escalated, opted out, and the follow-up and reminder kinds when they exist),
   times each missed call's text-back and the patient's first reply (`call_timings`), values the
   appointments Ringback booked (`recovered_revenue`), and reads escalations and undeliverable
   messages.
2. `daily_funnel`, `missed_call_heat_map` and `response_time_trend` are the charts' series, by
   the clinic's local day and hour.
3. `open_escalations` is "now", whatever the period.

Counts are by when each thing happened; rates divide two counts of the same period.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from booking.models import (
    Appointment,
    AppointmentStatus,
    Direction,
    Escalation,
    EscalationStatus,
    FunnelEvent,
    Message,
    MessageStatus,
    MissedCall,
    MissedCallStatus,
    Service,
)
from booking.reports.funnel import OUTREACH_STAGES, funnel
from booking.reports.periods import Period, local_midnight
from booking.reports.sql_time import epoch_bucket, later_by, seconds_after

FUNNEL_STAGES = ("missed", "texted", "replied", "offered", "booked")
# Written by follow-ups, reminders and attendance; shown once a clinic has any.
OUTREACH_KINDS = OUTREACH_STAGES
UNDELIVERABLE = (MessageStatus.undelivered, MessageStatus.failed)
# Ringback's own bookings; a reschedule is the same recovered patient, counted once.
RINGBACK_SOURCES = ("bot",)
# `ringback seed-history` marks every call it makes up with this source.
SYNTHETIC_SOURCE = "synthetic"


def percentile(values: list[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default), None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


@dataclass(frozen=True)
class Timing:
    """How long something took, in seconds, over `count` cases."""

    count: int
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        return cls(count=len(seconds), median=percentile(seconds, 0.5),
                   p90=percentile(seconds, 0.9))


class CallTiming(NamedTuple):
    """One missed call that was texted back: when it ended, and after how many seconds the
    text-back left and the patient first wrote (None: not yet, or not within the window).
    A tuple, not a dataclass: a busy clinic's quarter makes thousands per page."""

    occurred_at: datetime
    text_back_seconds: float | None
    reply_seconds: float | None


@dataclass(frozen=True)
class Revenue:
    """The estimated value of what Ringback booked: per-service `value`, else the price
    range's midpoint. Appointments of a service with neither are counted, not valued."""

    amounts: dict[str, float]  # currency -> amount
    appointments: int
    unpriced: int
    attended: int
    no_shows: int


@dataclass(frozen=True)
class Figures:
    period: Period
    counts: dict[str, int]
    text_back_time: Timing
    first_reply_time: Timing
    revenue: Revenue
    escalations_by_reason: dict[str, int]
    acknowledge_time: Timing
    undeliverable: int
    synthetic_calls: int = 0
    outreach: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return self.counts.get(kind, 0)

    @staticmethod
    def _ratio(part: int, whole: int) -> float | None:
        return None if whole == 0 else part / whole

    @property
    def missed(self) -> int:
        return self.count("missed")

    @property
    def answered_rate(self) -> float | None:
        """Answered calls of all calls (answered and missed)."""
        return self._ratio(self.count("answered"), self.count("answered") + self.missed)

    @property
    def reply_rate(self) -> float | None:
        """Threads that replied per text-back sent."""
        return self._ratio(self.count("replied"), self.count("texted"))

    @property
    def recovery_rate(self) -> float | None:
        """Bookings per missed call."""
        return self._ratio(self.count("booked"), self.missed)

    @property
    def escalations(self) -> int:
        return sum(self.escalations_by_reason.values())


def _first_message_after_call(direction: Direction, column, *, within: timedelta):
    """The thread's first `column` of a message in `direction` stored within `within` of the
    call ending (MissedCall.occurred_at is when the dial status arrived)."""
    query = select(func.min(column)).where(
        Message.thread_id == MissedCall.thread_id, Message.direction == direction,
        Message.created_at >= MissedCall.occurred_at,
        Message.created_at < later_by(MissedCall.occurred_at, within))
    if direction == Direction.outbound:
        query = query.where(Message.author == "bot")
    return query.correlate(MissedCall).scalar_subquery()


def missed_calls_in(clinic_id: int, period: Period):
    """The period's missed calls (answered ones are logged in the same table)."""
    return (MissedCall.clinic_id == clinic_id, MissedCall.status != MissedCallStatus.answered,
            MissedCall.occurred_at >= period.since, MissedCall.occurred_at < period.until)


# The text-back is stored as the call is decided (seconds after it; longer only if a crash left
# it to the sweeper); when it left is when Twilio took it.
TEXT_BACK_STORED_WITHIN = timedelta(hours=1)
# A message days later answers a later call, not this one.
REPLY_WITHIN = timedelta(hours=24)
TEXT_BACK_SENT = _first_message_after_call(Direction.outbound, Message.sent_at,
                                           within=TEXT_BACK_STORED_WITHIN)
FIRST_REPLY = _first_message_after_call(Direction.inbound, Message.created_at,
                                        within=REPLY_WITHIN)


def call_timings(session: Session, *, clinic_id: int, period: Period) -> list[CallTiming]:
    """Each missed call of the period that was texted back, with how long its text-back took
    to leave and how long after that the patient first wrote."""
    rows = session.execute(
        select(MissedCall.occurred_at, seconds_after(TEXT_BACK_SENT, MissedCall.occurred_at),
               seconds_after(FIRST_REPLY, MissedCall.occurred_at))
        .where(*missed_calls_in(clinic_id, period), MissedCall.status == MissedCallStatus.texted)
        .order_by(MissedCall.occurred_at)
    ).all()
    # To the millisecond: SQLite's julianday arithmetic is a few microseconds off.
    return [CallTiming(occurred_at=occurred,
                       text_back_seconds=None if sent is None else max(0.0, round(sent, 3)),
                       reply_seconds=(None if sent is None or replied is None
                                      else max(0.0, round(replied - sent, 3))))
            for occurred, sent, replied in rows]


def ringback_bookings(clinic_id: int, period: Period):
    """Appointments Ringback booked in the period and nobody cancelled (a reschedule is the
    same recovered patient: only the first booking counts)."""
    return (Appointment.clinic_id == clinic_id, Appointment.source.in_(RINGBACK_SOURCES),
            Appointment.rescheduled_from_id.is_(None),
            Appointment.status != AppointmentStatus.cancelled,
            Appointment.created_at >= period.since, Appointment.created_at < period.until)


def recovered_revenue(session: Session, *, clinic_id: int, period: Period) -> Revenue:
    """Ringback's bookings of the period and their estimated value."""
    rows = session.execute(
        select(Appointment.status, Service.value, Service.price_min, Service.price_max,
               Service.currency)
        .join(Service, Service.id == Appointment.service_id)
        .where(*ringback_bookings(clinic_id, period))
    ).all()
    amounts: dict[str, float] = defaultdict(float)
    unpriced = 0
    for _, value, price_min, price_max, currency in rows:
        estimate = service_value(value=value, price_min=price_min, price_max=price_max)
        if estimate is None:
            unpriced += 1
        else:
            amounts[currency or ""] += estimate
    statuses = Counter(status for status, *_ in rows)
    return Revenue(amounts=dict(amounts), appointments=len(rows), unpriced=unpriced,
                   attended=statuses[AppointmentStatus.completed],
                   no_shows=statuses[AppointmentStatus.no_show])


def service_value(*, value: int | None, price_min: int | None,
                  price_max: int | None) -> float | None:
    """What one appointment of a service is worth to the clinic, as far as it told us."""
    if value is not None:
        return float(value)
    prices = [price for price in (price_min, price_max) if price is not None]
    return sum(prices) / len(prices) if prices else None


def _escalations(session: Session, *, clinic_id: int, period: Period
                 ) -> tuple[dict[str, int], Timing]:
    rows = session.execute(
        select(Escalation.reason, Escalation.opened_at, Escalation.acknowledged_at)
        .where(Escalation.clinic_id == clinic_id, Escalation.opened_at >= period.since,
               Escalation.opened_at < period.until)
    ).all()
    by_reason = Counter(reason.value for reason, _, _ in rows)
    waits = [max(0.0, (acked - opened).total_seconds()) for _, opened, acked in rows
             if acked is not None]
    return dict(by_reason), Timing.of(waits)


def undeliverable_messages(session: Session, *, clinic_id: int, period: Period) -> int:
    return session.execute(
        select(func.count()).select_from(Message)
        .where(Message.clinic_id == clinic_id, Message.direction == Direction.outbound,
               Message.status.in_(UNDELIVERABLE), Message.created_at >= period.since,
               Message.created_at < period.until)
    ).scalar_one()


def synthetic_calls(session: Session, *, clinic_id: int, period: Period) -> int:
    """Calls `ringback seed-history` made up: the dashboard says so when there are any."""
    return session.execute(
        select(func.count()).select_from(MissedCall)
        .where(*missed_calls_in(clinic_id, period), MissedCall.source == SYNTHETIC_SOURCE)
    ).scalar_one()


def clinic_figures(session: Session, *, clinic_id: int, period: Period,
                   timings: list[CallTiming] | None = None) -> Figures:
    """Every figure of one period (pass `timings` when the caller already read them)."""
    counts = funnel(session, clinic_id=clinic_id, since=period.since, until=period.until).counts
    if timings is None:
        timings = call_timings(session, clinic_id=clinic_id, period=period)
    by_reason, acknowledge_time = _escalations(session, clinic_id=clinic_id, period=period)
    return Figures(
        period=period, counts=counts,
        text_back_time=Timing.of([t.text_back_seconds for t in timings
                                  if t.text_back_seconds is not None]),
        first_reply_time=Timing.of([t.reply_seconds for t in timings
                                    if t.reply_seconds is not None]),
        revenue=recovered_revenue(session, clinic_id=clinic_id, period=period),
        escalations_by_reason=by_reason, acknowledge_time=acknowledge_time,
        undeliverable=undeliverable_messages(session, clinic_id=clinic_id, period=period),
        synthetic_calls=synthetic_calls(session, clinic_id=clinic_id, period=period),
        outreach={kind: counts[kind] for kind in OUTREACH_KINDS if counts.get(kind)},
    )


def open_escalations(session: Session, *, clinic_id: int) -> int:
    """Escalations nobody has acknowledged yet, right now."""
    return session.execute(
        select(func.count()).select_from(Escalation)
        .where(Escalation.clinic_id == clinic_id, Escalation.status == EscalationStatus.open)
    ).scalar_one()


# -- the charts' series -------------------------------------------------------------------


def _bucket(period: Period) -> timedelta:
    """Hours, when the zone's offset is whole hours all period (most zones, always), else
    quarter hours (every offset is a multiple of 15 minutes): slices that never straddle a
    local hour, so counts per slice land in the right local day and hour."""
    for day in period.days():
        offset = period.local(local_midnight(day, period.zone) + timedelta(hours=12)).utcoffset()
        if offset % timedelta(hours=1):
            return timedelta(minutes=15)
    return timedelta(hours=1)


def _slice_counts(session: Session, *, clinic_id: int, period: Period
                  ) -> list[tuple[str, datetime, int]]:
    """(kind, local start of the slice, events) for the funnel stages in the period; a
    thread's offers count once, at its first offer, as in `funnel.funnel`."""
    size = _bucket(period)
    bucket = epoch_bucket(FunnelEvent.occurred_at, size)
    in_period = (FunnelEvent.clinic_id == clinic_id, FunnelEvent.occurred_at >= period.since,
                 FunnelEvent.occurred_at < period.until)
    rows = session.execute(
        select(FunnelEvent.kind, bucket, func.count())
        .where(*in_period, FunnelEvent.kind.in_(FUNNEL_STAGES), FunnelEvent.kind != "offered")
        .group_by(FunnelEvent.kind, bucket)
    ).all()
    first_offers = (select(func.min(FunnelEvent.occurred_at).label("at"))
                    .where(*in_period, FunnelEvent.kind == "offered")
                    .group_by(FunnelEvent.thread_id).subquery())
    offered = epoch_bucket(first_offers.c.at, size)
    rows += [("offered", n, count) for n, count in session.execute(
        select(offered, func.count()).group_by(offered))]
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    starts: dict[int, datetime] = {}
    for _, n, _ in rows:
        if n not in starts:
            starts[n] = period.local(epoch + size * n)
    return [(kind, starts[n], count) for kind, n, count in rows]


@dataclass(frozen=True)
class DayFunnel:
    day: date
    counts: dict[str, int]


def daily_funnel(session: Session, *, clinic_id: int, period: Period) -> list[DayFunnel]:
    """The funnel stages per local day of the period; they add up to the period's."""
    return _by_day(_slice_counts(session, clinic_id=clinic_id, period=period), period)


def _by_day(slices: list[tuple[str, datetime, int]], period: Period) -> list[DayFunnel]:
    per_day: dict[date, Counter] = {day: Counter() for day in period.days()}
    for kind, local, count in slices:
        per_day[local.date()][kind] += count
    return [DayFunnel(day=day, counts={stage: counts[stage] for stage in FUNNEL_STAGES})
            for day, counts in per_day.items()]


def missed_call_heat_map(session: Session, *, clinic_id: int, period: Period
                         ) -> list[list[int]]:
    """Missed calls by local weekday (Monday first) and local hour: 7 rows of 24."""
    return _by_weekday_and_hour(_slice_counts(session, clinic_id=clinic_id, period=period))


def _by_weekday_and_hour(slices: list[tuple[str, datetime, int]]) -> list[list[int]]:
    grid = [[0] * 24 for _ in range(7)]
    for kind, local, count in slices:
        if kind == "missed":
            grid[local.weekday()][local.hour] += count
    return grid


@dataclass(frozen=True)
class DayTiming:
    day: date
    text_back: Timing
    first_reply: Timing


def response_time_trend(timings: list[CallTiming], *, period: Period) -> list[DayTiming]:
    """Text-back and first-reply times per local day of the call."""
    text_back: dict[date, list[float]] = {day: [] for day in period.days()}
    reply: dict[date, list[float]] = {day: [] for day in period.days()}
    for timing in timings:
        day = period.local(timing.occurred_at).date()
        if timing.text_back_seconds is not None:
            text_back[day].append(timing.text_back_seconds)
        if timing.reply_seconds is not None:
            reply[day].append(timing.reply_seconds)
    return [DayTiming(day=day, text_back=Timing.of(text_back[day]),
                      first_reply=Timing.of(reply[day]))
            for day in text_back]


@dataclass(frozen=True)
class Dashboard:
    current: Figures
    previous: Figures
    open_now: int
    daily: list[DayFunnel]
    heat_map: list[list[int]]
    trend: list[DayTiming]


def dashboard(sessions: Callable[[], Session], *, clinic_id: int, period: Period
              ) -> Dashboard:
    """Everything the dashboard page shows, for a period and the one before it.

    The period, the one before and the charts' counts are read at once, each in its own
    session (`sessions` makes one): the database works on them side by side, which halves a
    busy clinic's 90-day page (bench/dashboard.py)."""
    def current() -> tuple[Figures, list[CallTiming], int]:
        with sessions() as session:
            timings = call_timings(session, clinic_id=clinic_id, period=period)
            return (clinic_figures(session, clinic_id=clinic_id, period=period,
                                   timings=timings),
                    timings, open_escalations(session, clinic_id=clinic_id))

    def previous() -> Figures:
        with sessions() as session:
            return clinic_figures(session, clinic_id=clinic_id, period=period.previous())

    def charts() -> list[tuple[str, datetime, int]]:
        with sessions() as session:
            return _slice_counts(session, clinic_id=clinic_id, period=period)

    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="dashboard") as pool:
        now, before, counts = (pool.submit(current), pool.submit(previous),
                               pool.submit(charts))
        (figures, timings, open_now), slices = now.result(), counts.result()
        return Dashboard(
            current=figures, previous=before.result(), open_now=open_now,
            daily=_by_day(slices, period), heat_map=_by_weekday_and_hour(slices),
            trend=response_time_trend(timings, period=period),
        )
