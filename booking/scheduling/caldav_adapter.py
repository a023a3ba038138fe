"""CalDAV calendars (Nextcloud, iCloud, Fastmail, Radicale, Google's CalDAV endpoint).

The clinic's calendar is the truth about who is busy: every event in a provider's calendar
blocks that provider, whoever put it there. Ringback still keeps an Appointment row (with the
event's UID as external_id) and claims its grid cells, so two Ringback processes can never
book the same time, and the rest of Ringback sees the booking. Events carry as little about
the patient as a receptionist needs: first name and last initial, no phone number, no notes.

Config (clinic.scheduling_config):
    url: https://cloud.example/remote.php/dav   # server or principal URL
    username: ringback
    password_env: RIVERSIDE_CALDAV_PASSWORD    # or `password:` in a development file
    calendars: {dr-amara-patel: /calendars/ringback/amara/}   # provider slug -> calendar URL
    calendar: /calendars/ringback/clinic/      # everything not listed above (optional)
    timeout_seconds: 10
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import caldav
import icalendar
import requests
from caldav.lib import error as caldav_error

from booking.models import Appointment, Patient
from booking.scheduling.availability import CLINIC_RESOURCE, Interval, ServiceRule
from booking.scheduling.base import AdapterConfigError, CalendarUnavailable, SlotUnavailable
from booking.scheduling.ledger import LedgerAdapter

PRODID = "-//Ringback//Missed-call recovery//EN"
DEFAULT_TIMEOUT_SECONDS = 10
_KNOWN_KEYS = {"url", "username", "password", "password_env", "calendars", "calendar",
               "timeout_seconds", "ssl_verify"}
# Everything the network or the server can throw at us that a retry might fix.
_UNREACHABLE = (requests.RequestException, caldav_error.DAVError, OSError)


class CalDAVAdapter(LedgerAdapter):
    """Free/busy from the clinic's CalDAV calendars; bookings written back as events."""

    slug = "caldav"
    title = "CalDAV calendar"
    source = "bot"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client: caldav.DAVClient | None = None
        self._calendars: dict[str, caldav.Calendar] = {}

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        unknown = sorted(set(config) - _KNOWN_KEYS)
        if unknown:
            raise AdapterConfigError(f"unknown CalDAV setting(s): {', '.join(unknown)}")
        if not isinstance(config.get("url"), str) or not config["url"].startswith(
                ("http://", "https://")):
            raise AdapterConfigError("url: the CalDAV server URL (http:// or https://) is "
                                     "required")
        calendars = config.get("calendars", {})
        if not isinstance(calendars, dict) or not all(
                isinstance(v, str) for v in calendars.values()):
            raise AdapterConfigError("calendars: map provider slugs to calendar URLs")
        if not calendars and not config.get("calendar"):
            raise AdapterConfigError("calendars: give at least one calendar (calendars or "
                                     "calendar)")
        env_name = config.get("password_env")
        if env_name is not None and not isinstance(env_name, str):
            raise AdapterConfigError("password_env: the name of an environment variable")

    # -- connection ----------------------------------------------------------------------

    @property
    def client(self) -> caldav.DAVClient:
        if self._client is None:
            password = self.config.get("password")
            if self.config.get("password_env"):
                password = os.environ.get(self.config["password_env"])
                if password is None:
                    raise AdapterConfigError(
                        f"environment variable {self.config['password_env']} is not set")
            self._client = caldav.DAVClient(
                url=self.config["url"], username=self.config.get("username"),
                password=password,
                timeout=self.config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS),
                ssl_verify_cert=self.config.get("ssl_verify", True),
            )
        return self._client

    def calendar_url(self, resource: str) -> str:
        configured = self.config.get("calendars", {}).get(resource) or self.config.get(
            "calendar")
        if configured is None:
            raise AdapterConfigError(f"calendars: no calendar for {resource!r}")
        return urljoin(self.config["url"], configured)

    def _calendar_for(self, resource: str) -> caldav.Calendar:
        url = self.calendar_url(resource)
        if url not in self._calendars:
            self._calendars[url] = self.client.calendar(url=url)
        return self._calendars[url]

    def reload(self) -> None:
        super().reload()
        self._calendars.clear()

    def close(self) -> None:
        if self._client is not None:
            self._client.session.close()
        self._client = None
        self._calendars.clear()

    # -- reading the calendar ------------------------------------------------------------

    def _external_busy(self, *, resources: Iterable[str], start: datetime, end: datetime,
                       ignoring_external_id: str | None = None) -> dict[str, list[Interval]]:
        by_url: dict[str, list[str]] = defaultdict(list)
        for resource in resources:
            by_url[self.calendar_url(resource)].append(resource)
        busy: dict[str, list[Interval]] = defaultdict(list)
        for url, sharing in by_url.items():
            intervals = self._busy_in(self._calendar_for(sharing[0]), start=start, end=end,
                                      ignoring_uid=ignoring_external_id)
            for resource in sharing:
                busy[resource].extend(intervals)
        return busy

    def _busy_in(self, calendar: caldav.Calendar, *, start: datetime, end: datetime,
                 ignoring_uid: str | None = None) -> list[Interval]:
        try:
            # Expanded here, not by the server: Radicale's server-side expansion keeps the
            # first occurrence's UTC offset, moving a weekly 13:00 by an hour after a DST change.
            events = calendar.search(start=start, end=end, event=True, expand="client")
        except _UNREACHABLE as exc:
            raise CalendarUnavailable(f"CalDAV calendar {calendar.url} unreachable: "
                                      f"{exc}") from exc
        intervals = []
        for event in events:
            component = event.icalendar_component
            if ignoring_uid is not None and str(component.get("UID")) == ignoring_uid:
                continue
            interval = self._interval_of(component)
            if interval is not None and interval[0] < end and interval[1] > start:
                intervals.append(interval)
        return intervals

    def _interval_of(self, component) -> Interval | None:
        """The time an event blocks, or None for free/cancelled events."""
        if str(component.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
            return None
        if str(component.get("STATUS", "")).upper() == "CANCELLED":
            return None
        starts = component.get("DTSTART")
        if starts is None:
            return None
        starts_at = self._instant(starts.dt)
        if component.get("DTEND") is not None:
            ends_at = self._instant(component.get("DTEND").dt)
        elif component.get("DURATION") is not None:
            ends_at = starts_at + component.get("DURATION").dt
        elif isinstance(starts.dt, datetime):
            ends_at = starts_at  # RFC 5545: a DATE-TIME with no end takes no time
        else:
            ends_at = self._instant(starts.dt + timedelta(days=1))
        return (starts_at, ends_at) if ends_at > starts_at else None

    def _instant(self, value: date | datetime) -> datetime:
        zone = ZoneInfo(self.timezone)
        if not isinstance(value, datetime):
            # All-day events block the clinic's whole local day.
            value = datetime.combine(value, time(0), tzinfo=zone)
        elif value.tzinfo is None:
            value = value.replace(tzinfo=zone)  # floating time: the clinic's wall clock
        return value.astimezone(timezone.utc)

    # -- writing the calendar ------------------------------------------------------------

    def _write_external(self, *, appointment: Appointment, patient: Patient,
                        rule: ServiceRule, replacing: Appointment | None = None) -> str | None:
        resource = self.calendar.provider_slugs_by_id.get(appointment.provider_id,
                                                          CLINIC_RESOURCE)
        calendar = self._calendar_for(resource)
        # Someone may have typed an event into the calendar since we offered this time.
        if self._busy_in(calendar, start=appointment.starts_at,
                         end=appointment.ends_at + rule.buffer,
                         ignoring_uid=replacing.external_id if replacing else None):
            raise SlotUnavailable(f"{appointment.starts_at.isoformat()} was taken in the "
                                  "clinic's calendar")
        uid = f"ringback-{self.clinic_slug}-{appointment.id}-{uuid.uuid4().hex[:12]}@ringback"
        try:
            calendar.save_event(self._event_ical(uid=uid, appointment=appointment,
                                                 patient=patient, rule=rule))
        except _UNREACHABLE as exc:
            raise CalendarUnavailable(f"could not write to {calendar.url}: {exc}") from exc
        return uid

    def _event_ical(self, *, uid: str, appointment: Appointment, patient: Patient,
                    rule: ServiceRule) -> str:
        document = icalendar.Calendar()
        document.add("prodid", PRODID)
        document.add("version", "2.0")
        event = icalendar.Event()
        event.add("uid", uid)
        event.add("dtstamp", self.clock())
        event.add("dtstart", appointment.starts_at)
        event.add("dtend", appointment.ends_at)
        event.add("summary", f"{rule.name}: {patient_label(patient)}")
        event.add("description", "Booked by text with Ringback. Patient details are in the "
                                 "Ringback console.")
        event.add("status", "CONFIRMED")
        event.add("transp", "OPAQUE")
        event.add("x-ringback-appointment-id", str(appointment.id))
        document.add_component(event)
        return document.to_ical().decode()

    def _remove_external(self, *, appointment: Appointment) -> None:
        if not appointment.external_id:
            return
        resource = self.calendar.provider_slugs_by_id.get(appointment.provider_id,
                                                          CLINIC_RESOURCE)
        calendar = self._calendar_for(resource)
        try:
            calendar.event_by_uid(appointment.external_id).delete()
        except caldav_error.NotFoundError:
            return  # already deleted in the calendar itself: the outcome we wanted
        except _UNREACHABLE as exc:
            raise CalendarUnavailable(f"could not update {calendar.url}: {exc}") from exc


def patient_label(patient: Patient) -> str:
    """'Ann E.': enough for the front desk to greet them, not enough to identify them."""
    first = (patient.first_name or "").strip()
    initial = (patient.last_name or "").strip()[:1]
    if not first:
        return "Patient (via Ringback)"
    return f"{first} {initial}." if initial else first
