"""Arrivals against a real database (SQLite and PostgreSQL, both migrated): what the messaging
webhook stores before Twilio's answer is taken into the inbox once, in arrival order, by
whichever intake pass comes next, and a message that cannot be taken in costs no other."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from booking.clinics.config import load_clinics_file
from booking.db import make_engine, session_factory
from booking.messaging import arrivals
from booking.messaging.arrivals import MAX_ATTEMPTS, NewArrival
from booking.migrate import upgrade
from booking.models import Arrival, Channel, InboxItem, Message
from tests.booking.test_concurrency import postgres_url  # noqa: F401 - a fixture
from tests.channels.conftest import CHANNEL_CLINICS, OPEN_NUMBER, write_clinics

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=timezone.utc)
PATIENT = "+447700900601"


@pytest.fixture(params=["sqlite", "postgres"])
def sessions(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'arrivals.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    upgrade(url)
    load_clinics_file(database_url=url,
                      path=write_clinics(tmp_path / "clinics.yml", CHANNEL_CLINICS))
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def arrival(body: str, *, sid: str, patient: str = PATIENT, to: str = OPEN_NUMBER,
            seconds: int = 0) -> NewArrival:
    return NewArrival(Channel.sms, {"MessageSid": sid, "From": patient, "To": to, "Body": body},
                      NOW + timedelta(seconds=seconds))


def store(sessions, *batch: NewArrival) -> None:
    with sessions() as session, session.begin():
        arrivals.store(session, batch)


def take_in(sessions, limit: int = 50, *, each_apart: bool = True) -> arrivals.TakenIn:
    with sessions() as session, session.begin():
        return arrivals.take_in(session, limit=limit, each_apart=each_apart)


def waiting_texts(sessions) -> list[str]:
    with sessions() as session:
        return list(session.execute(select(InboxItem.text).order_by(InboxItem.id)).scalars())


def stored_arrivals(sessions) -> list[Arrival]:
    with sessions() as session:
        return list(session.execute(select(Arrival).order_by(Arrival.id)).scalars())


def test_a_message_sid_twilio_sends_twice_is_stored_and_taken_in_once(sessions):
    store(sessions, arrival("can I book?", sid="SMtwice"), arrival("can I book?", sid="SMtwice"))
    store(sessions, arrival("can I book?", sid="SMtwice"))
    assert len(stored_arrivals(sessions)) == 1

    taken = take_in(sessions)
    assert (taken.handled, taken.queued) == (1, True)
    # Twilio retries after the first was taken in: the inbox knows the MessageSid.
    store(sessions, arrival("can I book?", sid="SMtwice"))
    assert take_in(sessions).queued is False
    assert waiting_texts(sessions) == ["can I book?"]
    assert stored_arrivals(sessions) == []  # nothing of the message lingers outside the inbox


def test_arrivals_are_taken_in_in_the_order_they_came(sessions):
    store(sessions, *[arrival(f"message {n}", sid=f"SMorder{n}", seconds=n) for n in range(5)])
    store(sessions, *[arrival(f"message {n}", sid=f"SMorder{n}", seconds=n)
                      for n in range(5, 8)])
    assert take_in(sessions, limit=3).handled == 3
    assert take_in(sessions, limit=50).handled == 5
    assert waiting_texts(sessions) == [f"message {n}" for n in range(8)]
    with sessions() as session:
        received = session.execute(select(Message.created_at).order_by(Message.id)
                                   ).scalars().all()
    assert received == [NOW + timedelta(seconds=n) for n in range(8)]  # as it arrived


def test_an_emergency_and_a_stop_are_acted_on_as_they_are_taken_in(sessions):
    store(sessions, arrival("my lip is swollen and going white after filler", sid="SMurgent"),
          arrival("STOP", sid="SMstop", patient="+447700900602"))
    taken = take_in(sessions)
    # The on-call alert, the safety message and the opt-out confirmation: all to send now.
    assert len(taken.reply_ids) == 3
    assert taken.queued is False


def test_a_message_that_cannot_be_taken_in_stays_stored_and_costs_no_other(sessions):
    store(sessions, arrival("hello", sid="SMnowhere", to="+441632969999"),
          arrival("can I book?", sid="SMfine"))
    taken = take_in(sessions)
    assert (taken.handled, taken.queued) == (2, True)
    assert waiting_texts(sessions) == ["can I book?"]
    (kept,) = stored_arrivals(sessions)
    assert (kept.message_sid, kept.attempts) == ("SMnowhere", 1)
    assert kept.last_error.startswith("LookupError")

    for _ in range(MAX_ATTEMPTS):
        take_in(sessions)
    (kept,) = stored_arrivals(sessions)
    assert kept.attempts == MAX_ATTEMPTS  # given up on, but still stored for a person to see
    assert take_in(sessions).handled == 0


def test_a_pass_taken_together_fails_whole_and_leaves_every_arrival_stored(sessions):
    store(sessions, arrival("can I book?", sid="SMbefore"),
          arrival("hello", sid="SMnowhere", to="+441632969999"))
    with pytest.raises(LookupError):
        take_in(sessions, each_apart=False)
    assert waiting_texts(sessions) == []
    assert [(a.message_sid, a.attempts) for a in stored_arrivals(sessions)] == [
        ("SMbefore", 0), ("SMnowhere", 0)]
    # Taken in apart, the one that cannot be costs the other nothing.
    assert take_in(sessions).handled == 2
    assert waiting_texts(sessions) == ["can I book?"]


def test_passes_racing_in_two_processes_take_each_arrival_in_once_and_in_order(sessions):
    patients = [f"+4477009007{n:02d}" for n in range(10)]
    for turn in range(4):
        store(sessions, *[arrival(f"turn {turn}", sid=f"SMrace{p}{turn}", patient=p)
                          for p in patients])
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def intake() -> None:
        try:
            barrier.wait()
            while take_in(sessions, limit=7).handled:
                pass
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=intake) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with sessions() as session:
        assert session.execute(select(func.count()).select_from(Arrival)).scalar_one() == 0
        rows = session.execute(select(Message.from_number, InboxItem.text)
                               .join(Message, Message.id == InboxItem.message_id)
                               .order_by(InboxItem.id)).all()
    assert len(rows) == 40
    for patient in patients:
        assert [text for who, text in rows if who == patient] == [
            f"turn {turn}" for turn in range(4)]
