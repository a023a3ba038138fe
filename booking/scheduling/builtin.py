"""The default calendar: Ringback's own database is the diary."""

from __future__ import annotations

from booking.scheduling.ledger import LedgerAdapter


class BuiltinAdapter(LedgerAdapter):
    """Slots from opening hours, provider hours and booked appointments; needs no config."""

    slug = "builtin"
    title = "Built-in calendar"
