"""Clinic configuration: YAML -> validated schema -> rows, loaded idempotently at start.

A file holds several clinics under `clinics:`. Everything is validated before anything is
written, and every error names the file, the clinic and the field, so a typo stops start-up
with a sentence a clinic manager can act on instead of a half-loaded clinic.
Rows are keyed on slugs (clinic, service, provider, staff): loading the same file twice changes
nothing, and a changed value updates the row in place, keeping its id and its history.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    conint,
    constr,
    root_validator,
    validator,
)
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from booking.clinics.accounts import end_sessions
from booking.messaging.phones import to_e164
from booking.models import (
    Appointment,
    Channel,
    ChannelPolicy,
    Clinic,
    Closure,
    ConsoleAccount,
    ConsoleRole,
    OnCallShift,
    OpeningHours,
    Provider,
    ProviderHours,
    Service,
    StaffMember,
    utcnow,
)

logger = logging.getLogger(__name__)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_ALIASES = {
    **{day: index for index, day in enumerate(WEEKDAYS)},
    **{name: index for index, name in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))},
}
# Booking cells are 5 minutes (booking.scheduling.availability.GRID).
GRID_MINUTES = 5
END_OF_DAY = time.max  # "24:00" in YAML

Slug = constr(regex=r"^[a-z0-9][a-z0-9-]{0,63}$", strict=True)
_password_hasher = PasswordHasher()


class ClinicConfigError(ValueError):
    """A clinic file cannot be loaded; `problems` lists each one as 'file: clinic: field: why'."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid clinic configuration:\n  " + "\n  ".join(problems))


# -- parsing helpers ----------------------------------------------------------------------


def parse_clock(value: Any) -> time:
    """'08:30' -> time(8, 30); '24:00' is the end of the day."""
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 18:00 as the base-60 integer 1080.
        value = f"{value // 60:02d}:{value % 60:02d}"
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", str(value))
    if not match:
        raise ValueError(f"{value!r} is not a time like 08:30")
    hour, minute = int(match[1]), int(match[2])
    if (hour, minute) == (24, 0):
        return END_OF_DAY
    if hour > 23 or minute > 59:
        raise ValueError(f"{value!r} is not a time of day")
    return time(hour, minute)


def parse_interval(value: Any) -> tuple[time, time]:
    """'08:00-12:30' -> (08:00, 12:30); the end must come after the start."""
    if not isinstance(value, str) or value.count("-") != 1:
        raise ValueError(f"{value!r} is not an interval like 08:00-12:30")
    start, end = (parse_clock(part) for part in value.split("-"))
    if end <= start:
        raise ValueError(f"{value!r} ends before it starts")
    return start, end


def parse_weekday(value: Any) -> int:
    key = str(value).strip().lower()
    if key not in _WEEKDAY_ALIASES:
        raise ValueError(f"{value!r} is not a weekday (mon..sun)")
    return _WEEKDAY_ALIASES[key]


def _format_clock(value: time) -> str:
    return "24:00" if value == END_OF_DAY else value.strftime("%H:%M")


WeeklyHours = dict[int, list[tuple[time, time]]]


def _weekly_hours(value: Any) -> WeeklyHours:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("must map weekdays (mon..sun) to lists like ['08:00-12:30']")
    table: WeeklyHours = {}
    for day, intervals in value.items():
        weekday = parse_weekday(day)
        if intervals in (None, "closed", []):
            table[weekday] = []
            continue
        if isinstance(intervals, str):
            intervals = [intervals]
        table[weekday] = sorted(parse_interval(item) for item in intervals)
    return table


# -- the schema ---------------------------------------------------------------------------


class _Strict(BaseModel):
    class Config:
        extra = "forbid"  # a misspelt key is an error, not a silently ignored setting
        allow_population_by_field_name = True


class Numbers(_Strict):
    voice: str | None = None
    sms: str | None = None
    whatsapp: str | None = None
    front_desk: str | None = None


class Price(_Strict):
    min: conint(ge=0) | None = None
    max: conint(ge=0) | None = None
    currency: constr(regex=r"^[A-Z]{3}$") | None = None


def _on_grid(value: int) -> int:
    if value % GRID_MINUTES:
        raise ValueError(f"must be a multiple of {GRID_MINUTES} minutes")
    return value


class ServiceConfig(_Strict):
    slug: Slug
    name: constr(min_length=1, max_length=200)
    synonyms: list[str] = []
    duration_minutes: conint(gt=0, le=720)
    buffer_minutes: conint(ge=0, le=240) = 0
    price: Price | None = None
    value: conint(ge=0) | None = None  # worth to the clinic, for the dashboard's estimate
    preparation_notes: str = ""
    providers: list[str] = []

    _grid = validator("duration_minutes", "buffer_minutes", allow_reuse=True)(_on_grid)


class ProviderConfig(_Strict):
    slug: Slug
    name: constr(min_length=1, max_length=200)
    # Empty: the provider works whenever the clinic is open.
    hours: WeeklyHours = {}
    # Optional, the other way round from services[].providers; both lists are merged.
    services: list[str] = []

    _hours = validator("hours", pre=True, allow_reuse=True)(_weekly_hours)


class StaffConfig(_Strict):
    slug: Slug
    name: constr(min_length=1, max_length=200)
    role: str = "reception"
    phone: str | None = None
    email: constr(regex=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320) | None = None
    alert_channel: Channel = Channel.sms
    backup: bool = False
    billing: bool = False
    # A console log-in (`clinics.accounts`): seeded here, then managed in the console.
    username: constr(min_length=3, max_length=120) | None = None
    password: str | None = None  # development files only; stored as an argon2 hash
    password_hash: str | None = None
    console_role: ConsoleRole = ConsoleRole.staff  # on a new membership only


class OnCallConfig(_Strict):
    staff: str
    days: list[int]
    from_: time = Field(..., alias="from")
    to: time

    @validator("days", pre=True)
    def _days(cls, value: Any) -> list[int]:
        if isinstance(value, str):
            value = [value]
        return [parse_weekday(day) for day in value]

    _clock = validator("from_", "to", pre=True, allow_reuse=True)(parse_clock)


class ClosureConfig(_Strict):
    from_: date = Field(..., alias="from")
    to: date | None = None  # a single day when omitted
    reason: str = ""


class SchedulingConfig(_Strict):
    adapter: Slug = "builtin"
    config: dict[str, Any] = {}


class BookingSettings(BaseModel):
    min_lead_minutes: conint(ge=0) = 60
    horizon_days: conint(ge=1, le=730) = 60
    slot_step_minutes: conint(ge=5, le=240) = 15

    _grid = validator("slot_step_minutes", allow_reuse=True)(_on_grid)


class CancellationSettings(BaseModel):
    notice_hours: conint(ge=0) = 24
    late_fee: str = ""
    # An appointment booked less than this long ago changes without the late-notice terms.
    grace_minutes: conint(ge=0) = 60


class WhatsAppSettings(BaseModel):
    """Approved templates for the first message outside WhatsApp's 24-hour window, each with
    its approved text, so the database and the console show what the patient received.

    Variables: {{1}} the clinic's name, {{2}} the patient's first name or "there"; in the
    closed one also {{3}}, when the clinic opens ("8:00 tomorrow").
    """

    text_back_content_sid: str | None = None
    text_back_body: str | None = None
    text_back_closed_content_sid: str | None = None
    text_back_closed_body: str | None = None

    @root_validator(skip_on_failure=True)
    def _approved_text_given(cls, values: dict) -> dict:
        for key in ("text_back", "text_back_closed"):
            if values.get(f"{key}_content_sid") and not values.get(f"{key}_body"):
                raise ValueError(f"{key}_content_sid needs {key}_body, the template's approved "
                                 "text: it is what the patient reads")
        return values


class EscalationSettings(BaseModel):
    """Staff alerts and what the patient is told on a handover (booking.escalation.escalations)."""

    # An alert nobody acknowledged is repeated after this long, to the backup contact too.
    ack_timeout_minutes: conint(ge=1) = 10
    billing_ack_timeout_minutes: conint(ge=1) = 240
    max_alerts: conint(ge=1, le=20) = 6  # the first alert plus re-alerts
    urgent_callback_minutes: conint(ge=1) = 30  # "will call you back within ..."
    billing_reply_within: str = "within one working day"
    # Wording overrides for the patient's message (defaults in booking.escalation.escalations).
    urgent_callback: str | None = None
    billing_reply: str | None = None
    human_reply: str | None = None
    # Also email alerted staff who have an address (needs SMTP_HOST), and these addresses.
    email_alerts: bool = False
    email_to: list[constr(regex=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)] = []
    # A Slack-compatible incoming webhook (JSON {"text": ...}); it is a secret. Its posts
    # never carry the patient's words or number: a team channel is wider than one phone.
    webhook_url: constr(regex=r"^https?://") | None = None
    # Minimum necessary: whether alerts quote the patient (name, number, their words, what the
    # bot told them) or only say what kind of caller it is and link to the console. Texts go
    # to the on-call clinician's own phone; email passes through mail servers and inboxes.
    patient_words_in_texts: bool = True
    patient_words_in_email: bool = False

    class Config:
        extra = "forbid"  # a misspelt alert setting must not silently turn alerts off


def _iso_country(value: Any) -> Any:
    """An ISO 3166 code as phonenumbers knows it ("gb " -> "GB"); anything else is refused."""
    if isinstance(value, str):
        value = value.strip().upper()
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{value!r} is not an ISO 3166 country code like GB or US")
    return value


class RetentionSettings(BaseModel):
    """How long patients' words are kept (booking.records.retention): message bodies, the
    dialogue's inbox copies, escalation transcripts and Rasa's tracker events. The rows stay
    (the funnel and the dashboard count them); only the words go."""

    message_days: conint(ge=30, le=36500) = 730

    class Config:
        extra = "forbid"


class TextBackSettings(BaseModel):
    """Fraud limits on text-backs (booking.calls.destinations, booking.calls.hourly_caps)."""

    # Countries (ISO 3166 codes) whose numbers are texted back; empty: the clinic's own.
    allowed_countries: list[str] = []
    # Text-backs per clock hour; unset: TEXT_BACK_CLINIC_HOURLY_CAP.
    hourly_cap: conint(ge=0) | None = None

    class Config:
        extra = "forbid"  # a misspelt limit must not silently fall back to the default

    @validator("allowed_countries", each_item=True, pre=True)
    def _country_code(cls, value: Any) -> Any:
        return _iso_country(value)


class OtherLanguageSettings(BaseModel):
    """A message wholly in another language (Spanish): a short reply, or a person takes over."""

    hand_over: bool = False  # pass the thread to staff (someone there speaks it)
    reply: str | None = None  # the wording; defaults in booking.dialogue.languages


class FollowUpStep(BaseModel):
    """One no-reply follow-up, counted from the text-back."""

    after_minutes: conint(ge=1, le=14 * 24 * 60)
    # same: the text-back's channel; sms: always SMS; sms_if_unread: SMS when the message
    # before went by WhatsApp and was not read.
    channel: constr(regex=r"^(same|sms|sms_if_unread)$") = "same"

    class Config:
        extra = "forbid"


class OutreachSettings(BaseModel):
    """Messages Ringback starts itself (booking.outreach): follow-ups, reminders, rebooking."""

    follow_ups: list[FollowUpStep] = [FollowUpStep(after_minutes=30),
                                      FollowUpStep(after_minutes=24 * 60,
                                                   channel="sms_if_unread")]
    max_follow_ups: conint(ge=0, le=5) = 2
    # Hours before the appointment; per service slug where a service needs other ones.
    reminder_hours: list[conint(ge=1, le=30 * 24)] = [48, 24]
    service_reminder_hours: dict[str, list[conint(ge=1, le=30 * 24)]] = {}
    # A no-show gets one rebooking offer the next day at this local time; a cancellation
    # without a new booking, one this many hours later.
    no_show_offer_at: constr(regex=r"^([01]\d|2[0-3]):[0-5]\d$") = "10:00"
    cancellation_offer_after_hours: conint(ge=1, le=14 * 24) = 24
    # Overrides of the compliance gate's rules for this clinic (data/outreach_rules.yml).
    compliance: dict[str, Any] = {}

    class Config:
        extra = "forbid"  # a misspelt setting must not silently change what patients get


class ClinicSettings(BaseModel):
    """Clinic.settings: typed where the code relies on a key, open for the rest."""

    booking: BookingSettings = BookingSettings()
    cancellation: CancellationSettings = CancellationSettings()
    required_patient_fields: list[str] = ["first_name"]
    # Jinja2 message templates, e.g. text_back_open / text_back_closed (booking.calls.text_back).
    templates: dict[str, str] = {}
    # Answers to frequent questions by topic: insurance, payment, parking, ...
    faq: dict[str, str] = {}
    whatsapp: WhatsAppSettings = WhatsAppSettings()
    escalation: EscalationSettings = EscalationSettings()
    outreach: OutreachSettings = OutreachSettings()
    text_back: TextBackSettings = TextBackSettings()
    other_language: OtherLanguageSettings = OtherLanguageSettings()
    retention: RetentionSettings = RetentionSettings()

    class Config:
        extra = "allow"


class ClinicConfig(_Strict):
    slug: Slug
    name: constr(min_length=1, max_length=200)
    timezone: str
    country: constr(regex=r"^[A-Z]{2}$")
    locale: str = "en-GB"
    numbers: Numbers = Numbers()
    ring_timeout_seconds: conint(ge=5, le=60) = 18
    call_screening: bool = False
    channel_policy: ChannelPolicy = ChannelPolicy.sms
    address: str = ""
    emergency_info: str = ""
    out_of_hours_info: str = ""
    opening_hours: WeeklyHours = {}
    closures: list[ClosureConfig] = []
    services: list[ServiceConfig] = []
    providers: list[ProviderConfig] = []
    staff: list[StaffConfig] = []
    on_call: list[OnCallConfig] = []
    scheduling: SchedulingConfig = SchedulingConfig()
    settings: ClinicSettings = ClinicSettings()

    _hours = validator("opening_hours", pre=True, allow_reuse=True)(_weekly_hours)

    @validator("timezone")
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA timezone like Europe/London") from None
        return value

    @validator("country", pre=True)
    def _country_code(cls, value: Any) -> Any:
        return _iso_country(value)


class ClinicFile(_Strict):
    clinics: list[dict[str, Any]]


# -- validation ---------------------------------------------------------------------------


def _location(loc: tuple) -> str:
    text = ""
    for part in loc:
        if part == "__root__":
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + ("from" if part == "from_" else str(part))
    return text or "(clinic)"


def _overlaps(intervals: list[tuple[time, time]]) -> tuple[tuple, tuple] | None:
    ordered = sorted(intervals)
    for before, after in zip(ordered, ordered[1:]):
        if after[0] < before[1]:
            return before, after
    return None


def _interval_text(interval: tuple[time, time]) -> str:
    return f"{_format_clock(interval[0])}-{_format_clock(interval[1])}"


def _cross_check(config: ClinicConfig) -> list[tuple[str, str]]:
    """Checks that need more than one field: overlaps, references, numbers, adapters."""
    problems: list[tuple[str, str]] = []

    def hours_problems(table: WeeklyHours, where: str) -> None:
        for weekday, intervals in table.items():
            clash = _overlaps(intervals)
            if clash:
                problems.append((f"{where}.{WEEKDAYS[weekday]}",
                                 f"{_interval_text(clash[0])} overlaps {_interval_text(clash[1])}"))

    hours_problems(config.opening_hours, "opening_hours")
    if not any(config.opening_hours.values()):
        problems.append(("opening_hours", "no opening hours given"))

    def unique(items: list, kind: str) -> None:
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.slug in seen:
                problems.append((f"{kind}[{index}].slug", f"duplicate slug {item.slug!r}"))
            seen.add(item.slug)

    unique(config.services, "services")
    unique(config.providers, "providers")
    unique(config.staff, "staff")

    provider_slugs = {provider.slug for provider in config.providers}
    for index, provider in enumerate(config.providers):
        hours_problems(provider.hours, f"providers[{index}].hours")
    for index, service in enumerate(config.services):
        for position, slug in enumerate(service.providers):
            if slug not in provider_slugs:
                problems.append((f"services[{index}].providers[{position}]",
                                 f"unknown provider {slug!r}"))
        if service.price and service.price.min is not None and service.price.max is not None \
                and service.price.max < service.price.min:
            problems.append((f"services[{index}].price", "max is below min"))

    service_slugs = {service.slug for service in config.services}
    for index, name in _service_references(config):
        if name not in service_slugs:
            problems.append((index, f"unknown service {name!r}"))

    staff_slugs = {staff.slug for staff in config.staff}
    for index, shift in enumerate(config.on_call):
        if shift.staff not in staff_slugs:
            problems.append((f"on_call[{index}].staff", f"unknown staff member {shift.staff!r}"))
        elif not next(s for s in config.staff if s.slug == shift.staff).phone:
            problems.append((f"on_call[{index}].staff",
                             f"{shift.staff!r} is on call but has no phone"))
        if shift.to == shift.from_:
            problems.append((f"on_call[{index}].to", "a shift must not start and end together"))

    for index, closure in enumerate(config.closures):
        if closure.to is not None and closure.to < closure.from_:
            problems.append((f"closures[{index}].to", "ends before it starts"))

    for field_name in ("voice", "sms", "whatsapp", "front_desk"):
        raw = getattr(config.numbers, field_name)
        if raw is None:
            continue
        try:
            to_e164(raw, default_region=config.country, strict=True)
        except ValueError as exc:
            problems.append((f"numbers.{field_name}", str(exc)))
    for index, staff in enumerate(config.staff):
        if staff.phone is not None:
            try:
                to_e164(staff.phone, default_region=config.country, strict=True)
            except ValueError as exc:
                problems.append((f"staff[{index}].phone", str(exc)))
        if staff.password and staff.password_hash:
            problems.append((f"staff[{index}].password", "give password or password_hash"))
        if (staff.password or staff.password_hash) and not staff.username:
            problems.append((f"staff[{index}].username", "a password needs a username"))

    problems.extend(_scheduling_problems(config.scheduling))
    return problems


def _service_references(config: ClinicConfig) -> list[tuple[str, str]]:
    """Services named by providers (the provider-centric way to link them)."""
    return [(f"providers[{index}].services[{position}]", slug)
            for index, provider in enumerate(config.providers)
            for position, slug in enumerate(provider.services)]


def _scheduling_problems(scheduling: SchedulingConfig) -> list[tuple[str, str]]:
    # Imported here: the registry imports adapters, which import the models, not this module.
    from booking.scheduling.base import AdapterConfigError
    from booking.scheduling.registry import UnknownAdapter, validate_adapter_config

    try:
        validate_adapter_config(scheduling.adapter, scheduling.config)
    except UnknownAdapter as exc:
        return [("scheduling.adapter", str(exc))]
    except AdapterConfigError as exc:
        return [("scheduling.config", str(exc))]
    return []


def parse_clinic_file(path: str | Path) -> list[ClinicConfig]:
    """Read and validate a clinic file; raise ClinicConfigError listing every problem."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClinicConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except yaml.YAMLError as exc:
        raise ClinicConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    if isinstance(document, list):
        document = {"clinics": document}
    try:
        file_model = ClinicFile.parse_obj(document or {})
    except ValidationError:
        raise ClinicConfigError([f"{path}: expected a top-level 'clinics:' list"]) from None

    problems: list[str] = []
    configs: list[ClinicConfig] = []
    for index, raw in enumerate(file_model.clinics):
        label = f"clinic {raw.get('slug')!r}" if raw.get("slug") else f"clinics[{index}]"
        try:
            config = ClinicConfig.parse_obj(raw)
        except ValidationError as exc:
            for error in exc.errors():
                problems.append(f"{path}: {label}: {_location(error['loc'])}: {error['msg']}")
            continue
        clinic_problems = [f"{path}: {label}: {where}: {why}"
                           for where, why in _cross_check(config)]
        problems.extend(clinic_problems)
        if not clinic_problems:
            configs.append(config)
    problems.extend(_file_wide_problems(path, configs))
    if problems:
        raise ClinicConfigError(problems)
    return configs


def _file_wide_problems(path: Path, configs: list[ClinicConfig]) -> list[str]:
    problems = []
    owners: dict[tuple[str, str], int] = {}
    for index, config in enumerate(configs):
        keys = [("slug", config.slug)]
        for field_name in ("voice", "sms", "whatsapp"):
            raw = getattr(config.numbers, field_name)
            if raw:
                keys.append(("number", to_e164(raw, default_region=config.country)))
        keys += [("username", staff.username) for staff in config.staff if staff.username]
        for kind, value in dict.fromkeys(keys):
            owner = owners.setdefault((kind, value), index)
            if owner != index:
                problems.append(f"{path}: clinic {config.slug!r}: {kind} {value!r} is already "
                                f"used by clinic {configs[owner].slug!r}")
    return problems


# -- loading ------------------------------------------------------------------------------


def _assign(row: Any, **values: Any) -> None:
    """Set only what changed, so an unchanged file writes nothing."""
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)


def _replace_children(session: Session, current: list, desired: list[tuple],
                      key, make) -> None:
    """Replace a child collection only if its content differs (no churn of ids)."""
    if sorted(key(row) for row in current) == sorted(desired):
        return
    for row in list(current):
        current.remove(row)
    session.flush()
    for values in desired:
        current.append(make(values))


def _file_password_hash(staff: StaffConfig, account: ConsoleAccount | None,
                        allow_plaintext: bool) -> str | None:
    """The hash the file gives now; the one it gave last time when its password is unchanged
    (a plaintext password is hashed with a new salt each time, so compare by verifying)."""
    if staff.password_hash:
        return staff.password_hash
    if staff.password is None:
        return None
    if not allow_plaintext:
        raise ClinicConfigError([f"staff {staff.slug!r}: plaintext passwords are for "
                                 "development files only; give password_hash"])
    if account is not None and account.file_password_hash:
        try:
            _password_hasher.verify(account.file_password_hash, staff.password)
            return account.file_password_hash
        except (VerificationError, InvalidHashError):
            pass
    return _password_hasher.hash(staff.password)


def _numbers(config: ClinicConfig) -> dict[str, str | None]:
    def e164(raw: str | None) -> str | None:
        return None if raw is None else to_e164(raw, default_region=config.country)

    return {
        "voice_number": e164(config.numbers.voice),
        "sms_number": e164(config.numbers.sms),
        "whatsapp_number": e164(config.numbers.whatsapp),
        "front_desk_number": e164(config.numbers.front_desk),
    }


def _referenced(session: Session, column, ids: list[int]) -> set[int]:
    if not ids:
        return set()
    return set(session.execute(
        select(column).where(column.in_(ids)).group_by(column).having(func.count() > 0)
    ).scalars())


@contextmanager
def _noting_writes(session: Session) -> Iterator[Callable[[], bool]]:
    """Whether the block wrote anything (a flush only runs with something to write)."""
    wrote = False

    def note(*_: Any) -> None:
        nonlocal wrote
        wrote = True

    event.listen(session, "before_flush", note)
    try:
        yield lambda: wrote
    finally:
        event.remove(session, "before_flush", note)


def _apply(session: Session, config: ClinicConfig, *, allow_plaintext_passwords: bool) -> Clinic:
    clinic = session.execute(select(Clinic).where(Clinic.slug == config.slug)).scalar_one_or_none()
    if clinic is None:
        clinic = Clinic(slug=config.slug)
        session.add(clinic)
    with _noting_writes(session) as wrote:
        _apply_config(session, clinic, config,
                      allow_plaintext_passwords=allow_plaintext_passwords)
    if wrote():
        # The clinic's version: long-running processes keep what they read of a clinic's
        # configuration (its services, clinicians, hours) until this changes.
        clinic.updated_at = utcnow()
        session.flush()
    return clinic


def _apply_config(session: Session, clinic: Clinic, config: ClinicConfig, *,
                  allow_plaintext_passwords: bool) -> None:
    _assign(
        clinic, name=config.name, timezone=config.timezone, country=config.country,
        locale=config.locale, ring_timeout_seconds=config.ring_timeout_seconds,
        call_screening=config.call_screening, channel_policy=config.channel_policy,
        address=config.address.strip(), emergency_info=config.emergency_info.strip(),
        out_of_hours_info=config.out_of_hours_info.strip(),
        scheduling_adapter=config.scheduling.adapter,
        scheduling_config=config.scheduling.config, settings=config.settings.dict(),
        **_numbers(config),
    )
    session.flush()

    _replace_children(
        session, clinic.opening_hours,
        [(day, start, end) for day, intervals in config.opening_hours.items()
         for start, end in intervals],
        key=lambda row: (row.weekday, row.opens, row.closes),
        make=lambda v: OpeningHours(weekday=v[0], opens=v[1], closes=v[2]),
    )
    _replace_children(
        session, clinic.closures,
        [(c.from_, c.to or c.from_, c.reason) for c in config.closures],
        key=lambda row: (row.starts_on, row.ends_on, row.reason),
        make=lambda v: Closure(starts_on=v[0], ends_on=v[1], reason=v[2]),
    )

    providers = _apply_providers(session, clinic, config)
    _apply_services(session, clinic, config, providers)
    staff = _apply_staff(session, clinic, config, allow_plaintext_passwords)
    _replace_children(
        session, clinic.on_call_shifts, _on_call_rows(config, staff),
        key=lambda row: (row.staff_id, row.weekday, row.starts, row.ends),
        make=lambda v: OnCallShift(staff_id=v[0], weekday=v[1], starts=v[2], ends=v[3]),
    )
    session.flush()


def _apply_providers(session: Session, clinic: Clinic, config: ClinicConfig) -> dict[str, Provider]:
    by_slug = {provider.slug: provider for provider in clinic.providers}
    for item in config.providers:
        provider = by_slug.get(item.slug)
        if provider is None:
            provider = Provider(slug=item.slug, name=item.name)
            clinic.providers.append(provider)
            by_slug[item.slug] = provider
        _assign(provider, name=item.name)
        _replace_children(
            session, provider.hours,
            [(day, start, end) for day, intervals in item.hours.items()
             for start, end in intervals],
            key=lambda row: (row.weekday, row.starts, row.ends),
            make=lambda v: ProviderHours(weekday=v[0], starts=v[1], ends=v[2]),
        )
    session.flush()
    wanted = {item.slug for item in config.providers}
    gone = [p for slug, p in by_slug.items() if slug not in wanted]
    kept = _referenced(session, Appointment.provider_id, [p.id for p in gone])
    for provider in gone:
        if provider.id in kept:
            # Past appointments still point at them: keep the row, offer no more slots.
            logger.warning("clinic %s: provider %s left the file but has appointments; "
                           "retired (no hours, no services)", clinic.slug, provider.slug)
            provider.hours.clear()
            provider.services.clear()
        else:
            clinic.providers.remove(provider)
            del by_slug[provider.slug]
    return {slug: provider for slug, provider in by_slug.items() if slug in wanted}


def _apply_services(session: Session, clinic: Clinic, config: ClinicConfig,
                    providers: dict[str, Provider]) -> None:
    by_slug = {service.slug: service for service in clinic.services}
    for item in config.services:
        service = by_slug.get(item.slug)
        if service is None:
            service = Service(slug=item.slug, name=item.name,
                              duration_minutes=item.duration_minutes)
            clinic.services.append(service)
            by_slug[item.slug] = service
        price = item.price or Price()
        _assign(service, name=item.name, synonyms=list(item.synonyms),
                duration_minutes=item.duration_minutes, buffer_minutes=item.buffer_minutes,
                price_min=price.min, price_max=price.max, currency=price.currency,
                value=item.value, preparation_notes=item.preparation_notes.strip())
        linked = list(item.providers) + [p.slug for p in config.providers
                                         if item.slug in p.services]
        wanted_providers = [providers[slug] for slug in dict.fromkeys(linked)]
        if [p.slug for p in service.providers] != [p.slug for p in wanted_providers]:
            service.providers = wanted_providers
    session.flush()
    wanted = {item.slug for item in config.services}
    gone = [s for slug, s in by_slug.items() if slug not in wanted]
    kept = _referenced(session, Appointment.service_id, [s.id for s in gone])
    for service in gone:
        if service.id in kept:
            logger.warning("clinic %s: service %s left the file but has appointments; "
                           "retired (no providers, no synonyms)", clinic.slug, service.slug)
            service.providers = []
            service.synonyms = []
        else:
            clinic.services.remove(service)


def _apply_staff(session: Session, clinic: Clinic, config: ClinicConfig,
                 allow_plaintext_passwords: bool) -> dict[str, StaffMember]:
    by_slug = {member.slug: member for member in clinic.staff}
    for item in config.staff:
        member = by_slug.get(item.slug)
        if member is None:
            member = StaffMember(slug=item.slug, name=item.name)
            clinic.staff.append(member)
            by_slug[item.slug] = member
        phone = None if item.phone is None else to_e164(item.phone,
                                                        default_region=config.country)
        _assign(member, name=item.name, role=item.role, phone=phone, email=item.email,
                alert_channel=item.alert_channel, is_backup=item.backup,
                handles_billing=item.billing, from_file=True)
        session.flush()
        if item.username:
            _apply_login(session, member, item, allow_plaintext_passwords)
        elif member.account_id is not None:
            _remove_login(session, member)
    session.flush()
    wanted = {item.slug for item in config.staff}
    for slug, member in list(by_slug.items()):
        if slug in wanted:
            continue
        del by_slug[slug]
        if not member.from_file:
            continue  # made in the console: the console manages it
        # Threads and escalations keep pointing at former staff: keep the row, end their
        # access and alerts instead of deleting it.
        logger.warning("clinic %s: staff member %s left the file; console access and alerts "
                       "removed", clinic.slug, slug)
        _assign(member, is_backup=False, handles_billing=False)
        _remove_login(session, member)
    return by_slug


def _apply_login(session: Session, member: StaffMember, item: StaffConfig,
                 allow_plaintext_passwords: bool) -> None:
    """Seed the person's account and this membership. After that the console owns them: role
    and enabled are set here only on a new membership, and the password only when the file
    itself changes it (an unchanged file never undoes a reset made in the console)."""
    account = session.execute(select(ConsoleAccount).where(
        ConsoleAccount.username == item.username)).scalar_one_or_none()
    file_hash = _file_password_hash(item, account, allow_plaintext_passwords)
    if account is None:
        account = ConsoleAccount(username=item.username, name=item.name,
                                 password_hash=file_hash, file_password_hash=file_hash)
        session.add(account)
        session.flush()
    elif file_hash is not None and file_hash != account.file_password_hash:
        if member.account_id != account.id:
            # Someone else's log-in: a file must not set the password of a person it does
            # not yet seed, which would open their other clinics to whoever wrote it.
            raise ClinicConfigError([f"staff {item.slug!r}: username {item.username!r} "
                                     "already signs in at another clinic; leave out its "
                                     "password (they keep their own) or pick another"])
        account.password_hash = account.file_password_hash = file_hash
        end_sessions(session, account_id=account.id)
    if member.account_id != account.id:
        if member.account_id is not None:  # the file gave this row another username
            end_sessions(session, staff_id=member.id)
        _assign(member, account_id=account.id, console_role=item.console_role,
                console_enabled=True)


def _remove_login(session: Session, member: StaffMember) -> None:
    """No console access through this row any more (the account stays for other clinics)."""
    _assign(member, account_id=None, console_role=None)
    end_sessions(session, staff_id=member.id)


def _on_call_rows(config: ClinicConfig, staff: dict[str, StaffMember]) -> list[tuple]:
    rows = []
    for shift in config.on_call:
        staff_id = staff[shift.staff].id
        for day in shift.days:
            if shift.to > shift.from_:
                rows.append((staff_id, day, shift.from_, shift.to))
            else:
                # An overnight shift (18:00-08:00) is two rows: to midnight, then the next day.
                rows.append((staff_id, day, shift.from_, END_OF_DAY))
                if shift.to != time(0, 0):
                    rows.append((staff_id, (day + 1) % 7, time(0, 0), shift.to))
    return sorted(set(rows))


def load_clinics(session: Session, path: str | Path, *,
                 allow_plaintext_passwords: bool = True) -> list[Clinic]:
    """Validate the file, then create or update its clinics; the caller commits.

    Nothing is written when the file is invalid (ClinicConfigError). Writes happen in a
    savepoint, so a database refusal (a number another clinic already uses) leaves the
    session as it was and is reported as a ClinicConfigError too.
    """
    configs = parse_clinic_file(path)
    try:
        with session.begin_nested():
            clinics = [_apply(session, config,
                              allow_plaintext_passwords=allow_plaintext_passwords)
                       for config in configs]
    except IntegrityError as exc:
        raise ClinicConfigError(
            [f"{path}: the database refused the clinics: {exc.orig}"]) from exc
    except ClinicConfigError as exc:
        raise ClinicConfigError([f"{path}: {problem}" for problem in exc.problems]) from None
    return clinics


def load_clinics_file(*, database_url: str, path: str | Path,
                      allow_plaintext_passwords: bool | None = None) -> list[str]:
    """Load a clinic file into the database at database_url and commit; returns the slugs.

    Plaintext passwords are refused in production unless explicitly allowed.
    """
    from booking.db import make_engine, session_factory
    from booking.settings import get_settings

    if allow_plaintext_passwords is None:
        allow_plaintext_passwords = not get_settings().is_production
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            clinics = load_clinics(session, path,
                                   allow_plaintext_passwords=allow_plaintext_passwords)
            slugs = [clinic.slug for clinic in clinics]
            session.commit()
        return slugs
    finally:
        engine.dispose()


__all__ = [
    "ClinicConfig", "ClinicConfigError", "ClinicSettings", "OutreachSettings", "load_clinics",
    "load_clinics_file", "parse_clinic_file", "parse_clock", "parse_interval",
]
