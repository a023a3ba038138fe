"""When a clinic is open, in its own wall-clock time; pure functions, DST-correct.

Opening hours are stored as local wall times per weekday, closures as whole local days. Every
question ("open now?", "when do we open next?") converts the instant to the clinic's zone first,
so a clinic that opens at 08:00 opens at 08:00 on both sides of a clock change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

# Far enough to step over a long summer closure, bounded so a clinic with no hours ends quickly.
NEXT_OPENING_SEARCH_DAYS = 400


class _WeeklyInterval(Protocol):
    weekday: int


class _ClosureLike(Protocol):
    starts_on: date
    ends_on: date


def _bounds(interval) -> tuple[time, time]:
    # OpeningHours names them opens/closes, ProviderHours starts/ends.
    if hasattr(interval, "opens"):
        return interval.opens, interval.closes
    return interval.starts, interval.ends


def weekly_table(intervals: Iterable[_WeeklyInterval]) -> dict[int, list[tuple[time, time]]]:
    """{weekday: [(start, end), ...]} sorted, from OpeningHours or ProviderHours rows."""
    table: dict[int, list[tuple[time, time]]] = {day: [] for day in range(7)}
    for interval in intervals:
        table[interval.weekday].append(_bounds(interval))
    for day in table:
        table[day].sort()
    return table


def closed_days(closures: Iterable[_ClosureLike]) -> list[tuple[date, date]]:
    return sorted((closure.starts_on, closure.ends_on) for closure in closures)


def is_closed_on(day: date, closures: list[tuple[date, date]]) -> bool:
    return any(first <= day <= last for first, last in closures)


def local_at(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The instant a local wall time occurs; a time skipped by spring-forward maps past the gap."""
    # fold=0 reads a skipped time with the offset from before the change, which lands it just
    # after the gap (01:30 in London on the spring day becomes 02:30 BST): the clock-reading
    # a person would expect. An ambiguous autumn time takes its first occurrence.
    candidate = datetime.combine(day, wall, tzinfo=zone)
    return candidate.astimezone(timezone.utc).astimezone(zone)


def open_intervals(
    *,
    table: dict[int, list[tuple[time, time]]],
    closures: list[tuple[date, date]],
    zone: ZoneInfo,
    first_day: date,
    last_day: date,
) -> Iterator[tuple[datetime, datetime]]:
    """Open intervals (UTC instants) for each local day from first_day to last_day inclusive."""
    day = first_day
    while day <= last_day:
        if not is_closed_on(day, closures):
            for starts, ends in table[day.weekday()]:
                opens_at = local_at(day, starts, zone).astimezone(timezone.utc)
                closes_at = local_at(day, ends, zone).astimezone(timezone.utc)
                if closes_at > opens_at:
                    yield opens_at, closes_at
        day += timedelta(days=1)


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None:
        raise ValueError("a timezone-aware instant is required")


def is_open_at(clinic, instant: datetime) -> bool:
    """True if the clinic's opening hours cover this instant and the day is not a closure."""
    _require_aware(instant)
    zone = ZoneInfo(clinic.timezone)
    local = instant.astimezone(zone)
    table = weekly_table(clinic.opening_hours)
    closures = closed_days(clinic.closures)
    # Yesterday too, in case an interval ever crosses local midnight after a DST shift.
    for opens_at, closes_at in open_intervals(
        table=table, closures=closures, zone=zone,
        first_day=local.date() - timedelta(days=1), last_day=local.date(),
    ):
        if opens_at <= instant < closes_at:
            return True
    return False


def next_opening(clinic, instant: datetime) -> datetime | None:
    """The next time the clinic opens strictly after instant, in clinic-local time; None if never.

    While the clinic is open this is the start of its next interval (after lunch, or tomorrow).
    """
    _require_aware(instant)
    zone = ZoneInfo(clinic.timezone)
    table = weekly_table(clinic.opening_hours)
    if not any(table.values()):
        return None
    closures = closed_days(clinic.closures)
    first_day = instant.astimezone(zone).date()
    for opens_at, _closes_at in open_intervals(
        table=table, closures=closures, zone=zone,
        first_day=first_day, last_day=first_day + timedelta(days=NEXT_OPENING_SEARCH_DAYS),
    ):
        if opens_at > instant:
            return opens_at.astimezone(zone)
    return None


def current_closing(clinic, instant: datetime) -> datetime | None:
    """When the interval the clinic is open in right now ends (local time); None if closed."""
    _require_aware(instant)
    zone = ZoneInfo(clinic.timezone)
    local_day = instant.astimezone(zone).date()
    for opens_at, closes_at in open_intervals(
        table=weekly_table(clinic.opening_hours), closures=closed_days(clinic.closures),
        zone=zone, first_day=local_day - timedelta(days=1), last_day=local_day,
    ):
        if opens_at <= instant < closes_at:
            return closes_at.astimezone(zone)
    return None
