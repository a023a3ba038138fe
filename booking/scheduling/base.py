"""The scheduling adapter interface: every calendar backend answers the same five questions."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from booking.models import Appointment, Clinic, Contact, Patient, Service


class SchedulingError(Exception):
    """Base of every error an adapter raises on purpose."""


class SlotUnavailable(SchedulingError):
    """The slot was free when offered and is not any more: offer others."""


class CalendarUnavailable(SchedulingError):
    """The calendar could not be reached or was busy: retry later, nothing was booked."""


class InvalidRequest(SchedulingError):
    """The request can never succeed as asked (unknown service, wrong clinic, naive datetime)."""


class AdapterConfigError(InvalidRequest):
    """An adapter's configuration is unusable; raised when it is built, so start-up fails."""


@dataclass(frozen=True)
class Slot:
    """A bookable interval; instants are timezone-aware UTC."""

    starts_at: datetime
    ends_at: datetime
    provider: str | None  # provider slug; None when the service is booked against the clinic
    service: str  # service slug

    def __post_init__(self) -> None:
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise InvalidRequest(f"Slot.{name} must be timezone-aware")
            object.__setattr__(self, name, value.astimezone(timezone.utc))
        if self.ends_at <= self.starts_at:
            raise InvalidRequest("Slot.ends_at must be after starts_at")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, for a Rasa slot or an HTTP payload."""
        return {
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "provider": self.provider,
            "service": self.service,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Slot:
        return cls(
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]),
            provider=data.get("provider"),
            service=data["service"],
        )


def require_aware(**instants: datetime) -> None:
    """Raise InvalidRequest naming any argument that is not a timezone-aware datetime."""
    for name, value in instants.items():
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise InvalidRequest(f"{name} must be a timezone-aware datetime")


SessionFactory = Callable[[], Session]
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


class SchedulingAdapter(abc.ABC):
    """One instance per clinic; every method is keyword-only and scoped to that clinic.

    Contract (checked by tests/contract): find_free_slots returns slots in start order, earliest
    first, honouring opening hours, the service's providers, lead time and horizon; book is for
    a person (a Patient: name, date of birth), not for the phone that asked; book is
    idempotent on idempotency_key and raises SlotUnavailable rather than double-book; every
    booking is also an Appointment row in the Ringback database, so the rest of Ringback sees it.
    """

    slug: ClassVar[str]
    title: ClassVar[str] = ""

    def __init__(
        self,
        *,
        clinic: Clinic,
        session_factory: SessionFactory,
        config: dict[str, Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clinic_id: int = clinic.id
        self.clinic_slug: str = clinic.slug
        self.timezone: str = clinic.timezone
        self.config: dict[str, Any] = dict(
            config if config is not None else (clinic.scheduling_config or {})
        )
        self.session_factory = session_factory
        self.clock: Clock = clock or system_clock
        self.validate_config(self.config)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        """Raise AdapterConfigError naming the bad key; the clinic loader calls this too."""

    @abc.abstractmethod
    def find_free_slots(
        self,
        *,
        service: str | Service,
        window_start: datetime,
        window_end: datetime,
        provider: str | None = None,
        limit: int | None = None,
    ) -> list[Slot]:
        """Free slots starting in [window_start, window_end), earliest first, at most limit."""

    @abc.abstractmethod
    def book(
        self, *, slot: Slot, patient: Patient, service: str | Service, idempotency_key: str
    ) -> Appointment:
        """Book slot for the patient (the person, whose contact is the phone that booked); the
        same idempotency_key returns the same appointment. A patient not yet stored (no id) is
        stored with the booking."""

    @abc.abstractmethod
    def cancel(self, *, appointment_id: int) -> Appointment:
        """Cancel and free the time; cancelling twice is harmless."""

    @abc.abstractmethod
    def reschedule(
        self, *, appointment_id: int, new_slot: Slot, idempotency_key: str
    ) -> Appointment:
        """Move an appointment; returns the new one, the old one is marked rescheduled."""

    @abc.abstractmethod
    def upcoming_for_contact(self, *, contact: Contact) -> list[Appointment]:
        """Booked appointments not yet started for everyone on the contact's phone, soonest
        first, each with its patient."""

    def reload(self) -> None:
        """Re-read clinic configuration (hours, services, providers) after it changed."""

    def close(self) -> None:
        """Release connections; the default adapter holds none."""


__all__ = [
    "AdapterConfigError", "CalendarUnavailable", "Clock", "InvalidRequest", "SchedulingAdapter",
    "SchedulingError", "SessionFactory", "Slot", "SlotUnavailable", "require_aware",
    "system_clock",
]
