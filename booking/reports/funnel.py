"""The recovery funnel a clinic measures: calls missed, texted, answered, replied, booked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from booking.models import FunnelEvent

STAGES = ("missed", "answered", "texted", "replied", "offered", "booked", "escalated",
          "opted_out")


@dataclass(frozen=True)
class Funnel:
    counts: dict[str, int]

    def rate(self, stage: str, *, of: str) -> float | None:
        base = self.counts.get(of, 0)
        return None if base == 0 else self.counts.get(stage, 0) / base

    def lines(self) -> list[str]:
        rows = [f"{stage:>10}: {self.counts.get(stage, 0)}" for stage in STAGES]
        booked = self.rate("booked", of="missed")
        if booked is not None:
            rows.append(f"{'recovered':>10}: {booked:.0%} of missed calls booked")
        return rows


def funnel(session: Session, *, clinic_id: int, since: datetime, until: datetime) -> Funnel:
    """How many times each stage happened for one clinic in [since, until)."""
    rows = session.execute(
        select(FunnelEvent.kind, func.count())
        .where(FunnelEvent.clinic_id == clinic_id, FunnelEvent.occurred_at >= since,
               FunnelEvent.occurred_at < until)
        .group_by(FunnelEvent.kind)
    ).all()
    return Funnel(counts={kind: count for kind, count in rows})
