"""Reporting periods in a clinic's own calendar: today, the last N days, a custom range, and
the period of the same length just before, which every figure is compared with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

PRESET_DAYS = {"today": 1, "7d": 7, "30d": 30, "90d": 90}
DEFAULT_PRESET = "30d"
# A custom range is read row by row for its charts: a bound keeps one request affordable.
LONGEST_CUSTOM_DAYS = 366


class BadPeriod(ValueError):
    """A custom range that cannot be reported on; the message says why, for the user."""


@dataclass(frozen=True)
class Period:
    """[since, until) in UTC, with the clinic's zone so days and hours are local ones."""

    since: datetime
    until: datetime
    zone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def previous(self) -> Period:
        """The period of the same length that ends where this one starts."""
        return Period(since=self.since - (self.until - self.since), until=self.since,
                      zone=self.zone)

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz)

    def days(self) -> list[date]:
        """Every local day the period touches, in order."""
        first = self.local(self.since).date()
        last = self.local(self.until - timedelta(microseconds=1)).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def local_midnight(day: date, zone: str) -> datetime:
    """The UTC instant a local day starts (23 or 25 hours before the next on DST days)."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)


def last_days(days: int, *, now: datetime, zone: str) -> Period:
    """Today so far and the whole `days - 1` local days before it."""
    today = now.astimezone(ZoneInfo(zone)).date()
    return Period(since=local_midnight(today - timedelta(days=days - 1), zone), until=now,
                  zone=zone)


def custom(first: date, last: date, *, zone: str) -> Period:
    """Whole local days from `first` to `last`, both included."""
    if last < first:
        raise BadPeriod("the period ends before it starts")
    if (last - first).days + 1 > LONGEST_CUSTOM_DAYS:
        raise BadPeriod(f"choose at most {LONGEST_CUSTOM_DAYS} days")
    return Period(since=local_midnight(first, zone),
                  until=local_midnight(last + timedelta(days=1), zone), zone=zone)


def choose(preset: str | None, *, first: str | None = None, last: str | None = None,
           now: datetime, zone: str) -> tuple[str, Period]:
    """The period a request asks for: a preset name, or "custom" with ISO dates."""
    if preset == "custom":
        try:
            first_day, last_day = date.fromisoformat(first or ""), date.fromisoformat(last or "")
        except ValueError as exc:
            raise BadPeriod("give both dates of a custom period as YYYY-MM-DD") from exc
        return "custom", custom(first_day, last_day, zone=zone)
    name = preset or DEFAULT_PRESET
    if name not in PRESET_DAYS:
        raise BadPeriod(f"no period {name!r}: choose {', '.join(PRESET_DAYS)} or custom")
    return name, last_days(PRESET_DAYS[name], now=now, zone=zone)
