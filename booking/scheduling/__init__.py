"""Scheduling: slots and bookings through one adapter interface, whatever calendar a clinic
keeps (the built-in ledger, CalDAV, or an adapter registered under the `ringback.scheduling`
entry point). It reads clinics' opening hours (`clinics/`) and must not import `calls/`,
`dialogue/`, `messaging/`, `escalation/`, `reports/`, the web layer (`gateway/`, `console/`),
nor Rasa."""

from booking.scheduling.base import (
    AdapterConfigError,
    CalendarUnavailable,
    InvalidRequest,
    SchedulingAdapter,
    SchedulingError,
    Slot,
    SlotUnavailable,
)
from booking.scheduling.registry import AdapterCache, UnknownAdapter, get_adapter

__all__ = [
    "AdapterCache", "AdapterConfigError", "CalendarUnavailable", "InvalidRequest",
    "SchedulingAdapter", "SchedulingError", "Slot", "SlotUnavailable", "UnknownAdapter",
    "get_adapter",
]
