"""Free-slot arithmetic shared by adapters that keep their own rules: pure, no I/O.

A clinic's rules are loaded once into a `ClinicCalendar` snapshot; `free_slots` then combines
opening hours, provider hours, closures, service duration and buffer, lead time and horizon
with whatever is busy (appointments, external calendar events) supplied by the adapter.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from math import ceil
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from booking.clinics.opening_hours import closed_days, open_intervals, weekly_table
from booking.models import Clinic, Provider, Service
from booking.scheduling.base import InvalidRequest, Slot

# Claims and busy times are counted in cells of this size; durations, buffers and slot steps
# are multiples of it (the clinic loader checks), so the two views never disagree.
GRID = timedelta(minutes=5)
CLINIC_RESOURCE = "clinic"  # the resource booked when a service has no named providers

DEFAULT_MIN_LEAD_MINUTES = 60
DEFAULT_HORIZON_DAYS = 60
DEFAULT_SLOT_STEP_MINUTES = 15

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

Interval = tuple[datetime, datetime]
WeeklyTable = dict[int, list[tuple[time, time]]]


@dataclass(frozen=True)
class ServiceRule:
    id: int
    slug: str
    name: str
    duration: timedelta
    buffer: timedelta
    resources: tuple[str, ...]  # provider slugs, or (CLINIC_RESOURCE,)


@dataclass(frozen=True)
class BookingPolicy:
    min_lead: timedelta = timedelta(minutes=DEFAULT_MIN_LEAD_MINUTES)
    horizon: timedelta = timedelta(days=DEFAULT_HORIZON_DAYS)
    step: timedelta = timedelta(minutes=DEFAULT_SLOT_STEP_MINUTES)

    @classmethod
    def from_settings(cls, settings: Mapping | None) -> BookingPolicy:
        booking = (settings or {}).get("booking") or {}
        return cls(
            min_lead=timedelta(minutes=int(booking.get("min_lead_minutes",
                                                       DEFAULT_MIN_LEAD_MINUTES))),
            horizon=timedelta(days=int(booking.get("horizon_days", DEFAULT_HORIZON_DAYS))),
            step=timedelta(minutes=int(booking.get("slot_step_minutes",
                                                   DEFAULT_SLOT_STEP_MINUTES))),
        )


@dataclass
class ClinicCalendar:
    """Everything slot arithmetic needs about one clinic, detached from any session."""

    clinic_id: int
    zone: ZoneInfo
    opening: WeeklyTable
    closures: list[tuple[date, date]]
    policy: BookingPolicy
    services: dict[str, ServiceRule]
    # provider slug -> weekly hours; None means "whenever the clinic is open"
    provider_hours: dict[str, WeeklyTable | None]
    provider_ids: dict[str, int]
    buffer_by_service_id: dict[int, timedelta] = field(default_factory=dict)
    _working: dict[tuple, list[Interval]] = field(default_factory=dict, repr=False)

    def working_intervals_cached(self, *, resource: str, first_day: date,
                                 last_day: date) -> list[Interval]:
        """working_intervals, remembered: the same fortnight is asked for all day long."""
        key = (resource, first_day, last_day)
        if key not in self._working:
            if len(self._working) > 512:
                self._working.clear()
            self._working[key] = working_intervals(self, resource=resource,
                                                   first_day=first_day, last_day=last_day)
        return self._working[key]

    @property
    def provider_slugs_by_id(self) -> dict[int, str]:
        return {provider_id: slug for slug, provider_id in self.provider_ids.items()}

    def service(self, service) -> ServiceRule:
        slug = getattr(service, "slug", service)
        try:
            return self.services[slug]
        except KeyError:
            raise InvalidRequest(f"unknown service {slug!r}") from None

    def service_by_id(self, service_id: int) -> ServiceRule:
        for rule in self.services.values():
            if rule.id == service_id:
                return rule
        raise InvalidRequest(f"unknown service id {service_id}")

    def resources_for(self, rule: ServiceRule, provider: str | None) -> tuple[str, ...]:
        if provider is None:
            return rule.resources
        if provider not in rule.resources:
            raise InvalidRequest(f"provider {provider!r} does not offer {rule.slug!r}")
        return (provider,)


def load_calendar(session: Session, *, clinic_id: int) -> ClinicCalendar:
    clinic = session.execute(
        select(Clinic)
        .where(Clinic.id == clinic_id)
        .options(
            selectinload(Clinic.opening_hours),
            selectinload(Clinic.closures),
            selectinload(Clinic.services).selectinload(Service.providers),
            selectinload(Clinic.providers).selectinload(Provider.hours),
        )
    ).scalar_one()
    services = {}
    for service in clinic.services:
        resources = tuple(p.slug for p in service.providers) or (CLINIC_RESOURCE,)
        services[service.slug] = ServiceRule(
            id=service.id, slug=service.slug, name=service.name,
            duration=timedelta(minutes=service.duration_minutes),
            buffer=timedelta(minutes=service.buffer_minutes or 0),
            resources=resources,
        )
    return ClinicCalendar(
        clinic_id=clinic.id,
        zone=ZoneInfo(clinic.timezone),
        opening=weekly_table(clinic.opening_hours),
        closures=closed_days(clinic.closures),
        policy=BookingPolicy.from_settings(clinic.settings),
        services=services,
        provider_hours={
            p.slug: (weekly_table(p.hours) if p.hours else None) for p in clinic.providers
        },
        provider_ids={p.slug: p.id for p in clinic.providers},
        buffer_by_service_id={rule.id: rule.buffer for rule in services.values()},
    )


def floor_to_grid(instant: datetime) -> datetime:
    return _EPOCH + ((instant - _EPOCH) // GRID) * GRID


def ceil_to_grid(instant: datetime) -> datetime:
    floored = floor_to_grid(instant)
    return floored if floored == instant else floored + GRID


def grid_cells(start: datetime, end: datetime) -> list[datetime]:
    """Grid cells covering [start, end): what a booking claims."""
    cell, last = floor_to_grid(start), ceil_to_grid(end)
    cells = []
    while cell < last:
        cells.append(cell)
        cell += GRID
    return cells


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint union of intervals."""
    merged: list[list[datetime]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def intersect(left: Sequence[Interval], right: Sequence[Interval]) -> list[Interval]:
    """Intersection of two sorted, disjoint interval lists."""
    out, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        start, end = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if start < end:
            out.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def bookable_window(
    calendar: ClinicCalendar, *, window_start: datetime, window_end: datetime, now: datetime
) -> Interval | None:
    """The part of the asked window inside lead time and horizon, or None."""
    for value in (window_start, window_end, now):
        if value.tzinfo is None:
            raise InvalidRequest("window_start, window_end and now must be timezone-aware")
    start = max(window_start, now + calendar.policy.min_lead)
    end = min(window_end, now + calendar.policy.horizon)
    return (start, end) if start < end else None


def working_intervals(
    calendar: ClinicCalendar, *, resource: str, first_day: date, last_day: date
) -> list[Interval]:
    """When a resource can see patients: clinic open hours, narrowed by the provider's hours."""
    clinic_open = list(open_intervals(table=calendar.opening, closures=calendar.closures,
                                      zone=calendar.zone, first_day=first_day, last_day=last_day))
    hours = calendar.provider_hours.get(resource)
    if hours is None:
        return merge(clinic_open)
    provider_on = list(open_intervals(table=hours, closures=calendar.closures,
                                      zone=calendar.zone, first_day=first_day, last_day=last_day))
    return intersect(merge(clinic_open), merge(provider_on))


def _first_step_at_or_after(instant: datetime, zone: ZoneInfo, step: timedelta) -> datetime:
    # Starts fall on local clock multiples of the step (09:00, 09:15...), as a receptionist would.
    local = instant.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    since_midnight = local.replace(tzinfo=None) - midnight.replace(tzinfo=None)
    steps = -(-since_midnight // step)
    return instant + (midnight.replace(tzinfo=None) + steps * step
                      - local.replace(tzinfo=None))


def _seconds(instant: datetime) -> int:
    """Whole seconds since the epoch, rounded up (a window edge at .5 s excludes .0 s)."""
    return -(-(instant - _EPOCH) // timedelta(seconds=1))


def _instant(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def free_slots(
    calendar: ClinicCalendar,
    *,
    service,
    window_start: datetime,
    window_end: datetime,
    now: datetime,
    busy: Mapping[str, Sequence[Interval]],
    provider: str | None = None,
    limit: int | None = None,
) -> list[Slot]:
    """Slots starting in the window whose time plus buffer is free, earliest first."""
    rule = calendar.service(service)
    resources = calendar.resources_for(rule, provider)
    window = bookable_window(calendar, window_start=window_start, window_end=window_end, now=now)
    if window is None or (limit is not None and limit <= 0):
        return []
    start, end = window
    first_day = start.astimezone(calendar.zone).date() - timedelta(days=1)
    last_day = end.astimezone(calendar.zone).date()
    # The inner loop runs on whole seconds since the epoch: thousands of candidates per call,
    # and integer arithmetic keeps a 14-day search well under the 20 ms budget.
    step = int(calendar.policy.step.total_seconds())
    duration = int(rule.duration.total_seconds())
    occupied = duration + int(rule.buffer.total_seconds())
    grid = int(GRID.total_seconds())
    start_s, end_s = _seconds(start), _seconds(end)
    found: list[tuple[int, int]] = []  # (start second, resource position)
    for position, resource in enumerate(resources):
        taken = merge(
            (int(s.timestamp()) // grid * grid, -(-ceil(e.timestamp()) // grid) * grid)
            for s, e in busy.get(resource, ())
        )
        taken_starts = [s for s, _ in taken]
        for work_start, work_end in calendar.working_intervals_cached(
            resource=resource, first_day=first_day, last_day=last_day
        ):
            if work_end <= start or work_start >= end:
                continue
            # Starts fall on local clock multiples of the step (09:00, 09:15...).
            base = _seconds(_first_step_at_or_after(max(work_start, start), calendar.zone,
                                                    calendar.policy.step))
            candidate = base
            latest = min(_seconds(work_end) - duration, end_s - 1)
            while candidate <= latest:
                # The busy interval that could overlap is the last one starting before our end.
                index = bisect_right(taken_starts, candidate + occupied - 1) - 1
                if index >= 0 and taken[index][1] > candidate:
                    # Jump to the first step at or after the clash ends.
                    candidate = base + -(-(taken[index][1] - base) // step) * step
                    continue
                if candidate >= start_s:
                    found.append((candidate, position))
                candidate += step
    found.sort()
    if limit is not None:
        found = found[:limit]
    return [Slot(starts_at=_instant(second), ends_at=_instant(second + duration),
                 provider=None if resources[position] == CLINIC_RESOURCE
                 else resources[position],
                 service=rule.slug)
            for second, position in found]


__all__ = [
    "CLINIC_RESOURCE", "GRID", "BookingPolicy", "ClinicCalendar", "ServiceRule", "bookable_window",
    "ceil_to_grid", "floor_to_grid", "free_slots", "grid_cells", "intersect", "load_calendar",
    "merge", "working_intervals",
]
