"""The funnel counts one clinic's stages within the period asked for, and nothing else."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy.orm import Session

from booking.db import make_engine
from booking.migrate import upgrade
from booking.models import Clinic, FunnelEvent
from booking.reports.funnel import funnel

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def test_funnel_counts_stages_per_clinic_and_period(tmp_path):
    url = f"sqlite:///{tmp_path / 'funnel.db'}"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        ours = Clinic(slug="ours", name="Ours", timezone="Europe/London", country="GB")
        theirs = Clinic(slug="theirs", name="Theirs", timezone="Europe/London", country="GB")
        session.add_all([ours, theirs])
        session.flush()
        for kind, clinic, hours_ago in [
            ("missed", ours, 1), ("missed", ours, 2), ("missed", ours, 3), ("texted", ours, 1),
            ("texted", ours, 2), ("booked", ours, 1), ("missed", ours, 24 * 8),
            ("missed", theirs, 1),
        ]:
            session.add(FunnelEvent(clinic_id=clinic.id, kind=kind,
                                    occurred_at=NOW - timedelta(hours=hours_ago)))
        session.commit()

        week = funnel(session, clinic_id=ours.id, since=NOW - timedelta(days=7), until=NOW)

    assert week.counts == {"missed": 3, "texted": 2, "booked": 1}
    assert week.rate("booked", of="missed") == 1 / 3
    assert week.rate("booked", of="answered") is None
    assert "recovered: 33% of missed calls booked" in "\n".join(week.lines())
    engine.dispose()
