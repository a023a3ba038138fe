"""The period's rows for the practice's own analysis: each missed call with its outcome, and
each appointment Ringback booked. The same selections as the dashboard's figures
(`metrics.missed_calls_in`, `metrics.ringback_bookings`), so a spreadsheet adds up to them."""

from __future__ import annotations

import csv
import io
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking.models import (
    Appointment,
    Contact,
    FunnelEvent,
    MissedCall,
    MissedCallStatus,
    Provider,
    Service,
    UTCDateTime,
)
from booking.reports.metrics import (
    FIRST_REPLY,
    TEXT_BACK_SENT,
    missed_calls_in,
    ringback_bookings,
    service_value,
)
from booking.reports.periods import Period

MISSED_CALL_COLUMNS = ("called_at", "caller", "outcome", "texted_back_at",
                       "text_back_seconds", "first_reply_at", "synthetic")
APPOINTMENT_COLUMNS = ("booked_at", "starts_at", "patient", "service", "provider", "status",
                       "estimated_value", "currency", "synthetic")
NOT_TEXTED = {
    MissedCallStatus.duplicate: "repeat call, covered by the text-back before",
    MissedCallStatus.opted_out: "not texted: opted out",
    MissedCallStatus.pending: "text-back not yet decided",
}
# MissedCall.refused_reason ("country_not_allowed:LS") in words; see booking.calls.destinations
# and booking.calls.hourly_caps.
REFUSED = {
    "country_not_allowed": "not texted: a country the clinic does not text ({detail})",
    "costly_number": "not texted: a costly number ({detail})",
    "clinic_hourly_cap": "not texted: the clinic's hourly cap was reached",
    "global_hourly_cap": "not texted: the hourly cap for all clinics was reached",
}


def refused_words(reason: str | None) -> str:
    kind, _, detail = (reason or "").partition(":")
    words = REFUSED.get(kind)
    return words.format(detail=detail.replace("_", " ")) if words else f"not texted: {reason}"


# A booking or hand-over in the caller's thread within a week is what became of the call.
OUTCOME_WITHIN = timedelta(days=7)


def _thread_events(session: Session, *, clinic_id: int, period: Period
                   ) -> dict[tuple[int, str], list[datetime]]:
    """When each thread was booked or escalated, from the period's start to a week after."""
    events: dict[tuple[int, str], list[datetime]] = defaultdict(list)
    for thread_id, kind, at in session.execute(
        select(FunnelEvent.thread_id, FunnelEvent.kind, FunnelEvent.occurred_at)
        .where(FunnelEvent.clinic_id == clinic_id, FunnelEvent.kind.in_(("booked", "escalated")),
               FunnelEvent.occurred_at >= period.since,
               FunnelEvent.occurred_at < period.until + OUTCOME_WITHIN)
        .order_by(FunnelEvent.occurred_at)
    ):
        events[(thread_id, kind)].append(at)
    return events


def _happened(events: dict[tuple[int, str], list[datetime]], thread_id: int | None, kind: str,
              after: datetime) -> bool:
    times = events.get((thread_id, kind), [])
    first = bisect_left(times, after)
    return first < len(times) and times[first] < after + OUTCOME_WITHIN


def missed_call_rows(session: Session, *, clinic_id: int, period: Period) -> list[dict]:
    """One row per missed call of the period, oldest first, times in the clinic's zone."""
    rows = session.execute(
        select(MissedCall.occurred_at, Contact.phone, MissedCall.status, MissedCall.source,
               MissedCall.thread_id, TEXT_BACK_SENT, FIRST_REPLY, MissedCall.refused_reason)
        .join(Contact, Contact.id == MissedCall.contact_id)
        .where(*missed_calls_in(clinic_id, period))
        .order_by(MissedCall.occurred_at, MissedCall.id)
    ).all()
    events = _thread_events(session, clinic_id=clinic_id, period=period)
    result = []
    for occurred, phone, status, source, thread_id, sent, replied, refused in rows:
        sent, replied = _instant(sent), _instant(replied)
        if status == MissedCallStatus.refused:
            outcome = refused_words(refused)
        elif status != MissedCallStatus.texted:
            outcome = NOT_TEXTED.get(status, status.value)
        elif _happened(events, thread_id, "booked", occurred):
            outcome = "booked"
        elif _happened(events, thread_id, "escalated", occurred):
            outcome = "handed to staff"
        elif replied is not None:
            outcome = "replied, not booked"
        else:
            outcome = "texted, no reply"
        result.append({
            "called_at": _local(occurred, period), "caller": phone, "outcome": outcome,
            "texted_back_at": _local(sent, period),
            "text_back_seconds": (round((sent - occurred).total_seconds())
                                  if sent is not None else ""),
            "first_reply_at": _local(replied, period),
            "synthetic": "yes" if source == "synthetic" else "",
        })
    return result


def appointment_rows(session: Session, *, clinic_id: int, period: Period) -> list[dict]:
    """One row per appointment Ringback booked in the period, with its estimated value."""
    rows = session.execute(
        select(Appointment.created_at, Appointment.starts_at, Contact.phone, Service.name,
               Provider.name, Appointment.status, Appointment.idempotency_key, Service.value,
               Service.price_min, Service.price_max, Service.currency)
        .join(Contact, Contact.id == Appointment.contact_id)
        .join(Service, Service.id == Appointment.service_id)
        .outerjoin(Provider, Provider.id == Appointment.provider_id)
        .where(*ringback_bookings(clinic_id, period))
        .order_by(Appointment.created_at, Appointment.id)
    ).all()
    result = []
    for (booked, starts, phone, service, provider, status, key, value, price_min, price_max,
         currency) in rows:
        estimate = service_value(value=value, price_min=price_min, price_max=price_max)
        result.append({
            "booked_at": _local(booked, period), "starts_at": _local(starts, period),
            "patient": phone, "service": service, "provider": provider or "",
            "status": status.value, "estimated_value": "" if estimate is None else f"{estimate:g}",
            "currency": currency or "",
            "synthetic": "yes" if key.startswith("synthetic-") else "",
        })
    return result


def to_csv(rows: Iterable[dict], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _instant(value) -> datetime | None:
    """A UTC instant from a scalar subquery, which loses the column type (SQLite: text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return UTCDateTime().process_result_value(value, None)


def _local(value, period: Period) -> str:
    return "" if value is None else period.local(value).isoformat(timespec="seconds")
