"""The dashboard page's read model: each figure of `reports.metrics` beside the previous period,
worded for a practice manager, plus the charts (`charts`) and their tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking.console import charts
from booking.console.auth import ConsoleUser
from booking.models import Clinic
from booking.reports import metrics
from booking.reports.periods import Period

PERIOD_NAMES = {"today": "Today", "7d": "7 days", "30d": "30 days", "90d": "90 days",
                "custom": "Custom"}
CURRENCY_SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€", "AUD": "A$", "CAD": "C$"}
REASON_LABELS = {"urgent": "Urgent", "billing": "Billing", "human": "Asked for a person",
                 "not_understood": "Not understood", "bot_unavailable": "Bot unavailable"}
OUTREACH_LABELS = {"followed_up": "Follow-ups sent",
                   "booked_after_follow_up": "Booked after a follow-up",
                   "reminded": "Reminders sent", "confirmed": "Reminders confirmed",
                   "attended": "Attended", "no_show": "No-shows",
                   "rebooking_offered": "Rebooking offers sent",
                   "rebooked": "Booked after a rebooking offer"}


@dataclass(frozen=True)
class Figure:
    key: str  # the page's data-figure attribute, for tests and styling
    label: str
    now: str
    before: str
    change: str
    meaning: str


def count(value: int) -> str:
    return f"{value:,}"


def rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def money(amounts: dict[str, float]) -> str:
    if not amounts:
        return "–"
    return " + ".join(f"{CURRENCY_SYMBOLS.get(code, code + ' ')}{amount:,.0f}"
                      for code, amount in sorted(amounts.items()))


def _change(now: float | None, before: float | None, *, kind: str) -> str:
    if now is None or before is None:
        return ""
    delta = now - before
    if kind == "rate":
        points = round(delta * 100)
        return "no change" if points == 0 else f"{points:+d} pts"
    if kind == "time":
        return "no change" if round(delta) == 0 else \
            ("+" if delta > 0 else "−") + duration(abs(delta))
    return "no change" if delta == 0 else f"{delta:+,.0f}".replace("-", "−")


def _figure(key: str, label: str, now, before, *, kind: str, meaning: str) -> Figure:
    shown = {"count": count, "rate": rate, "time": duration}[kind]
    return Figure(key, label, shown(now), shown(before), _change(now, before, kind=kind),
                  meaning)


def _timing(key: str, label: str, now: metrics.Timing, before: metrics.Timing, *,
            meaning: str, tail: str) -> list[Figure]:
    """A time's median and 90th percentile, as two figures."""
    return [_figure(f"{key}_median", f"{label}, median", now.median, before.median,
                    kind="time", meaning=meaning),
            _figure(f"{key}_p90", f"{label}, p90", now.p90, before.p90, kind="time",
                    meaning=f"Nine in ten {tail} within this time.")]


@dataclass(frozen=True)
class Section:
    title: str
    figures: list[Figure]


def sections(now: metrics.Figures, before: metrics.Figures, open_now: int) -> list[Section]:
    """The figure cards, grouped as a manager asks: calls, replies, recovery, staff."""
    f = _figure
    calls = Section("Calls and text-backs", [
        f("missed", "Missed calls", now.missed, before.missed, kind="count",
          meaning="Calls that rang out, repeat calls included."),
        f("answered_rate", "Answered", now.answered_rate, before.answered_rate, kind="rate",
          meaning="Answered calls of all calls the phone system reported."),
        f("texted", "Text-backs sent", now.count("texted"), before.count("texted"),
          kind="count", meaning="Missed calls Ringback texted back."),
        f("text_back_refused", "Text-backs refused", now.count("text_back_refused"),
          before.count("text_back_refused"), kind="count",
          meaning="Missed callers not texted for the fraud limits: a country or number type "
          "the clinic does not text, or an hourly cap reached (the missed-calls export says "
          "which)."),
        *_timing("text_back", "Call end to text-back", now.text_back_time,
                 before.text_back_time, meaning="From the call ending to Twilio taking the "
                 "text-back.", tail="text-backs left"),
    ])
    replies = Section("Replies", [
        f("reply_rate", "Reply rate", now.reply_rate, before.reply_rate, kind="rate",
          meaning="Patients who wrote back, per text-back sent."),
        f("first_reply_median", "Time to first reply, median", now.first_reply_time.median,
          before.first_reply_time.median, kind="time",
          meaning="From the text-back leaving to the patient's first message."),
        f("opted_out", "Opt-outs", now.count("opted_out"), before.count("opted_out"),
          kind="count", meaning="Patients who texted STOP."),
        f("undeliverable", "Undeliverable messages", now.undeliverable, before.undeliverable,
          kind="count", meaning="Messages to patients the network refused or lost."),
    ])
    revenue = now.revenue
    recovery = [
        f("booked", "Booked", now.count("booked"), before.count("booked"), kind="count",
          meaning="Appointments Ringback booked."),
        f("recovery_rate", "Recovery rate", now.recovery_rate, before.recovery_rate,
          kind="rate", meaning="Bookings per missed call."),
        Figure("revenue", "Recovered revenue (estimate)", money(revenue.amounts),
               money(before.revenue.amounts), "",
               "Value of Ringback's bookings not cancelled: each service's value, else the "
               "midpoint of its price range."
               + (f" {revenue.unpriced} booking(s) of unpriced services not valued."
                  if revenue.unpriced else "")),
    ]
    if revenue.attended or revenue.no_shows or before.revenue.attended:
        recovery.append(f("attended", "Attended", revenue.attended, before.revenue.attended,
                          kind="count", meaning="Ringback's bookings marked completed."))
    staff = [
        f("escalations", "Escalations", now.escalations, before.escalations, kind="count",
          meaning="Threads handed to staff."),
        *[f(f"escalations_{reason}", f"· {label}", now.escalations_by_reason.get(reason, 0),
            before.escalations_by_reason.get(reason, 0), kind="count",
            meaning=f"Escalations for: {label.lower()}.")
          for reason, label in REASON_LABELS.items()
          if now.escalations_by_reason.get(reason) or before.escalations_by_reason.get(reason)],
        *_timing("acknowledge", "Time to acknowledge", now.acknowledge_time,
                 before.acknowledge_time, meaning="From the escalation to a staff member "
                 "acknowledging it.", tail="escalations were acknowledged"),
        Figure("open_now", "Open now", count(open_now), "", "",
               "Escalations nobody has acknowledged yet, whatever the period."),
    ]
    result = [calls, replies, Section("Recovery", recovery), Section("Staff", staff)]
    outreach = [f(kind, label, now.count(kind), before.count(kind), kind="count",
                  meaning=label + ".")
                for kind, label in OUTREACH_LABELS.items()
                if now.count(kind) or before.count(kind)]
    if outreach:
        result.append(Section("Follow-ups and reminders", outreach))
    return result


@dataclass(frozen=True)
class FunnelStep:
    key: str
    label: str
    count: int
    share: str  # of missed calls


def funnel_steps(now: metrics.Figures) -> list[FunnelStep]:
    labels = {"missed": "Missed", "texted": "Texted back", "replied": "Replied",
              "offered": "Offered times", "booked": "Booked"}
    steps = [(key, labels[key], now.count(key)) for key in metrics.FUNNEL_STAGES]
    if now.revenue.attended or now.revenue.no_shows:
        steps.append(("attended", "Attended", now.revenue.attended))
    missed = now.missed
    return [FunnelStep(key, label, value, rate(value / missed if missed else None))
            for key, label, value in steps]


@dataclass(frozen=True)
class Page:
    clinic: Clinic
    clinics: list[Clinic]
    period: Period
    previous: Period
    sections: list[Section]
    funnel: list[FunnelStep]
    daily: list[tuple[str, dict[str, int]]]
    bars: charts.Chart
    heat: charts.Chart
    heat_rows: list[tuple[str, list[int]]]
    text_back_trend: charts.Chart
    reply_trend: charts.Chart
    trend_rows: list[tuple[str, str, str, int]]
    synthetic_calls: int


def user_clinics(session: Session, user: ConsoleUser) -> list[Clinic]:
    return list(session.execute(
        select(Clinic).where(Clinic.id.in_(user.clinic_ids)).order_by(Clinic.name)).scalars())


def page(sessions: Callable[[], Session], *, clinic: Clinic, clinics: list[Clinic],
         period: Period) -> Page:
    board = metrics.dashboard(sessions, clinic_id=clinic.id, period=period)
    return Page(
        clinic=clinic, clinics=clinics, period=period, previous=period.previous(),
        sections=sections(board.current, board.previous, board.open_now),
        funnel=funnel_steps(board.current),
        daily=[(charts.day_label(day.day), {**day.counts, **charts.segments(day)})
               for day in board.daily],
        bars=charts.funnel_bars(board.daily),
        heat=charts.heat_map(board.heat_map),
        heat_rows=list(zip(charts.WEEKDAYS, board.heat_map, strict=True)),
        text_back_trend=charts.trend(board.trend, series="text_back", divisor=1, unit=" s"),
        reply_trend=charts.trend(board.trend, series="first_reply", divisor=60, unit=" min"),
        trend_rows=[(charts.day_label(day.day), duration(day.text_back.median),
                     duration(day.first_reply.median), day.text_back.count)
                    for day in board.trend],
        synthetic_calls=board.current.synthetic_calls,
    )


def date_range(period: Period) -> str:
    """"1 Nov – 30 Nov 2026", in the clinic's own days."""
    days = period.days()
    start, end = days[0], days[-1]
    if start == end:
        return f"{start.day} {start:%b %Y}"
    return f"{start.day} {start:%b} – {end.day} {end:%b %Y}"
