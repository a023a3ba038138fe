"""The compliance gate: may this started message go now, later, or never?

Every message Ringback starts itself asks `ComplianceGate.decide` first and gets a `Decision`:
send, defer until the next allowed moment, or drop with a reason a person can read. The gate is
pure: no database and no clock; the caller passes `now` and the started messages already sent
to this recipient from this clinic (`history`).

The rules are data (data/outreach_rules.yml; its header explains the keys and layers):
- sending hours in the recipient's local time, with the zone taken from their number where the
  number tells one (`recipient_zone`), else the clinic's. Local times are computed with
  zoneinfo, so "08:00" is 08:00 on the wall clock whichever UTC offset that day has;
- caps per patient per clinic over rolling windows: the 24 hours and the 7 days before the
  moment of sending (not calendar days), and, where a state's law says so, per subject;
- body rules: length in UTF-16 code units as Twilio counts, the clinic's name, opt-out words.

A body that breaks a body rule is dropped (waiting will not fix it). Otherwise the gate looks for
the first moment at which all the time rules pass together (the end of quiet hours, then a cap
freeing up, then quiet hours again, ...) and drops the message when that moment is not before
`expires_at` (a reminder that would arrive after the appointment).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import phonenumbers
import yaml
from phonenumbers import timezone as number_timezones
from pydantic import BaseModel, ValidationError, conint, constr, validator

from booking.clinics.config import parse_clock
from booking.messaging.outbox import text_length
from booking.settings import PROJECT_ROOT

RULES_FILE = PROJECT_ROOT / "data" / "outreach_rules.yml"
DEFAULT_PROFILE = "default"
DAY = timedelta(hours=24)
WEEK = timedelta(days=7)
UNKNOWN_ZONE = "Etc/Unknown"  # what phonenumbers answers for a number it cannot place


class OutreachRulesError(ValueError):
    """The rules file or a clinic's overrides cannot be read; the message names the field."""


class Verdict(str, enum.Enum):
    send = "send"
    defer = "defer"
    drop = "drop"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str  # plain English for the console
    until: datetime | None = None  # UTC; for defer: the next moment the message may go


@dataclass(frozen=True)
class SentBefore:
    """A message Ringback started earlier to this recipient from this clinic."""

    sent_at: datetime  # UTC
    subject: str  # e.g. "appointment:42", "call:17"


@dataclass(frozen=True)
class SendingHours:
    """The part of the recipient's day in which a started message may go: [start, end)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> SendingHours:
        start, separator, end = str(text).partition("-")
        if not separator:
            raise ValueError(f"{text!r} is not a span like 08:00-21:00")
        hours = cls(parse_clock(start), parse_clock(end))
        if not hours.start < hours.end:
            raise ValueError(f"{text!r} does not start before it ends")
        return hours

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def quiet_hours(self) -> str:
        return f"{self.end:%H:%M}-{self.start:%H:%M}"

    def narrowed(self, other: SendingHours) -> SendingHours | None:
        """The hours both allow; None when they do not overlap."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        return SendingHours(start, end) if start < end else None

    def next_open(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """`moment` itself when it is inside the hours, else the next start, in UTC."""
        local = moment.astimezone(zone)
        if self.start <= local.time() < self.end:
            return moment
        day = local.date() if local.time() < self.start else local.date() + timedelta(days=1)
        return datetime.combine(day, self.start, tzinfo=zone).astimezone(timezone.utc)


@dataclass(frozen=True)
class Caps:
    """Most started messages per patient per clinic in a rolling window; None: no limit."""

    per_24h: int | None = None
    per_7d: int | None = None
    same_subject_per_24h: int | None = None

    def stricter(self, other: Caps) -> Caps:
        def lower(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)
        return Caps(lower(self.per_24h, other.per_24h), lower(self.per_7d, other.per_7d),
                    lower(self.same_subject_per_24h, other.same_subject_per_24h))


@dataclass(frozen=True)
class BodyRules:
    """What the body of a started message must be; a composer shapes its text with these."""

    max_chars: int | None  # UTF-16 code units, as Twilio counts; None: no limit
    must_name_clinic: bool
    opt_out_words: tuple[str, ...]  # the body must contain one of them (any case)
    opt_out_hint: str  # e.g. "Reply STOP to opt out.": appending it satisfies opt_out_words

    def problems(self, body: str, *, clinic_name: str) -> list[str]:
        found = []
        length = text_length(body)
        if self.max_chars is not None and length > self.max_chars:
            found.append(f"longer than {self.max_chars} characters ({length})")
        if self.must_name_clinic and _plain(clinic_name) not in _plain(body):
            found.append(f"does not name the clinic ({clinic_name})")
        if self.opt_out_words and not any(
                re.search(rf"\b{re.escape(word)}\b", body, re.IGNORECASE)
                for word in self.opt_out_words):
            found.append(f"no opt-out words (e.g. {self.opt_out_hint!r})")
        return found


def _plain(text: str) -> str:
    """For finding a name in a text: case, runs of spaces and curly apostrophes ignored."""
    return " ".join(text.replace("\u2019", "'").casefold().split())


# -- the rules file and a clinic's overrides -------------------------------------------------


def _valid_hours(cls, value: str | None) -> str | None:
    if value is not None:
        SendingHours.parse(value)
    return value


class _Strict(BaseModel):
    class Config:
        extra = "forbid"


class _CapsSpec(_Strict):
    per_24h: conint(ge=1) | None = None
    per_7d: conint(ge=1) | None = None
    same_subject_per_24h: conint(ge=1) | None = None


class _BodySpec(_Strict):
    max_chars: conint(ge=1) | None = None
    name_clinic: bool = False
    opt_out_words: list[constr(strip_whitespace=True, min_length=1)] = []
    opt_out_hint: str = ""


class _Overrides(_Strict):
    """A clinic's own settings (settings.outreach.compliance): they replace its profile's."""

    sending_hours: str | None = None
    caps: Literal[False] | _CapsSpec | None = None
    body: _BodySpec | None = None

    _hours = validator("sending_hours", allow_reuse=True)(_valid_hours)


class _ProfileSpec(_Overrides):
    countries: list[constr(regex=r"^[A-Z]{2}$")] = []
    sending_hours: str
    caps: _CapsSpec = _CapsSpec()
    body: _BodySpec


class _RegionSpec(_Strict):
    """A law where the recipient's number is; it can only make the rules stricter."""

    name: constr(min_length=1)
    law: str = ""
    country_code: conint(ge=1)
    area_codes: list[conint(ge=1)]
    sending_hours: str | None = None
    caps: _CapsSpec = _CapsSpec()

    _hours = validator("sending_hours", allow_reuse=True)(_valid_hours)


class _RulesFile(_Strict):
    version: Literal["1"]
    profiles: dict[str, _ProfileSpec]
    regions: list[_RegionSpec] = []

    @validator("profiles")
    def _one_profile_per_country(cls, profiles: dict[str, _ProfileSpec]) -> dict:
        if DEFAULT_PROFILE not in profiles:
            raise ValueError(f"needs a {DEFAULT_PROFILE!r} profile")
        seen: dict[str, str] = {}
        for name, profile in profiles.items():
            for country in profile.countries:
                if country in seen:
                    raise ValueError(f"{country} is in both {seen[country]!r} and {name!r}")
                seen[country] = name
        return profiles


def _error_text(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}"
                     for item in error.errors())


def check_clinic_rules(clinic_rules: dict[str, Any]) -> None:
    """Raise OutreachRulesError naming the field when a clinic's overrides are wrong (for
    loading clinic config: a typo must stop start-up, not silently turn a rule off)."""
    _overrides(clinic_rules)


def _overrides(clinic_rules: dict[str, Any]) -> _Overrides:
    try:
        return _Overrides.parse_obj(clinic_rules or {})
    except ValidationError as error:
        raise OutreachRulesError(f"clinic outreach compliance: {_error_text(error)}") from None


# -- the zone a number tells -------------------------------------------------------------------


@dataclass(frozen=True)
class _Place:
    """What a number tells of where its owner is."""

    country_code: int
    national: str  # the national number's digits: area code first in North America
    zones: tuple[str, ...]  # IANA zones phonenumbers places it in; () when it cannot


# Parsing dominates a decision's cost; a patient's number comes back for every message.
@lru_cache(maxsize=16384)
def _place(phone: str) -> _Place | None:
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None
    zones = number_timezones.time_zones_for_number(number)
    return _Place(number.country_code, str(number.national_number),
                  tuple(zone for zone in zones if zone != UNKNOWN_ZONE))


@lru_cache(maxsize=256)
def _same_offsets_all_year(zones: tuple[str, ...], year: int) -> bool:
    """Do these zones show the same UTC offset at every hour of `year`?"""
    infos = [ZoneInfo(zone) for zone in zones]
    start = datetime.combine(date(year, 1, 1), time(), tzinfo=timezone.utc)
    for hour in range(366 * 24):
        moment = start + timedelta(hours=hour)
        if len({moment.astimezone(info).utcoffset() for info in infos}) > 1:
            return False
    return True


# -- the gate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Region:
    name: str
    country_code: int
    area_codes: frozenset[str]
    sending_hours: SendingHours | None
    caps: Caps

    def covers(self, place: _Place) -> bool:
        return (place.country_code == self.country_code
                and any(place.national.startswith(code) for code in self.area_codes))


@dataclass(frozen=True)
class _Profile:
    countries: frozenset[str]
    sending_hours: SendingHours
    caps: Caps
    body: BodyRules


@dataclass(frozen=True)
class _Rules:
    """The rules for one recipient of one clinic, all layers applied."""

    sending_hours: SendingHours | None  # None: the layers leave no time of day
    caps: Caps
    body: BodyRules
    hours_laws: str  # the regions whose law set the hours, e.g. "Florida", for reasons
    subject_cap_laws: str  # the same for the per-subject cap


def _caps(spec: _CapsSpec) -> Caps:
    return Caps(spec.per_24h, spec.per_7d, spec.same_subject_per_24h)


def _body(spec: _BodySpec) -> BodyRules:
    return BodyRules(spec.max_chars, spec.name_clinic, tuple(spec.opt_out_words),
                     spec.opt_out_hint)


class ComplianceGate:
    def __init__(self, profiles: dict[str, _Profile], regions: list[_Region]) -> None:
        self._profiles = profiles
        self._regions = regions

    @classmethod
    def from_file(cls, path: Path = RULES_FILE) -> ComplianceGate:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            spec = _RulesFile.parse_obj(raw)
        except ValidationError as error:
            raise OutreachRulesError(f"{path}: {_error_text(error)}") from None
        except yaml.YAMLError as error:
            raise OutreachRulesError(f"{path}: not YAML: {error}") from None
        profiles = {
            name: _Profile(frozenset(profile.countries), SendingHours.parse(profile.sending_hours),
                           _caps(profile.caps), _body(profile.body))
            for name, profile in spec.profiles.items()}
        regions = [
            _Region(region.name, region.country_code,
                    frozenset(str(code) for code in region.area_codes),
                    None if region.sending_hours is None
                    else SendingHours.parse(region.sending_hours),
                    _caps(region.caps))
            for region in spec.regions]
        return cls(profiles, regions)

    def recipient_zone(self, phone: str, *, clinic_timezone: str,
                       at: datetime | None = None) -> ZoneInfo:
        """The recipient's zone from their number where it tells one, else the clinic's.

        A number tells a zone when phonenumbers places it in exactly one, or in several that
        show the same UTC offset at every hour of the year of `at` (default: now), such as
        Europe/London and Europe/Isle_of_Man (then the clinic's zone if it is one of them).
        A US toll-free number, a mobile in a country with several zones, or a number
        phonenumbers cannot place gets the clinic's zone.
        """
        place = _place(phone)
        zones = place.zones if place else ()
        year = (at or datetime.now(timezone.utc)).year
        if zones and (len(zones) == 1 or _same_offsets_all_year(zones, year)):
            # Same clock either way; the clinic's own name for it reads better in reasons.
            return ZoneInfo(clinic_timezone if clinic_timezone in zones else zones[0])
        return ZoneInfo(clinic_timezone)

    def body_rules(self, *, phone: str, clinic_country: str,
                   clinic_rules: dict[str, Any]) -> BodyRules:
        """The body rules for this clinic's country and overrides. `phone` is taken so a
        composer need not change when a region's law adds body rules; today none does."""
        return self._layers(phone=phone, clinic_country=clinic_country,
                            clinic_rules=clinic_rules).body

    def decide(self, *, phone: str, clinic_country: str, clinic_timezone: str,
               clinic_name: str, clinic_rules: dict[str, Any], body: str, subject: str,
               now: datetime, history: list[SentBefore],
               expires_at: datetime | None) -> Decision:
        """Send now, defer until the next moment every rule allows, or drop: the body breaks
        a body rule, or the next allowed moment is not before `expires_at`.

        `history`: the started messages already sent to this number from this clinic, any
        subject (replies and unsent messages left out by the caller); the caps look back 7
        days at most, so older ones may be left out too. All times are timezone-aware.
        """
        now = _utc(now, "now")
        rules = self._layers(phone=phone, clinic_country=clinic_country,
                             clinic_rules=clinic_rules)
        zone = self.recipient_zone(phone, clinic_timezone=clinic_timezone, at=now)
        problems = rules.body.problems(body, clinic_name=clinic_name)
        if problems:
            return Decision(Verdict.drop, "; ".join(problems))
        if rules.sending_hours is None:
            return Decision(Verdict.drop, "the clinic's sending hours and the law in "
                                          f"{rules.hours_laws} leave no time of day to send")
        expires = None if expires_at is None else _utc(expires_at, "expires_at")
        if expires is not None and expires <= now:
            return Decision(Verdict.drop, f"expired at {_local(expires, zone)}")
        moment, holds = _next_allowed(rules, zone, now=now, history=history, subject=subject)
        if moment == now:
            return Decision(Verdict.send, "within sending hours and caps")
        if expires is not None and moment >= expires:
            return Decision(Verdict.drop, "; ".join(holds) + f"; the next allowed moment, "
                            f"{_local(moment, zone)}, is not before it expires at "
                            f"{_local(expires, zone)}")
        return Decision(Verdict.defer, "; ".join(holds), until=moment)

    def _layers(self, *, phone: str, clinic_country: str,
                clinic_rules: dict[str, Any]) -> _Rules:
        """The clinic's profile, its overrides on top, then the law where the number is."""
        profile = next((p for p in self._profiles.values() if clinic_country in p.countries),
                       self._profiles[DEFAULT_PROFILE])
        overrides = _overrides(clinic_rules)
        hours = (profile.sending_hours if overrides.sending_hours is None
                 else SendingHours.parse(overrides.sending_hours))
        caps = profile.caps
        if overrides.caps is False:
            caps = Caps()
        elif overrides.caps is not None:
            caps = replace(caps, **overrides.caps.dict(exclude_unset=True))
        body = profile.body
        if overrides.body is not None:
            body = _body(_BodySpec(**{**_body_spec_fields(body),
                                      **overrides.body.dict(exclude_unset=True)}))
        place = _place(phone)
        laws = [region for region in self._regions if place and region.covers(place)]
        for law in laws:
            caps = caps.stricter(law.caps)
            if hours is not None and law.sending_hours is not None:
                hours = hours.narrowed(law.sending_hours)
        def names(applies: Callable[[_Region], bool]) -> str:
            return ", ".join(law.name for law in laws if applies(law))
        return _Rules(hours, caps, body,
                      hours_laws=names(lambda law: law.sending_hours is not None),
                      subject_cap_laws=names(lambda law: law.caps.same_subject_per_24h is not None))


def _body_spec_fields(body: BodyRules) -> dict[str, Any]:
    return {"max_chars": body.max_chars, "name_clinic": body.must_name_clinic,
            "opt_out_words": list(body.opt_out_words), "opt_out_hint": body.opt_out_hint}


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got {moment!r}")
    return moment.astimezone(timezone.utc)


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return f"{moment.astimezone(zone):%a %d %b %H:%M} {zone.key}"


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class _CapCheck:
    limit: int
    window: timedelta
    sent: tuple[datetime, ...]  # sorted
    describe: str  # e.g. "started message in 7 days"
    law: str = ""  # the regions whose law set the limit, if any

    def freed_at(self, moment: datetime) -> tuple[datetime, int] | None:
        """When enough messages have left the window for one more, and how many are in it
        now; None when there is room at `moment`. A message sent at s counts while
        moment - window < s."""
        inside = [sent for sent in self.sent if moment - self.window < sent]
        if len(inside) < self.limit:
            return None
        return inside[len(inside) - self.limit] + self.window, len(inside)


def _cap_checks(rules: _Rules, history: list[SentBefore],
                subject: str) -> Iterator[_CapCheck]:
    every = tuple(sorted(_utc(item.sent_at, "sent_at") for item in history))
    same = tuple(sorted(_utc(item.sent_at, "sent_at") for item in history
                        if item.subject == subject))
    caps = rules.caps
    if caps.per_24h is not None:
        yield _CapCheck(caps.per_24h, DAY, every, "started message in 24 hours")
    if caps.per_7d is not None:
        yield _CapCheck(caps.per_7d, WEEK, every, "started message in 7 days")
    if caps.same_subject_per_24h is not None:
        yield _CapCheck(caps.same_subject_per_24h, DAY, same,
                        f"message on {subject} in 24 hours", rules.subject_cap_laws)


def _next_allowed(rules: _Rules, zone: ZoneInfo, *, now: datetime, history: list[SentBefore],
                  subject: str) -> tuple[datetime, list[str]]:
    """The first moment from `now` at which every time rule passes, and what held it."""
    checks = list(_cap_checks(rules, history, subject))
    hours = rules.sending_hours
    where = f" ({rules.hours_laws})" if rules.hours_laws else ""
    holds: dict[str, str] = {}
    moment = now
    # Each pass that does not return moves past quiet hours or past at least one sent message
    # in some cap's window, never to come back, so passes are bounded by this.
    for _ in range(2 * (len(checks) * len(history) + 1) + 1):
        later = hours.next_open(moment, zone)
        if later != moment:
            holds.setdefault("quiet", f"quiet hours {hours.quiet_hours} in "
                                      f"{zone.key}{where}")
        for check in checks:
            held = check.freed_at(later)
            if held is not None:
                freed, count = held
                law = f", {check.law}" if check.law else ""
                holds.setdefault(check.describe, f"{_ordinal(count + 1)} {check.describe} "
                                                 f"(limit {check.limit}{law})")
                later = max(later, freed)
        if later == moment:
            return moment, list(holds.values())
        moment = later
    raise RuntimeError("the compliance gate found no moment to send; its bound is wrong")
