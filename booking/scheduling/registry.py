"""Find scheduling adapters through the `ringback.scheduling` entry points and build them."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from booking.models import Clinic
from booking.scheduling.base import (
    AdapterConfigError,
    Clock,
    SchedulingAdapter,
    SessionFactory,
)

ENTRY_POINT_GROUP = "ringback.scheduling"


class UnknownAdapter(LookupError):
    """A clinic names an adapter no installed package provides."""


def available_adapters() -> dict[str, EntryPoint]:
    """Installed adapters by slug; importing them waits until one is used."""
    return {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}


def adapter_class(slug: str) -> type[SchedulingAdapter]:
    """The class registered under slug; import errors propagate, they are bugs to see."""
    entries = available_adapters()
    if slug not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise UnknownAdapter(
            f"no scheduling adapter {slug!r} is installed (entry point group "
            f"{ENTRY_POINT_GROUP!r}; installed: {known})"
        )
    cls = entries[slug].load()
    if not (isinstance(cls, type) and issubclass(cls, SchedulingAdapter)):
        raise TypeError(f"entry point {slug!r} does not name a SchedulingAdapter subclass")
    return cls


def validate_adapter_config(slug: str, config: dict[str, Any]) -> None:
    """Raise UnknownAdapter or AdapterConfigError without connecting to anything."""
    adapter_class(slug).validate_config(dict(config or {}))


def get_adapter(
    clinic: Clinic, session_factory: SessionFactory, *, clock: Clock | None = None
) -> SchedulingAdapter:
    """Build the adapter a clinic is configured with (clinic.scheduling_adapter/_config)."""
    cls = adapter_class(clinic.scheduling_adapter or "builtin")
    return cls(clinic=clinic, session_factory=session_factory,
               config=dict(clinic.scheduling_config or {}), clock=clock)


class AdapterCache:
    """One adapter per clinic for a long-running process (action server, gateway)."""

    def __init__(self, session_factory: SessionFactory, *, clock: Clock | None = None) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._adapters: dict[int, tuple[tuple, SchedulingAdapter]] = {}

    def for_clinic(self, clinic: Clinic) -> SchedulingAdapter:
        # Rebuilt when the clinic row changed (a config reload bumps updated_at).
        version = (clinic.scheduling_adapter, repr(clinic.scheduling_config), clinic.updated_at)
        cached = self._adapters.get(clinic.id)
        if cached is not None and cached[0] == version:
            return cached[1]
        if cached is not None:
            cached[1].close()
        adapter = get_adapter(clinic, self._session_factory, clock=self._clock)
        self._adapters[clinic.id] = (version, adapter)
        return adapter

    def close(self) -> None:
        for _version, adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()


__all__ = [
    "ENTRY_POINT_GROUP", "AdapterCache", "AdapterConfigError", "UnknownAdapter",
    "adapter_class", "available_adapters", "get_adapter", "validate_adapter_config",
]
