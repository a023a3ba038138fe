"""Adapters that record bookings in the Ringback database and claim grid cells there.

`LedgerAdapter` does everything the built-in calendar needs; an adapter for an external
calendar subclasses it and adds the outside world through three hooks: `_external_busy`
(what the calendar says is taken), `_write_external` (called inside the booking transaction,
after our claim succeeded and before commit) and `_remove_external`.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import String, bindparam, delete, select, type_coerce
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, joinedload

from booking.models import Appointment, AppointmentStatus, Contact, Patient, Service, SlotClaim
from booking.scheduling.availability import (
    CLINIC_RESOURCE,
    ClinicCalendar,
    Interval,
    ServiceRule,
    free_slots,
    grid_cells,
    load_calendar,
)
from booking.scheduling.base import (
    CalendarUnavailable,
    InvalidRequest,
    SchedulingAdapter,
    Slot,
    SlotUnavailable,
    require_aware,
)

logger = logging.getLogger(__name__)

# Longest appointment we expect; bounds the look-back when asking which appointments overlap.
LONGEST_APPOINTMENT = timedelta(hours=12)
MAX_IDEMPOTENCY_KEY = 128

# Statements every booking turn runs, built once: building one and its cache key cost more CPU
# than running it.
_WITH_DETAILS = (joinedload(Appointment.service), joinedload(Appointment.provider),
                 joinedload(Appointment.contact), joinedload(Appointment.patient))
_UPCOMING = (select(Appointment)
             .where(Appointment.clinic_id == bindparam("clinic_id"),
                    Appointment.contact_id == bindparam("contact_id"),
                    Appointment.status == AppointmentStatus.booked,
                    Appointment.starts_at >= bindparam("now"))
             .options(*_WITH_DETAILS)
             .order_by(Appointment.starts_at))
# Raw column values: converting 500 rows through UTCDateTime costs more than the slot search
# itself on SQLite, and _as_utc does the same job in C.
_BUSY = (select(type_coerce(Appointment.starts_at, String),
                type_coerce(Appointment.ends_at, String), Appointment.provider_id,
                Appointment.service_id)
         .where(Appointment.clinic_id == bindparam("clinic_id"),
                Appointment.status == AppointmentStatus.booked,
                Appointment.starts_at < bindparam("end"),
                Appointment.starts_at >= bindparam("since")))
_BUSY_BUT_ONE = _BUSY.where(Appointment.id != bindparam("ignoring_id"))
_BY_KEY = (select(Appointment)
           .where(Appointment.clinic_id == bindparam("clinic_id"),
                  Appointment.idempotency_key == bindparam("key"))
           .options(*_WITH_DETAILS))
_WITH_ITS_DETAILS = (select(Appointment).where(Appointment.id == bindparam("appointment_id"))
                     .options(*_WITH_DETAILS))


def _as_utc(value: str | datetime) -> datetime:
    """A stored instant as an aware UTC datetime (SQLite hands back text, PostgreSQL not)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _database_trouble_is_retryable(method):
    """A database that is down or locked is a calendar that is unavailable: retry later."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OperationalError as exc:
            raise CalendarUnavailable(f"booking database unavailable: {exc.orig}") from exc

    return guarded


class LedgerAdapter(SchedulingAdapter):
    """Availability from clinic rules; bookings as Appointment rows plus SlotClaim cells."""

    source = "bot"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._calendar: ClinicCalendar | None = None

    # -- configuration -------------------------------------------------------------------

    @property
    def calendar(self) -> ClinicCalendar:
        if self._calendar is None:
            with self.session_factory() as session:
                self._calendar = load_calendar(session, clinic_id=self.clinic_id)
        return self._calendar

    def reload(self) -> None:
        self._calendar = None

    # -- hooks for external calendars ------------------------------------------------------

    def _external_busy(
        self, *, resources: Iterable[str], start: datetime, end: datetime,
        ignoring_external_id: str | None = None,
    ) -> dict[str, list[Interval]]:
        """Intervals an outside calendar marks as taken, per resource."""
        return {}

    def _write_external(self, *, appointment: Appointment, patient: Patient,
                        rule: ServiceRule, replacing: Appointment | None = None) -> str | None:
        """Put the booking in the outside calendar; return its id there. Runs before commit.

        Must re-check the time first and raise SlotUnavailable if it was taken meanwhile;
        `replacing` is the appointment being moved, whose own event does not count as busy.
        """
        return None

    def _remove_external(self, *, appointment: Appointment) -> None:
        """Take a cancelled or moved booking out of the outside calendar."""

    # -- reading ---------------------------------------------------------------------------

    @_database_trouble_is_retryable
    def find_free_slots(
        self,
        *,
        service: str | Service,
        window_start: datetime,
        window_end: datetime,
        provider: str | None = None,
        limit: int | None = None,
    ) -> list[Slot]:
        require_aware(window_start=window_start, window_end=window_end)
        calendar = self.calendar
        rule = calendar.service(service)
        resources = calendar.resources_for(rule, provider)
        with self._session() as session:
            busy = self._busy(session, resources=resources, start=window_start,
                              end=window_end + rule.duration + rule.buffer)
        return free_slots(calendar, service=rule.slug, window_start=window_start,
                          window_end=window_end, now=self.clock(), busy=busy,
                          provider=provider, limit=limit)

    @_database_trouble_is_retryable
    def upcoming_for_contact(self, *, contact: Contact) -> list[Appointment]:
        self._check_contact(contact)
        with self._session() as session:
            return list(session.execute(_UPCOMING, {
                "clinic_id": self.clinic_id, "contact_id": contact.id, "now": self.clock(),
            }).scalars())

    # -- writing ---------------------------------------------------------------------------

    @_database_trouble_is_retryable
    def book(
        self, *, slot: Slot, patient: Patient, service: str | Service, idempotency_key: str
    ) -> Appointment:
        rule = self._rule_for(slot, service)
        self._check_patient(patient)
        self._check_key(idempotency_key)
        with self._session() as session:
            existing = self._by_key(session, idempotency_key)
            if existing is not None:
                return existing
            try:
                self._require_free(session, slot=slot, rule=rule)
            except SlotUnavailable:
                # Taken by a concurrent retry of this very request? Then it is ours.
                existing = self._by_key(session, idempotency_key)
                if existing is not None:
                    return existing
                raise
            appointment = Appointment(
                clinic_id=self.clinic_id, contact_id=patient.contact_id,
                patient_id=self._stored_patient_id(session, patient), service_id=rule.id,
                provider_id=self._provider_id(slot.provider), starts_at=slot.starts_at,
                ends_at=slot.ends_at, status=AppointmentStatus.booked, source=self.source,
                idempotency_key=idempotency_key,
            )
            return self._commit_booking(session, appointment=appointment, slot=slot, rule=rule,
                                        patient=patient, idempotency_key=idempotency_key)

    @_database_trouble_is_retryable
    def cancel(self, *, appointment_id: int) -> Appointment:
        with self._session() as session:
            appointment = self._owned(session, appointment_id)
            if appointment.status != AppointmentStatus.booked:
                return self._reloaded(session, appointment.id)
            appointment.status = AppointmentStatus.cancelled
            session.execute(delete(SlotClaim).where(SlotClaim.appointment_id == appointment.id))
            session.flush()
            self._remove_external(appointment=appointment)
            self._commit(session)
            return self._reloaded(session, appointment.id)

    @_database_trouble_is_retryable
    def reschedule(
        self, *, appointment_id: int, new_slot: Slot, idempotency_key: str
    ) -> Appointment:
        self._check_key(idempotency_key)
        with self._session() as session:
            existing = self._by_key(session, idempotency_key)
            if existing is not None:
                return existing
            old = self._owned(session, appointment_id)
            if old.status != AppointmentStatus.booked:
                raise InvalidRequest(f"appointment {appointment_id} is {old.status.value}, "
                                     "not booked")
            rule = self._rule_for(new_slot, self.calendar.service_by_id(old.service_id))
            patient = (session.get(Patient, old.patient_id) if old.patient_id is not None
                       else self._as_patient(session.get(Contact, old.contact_id)))
            # Free the old time first, inside this transaction, so a move by a few minutes that
            # overlaps itself is allowed; a failure below rolls the release back too.
            old.status = AppointmentStatus.rescheduled
            session.execute(delete(SlotClaim).where(SlotClaim.appointment_id == old.id))
            session.flush()
            try:
                self._require_free(session, slot=new_slot, rule=rule, ignoring=old)
            except SlotUnavailable:
                session.rollback()
                existing = self._by_key(session, idempotency_key)
                if existing is not None:
                    return existing
                raise
            appointment = Appointment(
                clinic_id=self.clinic_id, contact_id=old.contact_id,
                patient_id=old.patient_id, service_id=rule.id,
                provider_id=self._provider_id(new_slot.provider),
                starts_at=new_slot.starts_at, ends_at=new_slot.ends_at,
                status=AppointmentStatus.booked, source=self.source,
                idempotency_key=idempotency_key, rescheduled_from_id=old.id,
            )
            new = self._commit_booking(session, appointment=appointment, slot=new_slot,
                                       rule=rule, patient=patient,
                                       idempotency_key=idempotency_key, replacing=old)
            return new

    # -- internals -------------------------------------------------------------------------

    def _commit_booking(self, session: Session, *, appointment: Appointment, slot: Slot,
                        rule: ServiceRule, patient: Patient, idempotency_key: str,
                        replacing: Appointment | None = None) -> Appointment:
        resource = slot.provider or CLINIC_RESOURCE
        try:
            session.add(appointment)
            session.flush()
        except IntegrityError:
            # Someone with the same key won the race: theirs is ours.
            session.rollback()
            existing = self._by_key(session, idempotency_key)
            if existing is None:
                raise
            return existing
        claims = [SlotClaim(clinic_id=self.clinic_id, resource=resource, cell_start=cell,
                            appointment_id=appointment.id)
                  for cell in grid_cells(slot.starts_at, slot.ends_at + rule.buffer)]
        try:
            session.add_all(claims)
            session.flush()
        except IntegrityError:
            session.rollback()
            # A concurrent booking with our key may have claimed the cells first.
            existing = self._by_key(session, idempotency_key)
            if existing is not None:
                return existing
            raise SlotUnavailable(f"{slot.starts_at.isoformat()} was just taken") from None
        written = False
        try:
            appointment.external_id = self._write_external(
                appointment=appointment, patient=patient, rule=rule, replacing=replacing)
            written = appointment.external_id is not None
            if replacing is not None:
                self._remove_external(appointment=replacing)
            self._commit(session)
        except BaseException:
            session.rollback()
            if written:
                self._undo_external_write(appointment)
            raise
        return self._reloaded(session, appointment.id)

    def _undo_external_write(self, appointment: Appointment) -> None:
        try:
            self._remove_external(appointment=appointment)
        except Exception:  # the original error matters more; leave a trace for staff
            logger.exception("could not remove external event %s after a failed booking",
                             appointment.external_id)

    def _require_free(self, session: Session, *, slot: Slot, rule: ServiceRule,
                      ignoring: Appointment | None = None) -> None:
        """Re-check the slot against current rules and bookings before claiming it."""
        resource = slot.provider or CLINIC_RESOURCE
        busy = self._busy(session, resources=(resource,), start=slot.starts_at,
                          end=slot.ends_at + rule.buffer, ignoring=ignoring)
        matching = free_slots(
            self.calendar, service=rule.slug, window_start=slot.starts_at,
            window_end=slot.starts_at + timedelta(microseconds=1), now=self.clock(),
            busy=busy, provider=slot.provider,
        )
        if not any(candidate == slot for candidate in matching):
            raise SlotUnavailable(f"{slot.starts_at.isoformat()} is not free for {rule.slug}")

    def _busy(self, session: Session, *, resources: Iterable[str], start: datetime,
              end: datetime, ignoring: Appointment | None = None
              ) -> dict[str, list[Interval]]:
        """Busy intervals per resource (buffers included), leaving out `ignoring`."""
        resources = tuple(resources)
        busy: dict[str, list[Interval]] = defaultdict(list)
        slug_by_id = self.calendar.provider_slugs_by_id
        buffers = self.calendar.buffer_by_service_id
        window = {"clinic_id": self.clinic_id, "end": end, "since": start - LONGEST_APPOINTMENT}
        query = _BUSY if ignoring is None else _BUSY_BUT_ONE
        if ignoring is not None:
            window["ignoring_id"] = ignoring.id
        # Core rather than ORM execution: plain tuples, a third of the cost for 500 rows.
        for starts_at, ends_at, provider_id, service_id in session.connection().execute(
                query, window):
            resource = slug_by_id.get(provider_id, CLINIC_RESOURCE)
            if resource in resources:
                busy[resource].append(
                    (_as_utc(starts_at), _as_utc(ends_at) + buffers.get(service_id,
                                                                         timedelta(0))))
        for resource, intervals in self._external_busy(
            resources=resources, start=start, end=end,
            ignoring_external_id=ignoring.external_id if ignoring is not None else None,
        ).items():
            busy[resource].extend(intervals)
        return busy

    def _session(self) -> Session:
        return self.session_factory()

    @staticmethod
    def _commit(session: Session) -> None:
        session.commit()

    def _rule_for(self, slot: Slot, service) -> ServiceRule:
        if not isinstance(slot, Slot):
            raise InvalidRequest("slot must be a Slot")
        rule = self.calendar.service(service)
        if slot.service != rule.slug:
            raise InvalidRequest(f"slot is for {slot.service!r}, not {rule.slug!r}")
        self.calendar.resources_for(rule, slot.provider)
        if slot.provider is None and rule.resources != (CLINIC_RESOURCE,):
            raise InvalidRequest(f"{rule.slug!r} needs a provider")
        if slot.ends_at - slot.starts_at != rule.duration:
            raise InvalidRequest(f"{rule.slug!r} lasts {rule.duration}, the slot does not")
        return rule

    def _provider_id(self, provider: str | None) -> int | None:
        return None if provider is None else self.calendar.provider_ids[provider]

    def _check_contact(self, contact: Contact) -> None:
        if contact.id is None or contact.clinic_id != self.clinic_id:
            raise InvalidRequest("contact does not belong to this clinic")

    def _check_patient(self, patient: Patient) -> None:
        if patient.contact_id is None or patient.clinic_id != self.clinic_id:
            raise InvalidRequest("patient does not belong to a contact of this clinic")

    @staticmethod
    def _stored_patient_id(session: Session, patient: Patient) -> int:
        """The patient's id; a new person is stored in the booking's own transaction."""
        if patient.id is not None:
            return patient.id
        stored = Patient(clinic_id=patient.clinic_id, contact_id=patient.contact_id,
                         relation=patient.relation, first_name=patient.first_name,
                         last_name=patient.last_name, date_of_birth=patient.date_of_birth,
                         is_known_patient=bool(patient.is_known_patient))
        session.add(stored)
        session.flush()
        return stored.id

    @staticmethod
    def _as_patient(contact: Contact) -> Patient:
        """The phone's owner as the person, for an appointment keyed in without one."""
        return Patient(clinic_id=contact.clinic_id, contact_id=contact.id, relation="self",
                       first_name=contact.first_name, last_name=contact.last_name,
                       date_of_birth=contact.date_of_birth)

    @staticmethod
    def _check_key(key: str) -> None:
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidRequest(f"idempotency_key must be 1..{MAX_IDEMPOTENCY_KEY} characters")

    def _by_key(self, session: Session, key: str) -> Appointment | None:
        return session.execute(_BY_KEY, {"clinic_id": self.clinic_id,
                                         "key": key}).scalar_one_or_none()

    def _owned(self, session: Session, appointment_id: int) -> Appointment:
        appointment = session.get(Appointment, appointment_id)
        if appointment is None or appointment.clinic_id != self.clinic_id:
            raise InvalidRequest(f"no appointment {appointment_id} at this clinic")
        return appointment

    def _reloaded(self, session: Session, appointment_id: int) -> Appointment:
        # Loaded with its service, provider, contact and patient, for use after we close.
        session.expire_all()
        return session.execute(_WITH_ITS_DETAILS, {"appointment_id": appointment_id}).scalar_one()
