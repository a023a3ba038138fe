"""The recovery funnel a clinic measures: calls missed, texted, answered, replied, booked; and
what the messages Ringback starts bring back: follow-ups, reminders, rebooking offers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from booking.models import FunnelEvent

STAGES = ("missed", "answered", "texted", "replied", "offered", "booked", "escalated",
          "opted_out")
# What the messages Ringback starts itself bring (booking/outreach), and attendance.
OUTREACH_STAGES = ("followed_up", "booked_after_follow_up", "reminded", "confirmed",
                   "attended", "no_show", "rebooking_offered", "rebooked")
# A booking counts as brought back by a follow-up or a rebooking offer sent this long before.
CREDIT_WINDOW = timedelta(days=7)
# Derived stage -> the event that must come before a booking, and what they must share.
_CREDITED = {"booked_after_follow_up": ("followed_up", "thread_id"),
             "rebooked": ("rebooking_offered", "contact_id")}
# A patient offered times twice (they asked for another day) is one patient offered.
ONCE_PER_THREAD = frozenset({"offered"})


@dataclass(frozen=True)
class Funnel:
    counts: dict[str, int]

    def rate(self, stage: str, *, of: str) -> float | None:
        base = self.counts.get(of, 0)
        return None if base == 0 else self.counts.get(stage, 0) / base


def funnel(session: Session, *, clinic_id: int, since: datetime, until: datetime) -> Funnel:
    """How many times each stage happened for one clinic in [since, until)."""
    rows = session.execute(
        select(FunnelEvent.kind, func.count(), func.count(distinct(FunnelEvent.thread_id)))
        .where(FunnelEvent.clinic_id == clinic_id, FunnelEvent.occurred_at >= since,
               FunnelEvent.occurred_at < until)
        .group_by(FunnelEvent.kind)
    ).all()
    counts = {kind: threads if kind in ONCE_PER_THREAD else count
              for kind, count, threads in rows}
    counts.update(_credited(session, clinic_id=clinic_id, since=since, until=until))
    return Funnel(counts=counts)


def _credited(session: Session, *, clinic_id: int, since: datetime, until: datetime
              ) -> dict[str, int]:
    """Bookings in the period with a follow-up (same thread) or a rebooking offer (same
    patient) in the week before them. Compared here, not in SQL: date arithmetic is not
    portable between SQLite and PostgreSQL, and a period holds few bookings."""
    kinds = {earlier_kind for earlier_kind, _ in _CREDITED.values()}
    rows = session.execute(
        select(FunnelEvent.kind, FunnelEvent.thread_id, FunnelEvent.contact_id,
               FunnelEvent.occurred_at)
        .where(FunnelEvent.clinic_id == clinic_id, FunnelEvent.kind.in_([*kinds, "booked"]),
               FunnelEvent.occurred_at >= since - CREDIT_WINDOW,
               FunnelEvent.occurred_at < until)).all()
    bookings = [row for row in rows if row.kind == "booked" and row.occurred_at >= since]
    counts = {}
    for stage, (earlier_kind, shared) in _CREDITED.items():
        earlier = [row for row in rows if row.kind == earlier_kind]
        credited = sum(1 for booking in bookings if any(
            getattr(row, shared) is not None
            and getattr(row, shared) == getattr(booking, shared)
            and booking.occurred_at - CREDIT_WINDOW <= row.occurred_at < booking.occurred_at
            for row in earlier))
        if credited:
            counts[stage] = credited
    return counts
