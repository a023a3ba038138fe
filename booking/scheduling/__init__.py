"""Slots and bookings through one adapter interface, whatever calendar a clinic keeps."""

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
