"""The funnel counts one clinic's stages within the period asked for, and nothing else."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy.orm import Session

from booking.db import make_engine
from booking.migrate import upgrade
from booking.models import Clinic, Contact, FunnelEvent, Thread
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
    engine.dispose()



def test_bookings_are_credited_to_the_follow_up_or_rebooking_offer_before_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'funnel.db'}"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        clinic = Clinic(slug="ours", name="Ours", timezone="Europe/London", country="GB")
        session.add(clinic)
        session.flush()
        patients = []
        for number in range(4):
            contact = Contact(clinic_id=clinic.id, phone=f"+4477009001{number:02d}")
            session.add(contact)
            session.flush()
            thread = Thread(clinic_id=clinic.id, contact_id=contact.id,
                            sender_id=f"ours:{contact.phone}")
            session.add(thread)
            session.flush()
            patients.append((contact.id, thread.id))
        for kind, patient, hours_ago in [
            # followed up, then booked: credited to the follow-up
            ("followed_up", 0, 30), ("booked", 0, 10),
            # booked before any follow-up: not credited
            ("booked", 1, 20), ("followed_up", 1, 5),
            # a no-show, an offer, a booking two days later: rebooked
            ("no_show", 2, 80), ("rebooking_offered", 2, 60), ("booked", 2, 12),
            ("reminded", 2, 40), ("confirmed", 2, 39),
            # an offer nine days before the booking is too long ago to take the credit
            ("rebooking_offered", 3, 24 * 9 + 1), ("booked", 3, 1),
        ]:
            contact_id, thread_id = patients[patient]
            session.add(FunnelEvent(clinic_id=clinic.id, kind=kind, contact_id=contact_id,
                                    thread_id=thread_id,
                                    occurred_at=NOW - timedelta(hours=hours_ago)))
        session.commit()

        week = funnel(session, clinic_id=clinic.id, since=NOW - timedelta(days=7), until=NOW)

    assert week.counts["booked"] == 4
    assert week.counts["booked_after_follow_up"] == 1
    assert week.counts["rebooked"] == 1
    assert (week.counts["reminded"], week.counts["confirmed"], week.counts["no_show"]) == (1, 1, 1)
    engine.dispose()
