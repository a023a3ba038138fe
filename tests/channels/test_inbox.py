"""The inbox against a real database (SQLite and PostgreSQL, both migrated): each message stored
once, emergencies escalated as they are stored, each patient's messages claimed one at a time
in arrival order, replies stored with the message's completion, and a dialogue that stays
down hands the thread to staff."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from booking.clinics.config import load_clinics_file
from booking.db import make_engine, session_factory
from booking.messaging import inbox
from booking.messaging.inbox import InboxPolicy
from booking.migrate import upgrade
from booking.models import (
    Channel,
    Direction,
    Escalation,
    EscalationReason,
    InboxItem,
    InboxState,
    Message,
    Thread,
    ThreadState,
)
from tests.booking.test_concurrency import postgres_url  # noqa: F401 - a fixture
from tests.channels.conftest import CHANNEL_CLINICS, OPEN_NUMBER, STAFF_PHONE, write_clinics

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=timezone.utc)
POLICY = InboxPolicy(max_wait=timedelta(seconds=60), first_retry=0.5, max_retry=10,
                     lease=timedelta(seconds=60))
URGENT = "my lip is swollen and going white after filler"


@pytest.fixture(params=["sqlite", "postgres"])
def sessions(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'inbox.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    upgrade(url)
    load_clinics_file(database_url=url,
                      path=write_clinics(tmp_path / "clinics.yml", CHANNEL_CLINICS))
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def text(sessions, body: str, *, sid: str, patient: str = "+447700900501",
         at: datetime = NOW) -> inbox.Accepted:
    with sessions() as session, session.begin():
        return inbox.accept(session, channel=Channel.sms, now=at, params={
            "MessageSid": sid, "From": patient, "To": OPEN_NUMBER, "Body": body})


def claim(sessions, *, at: datetime = NOW, limit: int = 10) -> list[inbox.Claimed]:
    with sessions() as session, session.begin():
        return inbox.claim_due(session, now=at, limit=limit, policy=POLICY)


def answer(sessions, claimed: inbox.Claimed, replies: list[str], *, at: datetime = NOW
           ) -> tuple[int, ...]:
    with sessions() as session, session.begin():
        return inbox.answered(session, claimed=claimed, replies=replies, now=at)


def bodies_to(sessions, patient: str) -> list[str]:
    with sessions() as session:
        return list(session.execute(
            select(Message.body).where(Message.direction == Direction.outbound,
                                       Message.to_number == patient).order_by(Message.id)
        ).scalars())


def test_a_message_is_stored_once_per_message_sid_and_queued_once(sessions):
    first = text(sessions, "hi, can I book a check-up?", sid="SMonce")
    again = text(sessions, "hi, can I book a check-up?", sid="SMonce")
    assert (first.queued, first.duplicate) == (True, False)
    assert (again.queued, again.duplicate) == (False, True)
    with sessions() as session:
        assert len(session.execute(select(InboxItem)).scalars().all()) == 1


def test_a_patients_messages_are_claimed_one_at_a_time_in_arrival_order(sessions):
    for index, body in enumerate(["first", "second", "third"]):
        text(sessions, body, sid=f"SMorder{index}", at=NOW + timedelta(seconds=index))
    text(sessions, "someone else", sid="SMother", patient="+447700900502")
    batch = claim(sessions)
    assert sorted(c.text for c in batch) == ["first", "someone else"]
    assert claim(sessions) == []  # the second waits for the first, even unclaimed by us
    first = next(c for c in batch if c.text == "first")
    reply_ids = answer(sessions, first, ["Sure, which treatment?"])
    assert len(reply_ids) == 1
    assert bodies_to(sessions, "+447700900501") == ["Sure, which treatment?"]
    assert [c.text for c in claim(sessions)] == ["second"]


def test_replies_are_stored_once_even_if_a_lost_lease_answers_late(sessions):
    text(sessions, "yes please", sid="SMlease")
    (stale,) = claim(sessions)
    (fresh,) = claim(sessions, at=NOW + POLICY.lease + timedelta(seconds=1))
    assert fresh.item_id == stale.item_id and fresh.claim_token != stale.claim_token
    assert answer(sessions, stale, ["from the slow worker"]) == ()
    assert len(answer(sessions, fresh, ["from the worker that has it"])) == 1
    assert bodies_to(sessions, "+447700900501") == ["from the worker that has it"]


def test_a_dialogue_that_is_down_is_retried_with_backoff_then_staff_get_the_thread(sessions):
    text(sessions, "can I move my appointment", sid="SMdown1")
    text(sessions, "hello?", sid="SMdown2", at=NOW + timedelta(seconds=5))
    (first,) = claim(sessions)
    with sessions() as session, session.begin():
        assert inbox.retry_later(session, claimed=first, error="connection refused",
                                 now=NOW, policy=POLICY) == ()
    assert claim(sessions) == []  # backing off
    later = NOW + timedelta(seconds=61)
    (again,) = claim(sessions, at=later)
    with sessions() as session, session.begin():
        to_send = inbox.retry_later(session, claimed=again, error="connection refused",
                                    now=later, policy=POLICY)
    assert to_send
    with sessions() as session:
        states = session.execute(select(InboxItem.state).order_by(InboxItem.id)).scalars()
        assert list(states) == [InboxState.handed_to_staff] * 2
        (escalation,) = session.execute(select(Escalation)).scalars().all()
        assert escalation.reason == EscalationReason.bot_unavailable
        assert "hello?" in escalation.summary
        assert session.execute(select(Thread.state)).scalar_one() == ThreadState.handed_off
    (holding,) = bodies_to(sessions, "+447700900501")
    assert "team" in holding
    # What the patient writes next is for staff: the bot does not read it.
    text(sessions, "are you there?", sid="SMdown3", at=later)
    assert claim(sessions, at=later) == []
    with sessions() as session:
        assert session.execute(select(InboxItem.state).order_by(InboxItem.id.desc())
                               ).scalars().first() == InboxState.held


def queue_missed_call(sessions, patient: str = "+447700900501") -> None:
    """The dialogue's news of a missed call, stored with the text-back (here: the last
    message we sent them), as the gateway's follow-up does."""
    with sessions() as session, session.begin():
        text_back = session.execute(
            select(Message).where(Message.direction == Direction.outbound,
                                  Message.to_number == patient).order_by(Message.id.desc())
        ).scalars().first()
        inbox.queue_event(session, thread_id=text_back.thread_id, message_id=text_back.id,
                          intent="EXTERNAL_missed_call", now=NOW)


def test_the_dialogue_hears_of_a_missed_call_before_the_reply_to_its_text_back(sessions):
    text(sessions, "hi", sid="SMearlier")
    (earlier,) = claim(sessions)
    answer(sessions, earlier, ["Hello! How can we help?"])
    queue_missed_call(sessions)
    text(sessions, "yes please", sid="SMreply", at=NOW + timedelta(seconds=1))
    (event,) = claim(sessions)
    assert (event.intent, event.text) == ("EXTERNAL_missed_call", "")
    assert claim(sessions) == []  # the reply waits for the event
    assert answer(sessions, event, []) == ()
    (reply,) = claim(sessions)
    assert (reply.intent, reply.text) == (None, "yes please")


def test_an_event_the_dialogue_cannot_be_told_in_time_expires_without_troubling_staff(sessions):
    text(sessions, "hi", sid="SMbefore")
    (earlier,) = claim(sessions)
    answer(sessions, earlier, ["Hello! How can we help?"])
    queue_missed_call(sessions)
    (event,) = claim(sessions)
    later = NOW + POLICY.max_wait + timedelta(seconds=1)
    with sessions() as session, session.begin():
        assert inbox.retry_later(session, claimed=event, error="connection refused",
                                 now=later, policy=POLICY) == ()
    with sessions() as session:
        assert session.execute(select(InboxItem.state).where(InboxItem.id == event.item_id)
                               ).scalar_one() == InboxState.expired
        assert session.execute(select(Escalation)).scalars().all() == []
        assert session.execute(select(Thread.state)).scalar_one() == ThreadState.bot
    text(sessions, "are you open today?", sid="SMafter", at=later)
    assert [c.text for c in claim(sessions, at=later)] == ["are you open today?"]


def test_an_emergency_is_escalated_as_it_is_stored_once(sessions):
    accepted = text(sessions, URGENT, sid="SMurgent1")
    assert not accepted.queued and len(accepted.reply_ids) >= 1
    text(sessions, URGENT + ", it's getting worse", sid="SMurgent2")  # staff are on it already
    text(sessions, "please hurry", sid="SMurgent3")
    assert claim(sessions) == []  # staff hold the thread now, not the bot
    with sessions() as session:
        (escalation,) = session.execute(select(Escalation)).scalars().all()
        assert escalation.reason == EscalationReason.urgent and escalation.red_flag_rule
        assert session.execute(select(InboxItem.state)).scalars().all() == [InboxState.held] * 2
    told = bodies_to(sessions, "+447700900501")
    # The safety message, then once (not after every message) that the team has the rest.
    assert len(told) == 2 and "on-call" in told[0] and "has this message too" in told[1]


def test_staff_and_keywords_never_reach_the_dialogue(sessions):
    assert not text(sessions, "ACK", sid="SMstaff", patient=STAFF_PHONE).queued
    stop = text(sessions, "STOP", sid="SMstop", patient="+447700900503")
    assert not stop.queued and stop.reply_ids
    assert not text(sessions, "book me in", sid="SMafter", patient="+447700900503").queued
    assert claim(sessions) == []


def test_command_syntax_and_nul_bytes_are_stored_as_the_dialogue_must_read_them(sessions):
    text(sessions, "/ /deny@0.5 my tooth\x00 hurts", sid="SMnul")
    (claimed,) = claim(sessions)
    assert claimed.text == "deny@0.5 my tooth hurts"
    with sessions() as session:
        assert session.execute(select(Message.body).where(Message.twilio_sid == "SMnul")
                               ).scalar_one() == "/ /deny@0.5 my tooth hurts"


@pytest.mark.postgres
def test_racing_workers_on_postgres_take_each_message_once_in_each_patients_order(
        postgres_url, tmp_path):  # noqa: F811
    upgrade(postgres_url)
    load_clinics_file(database_url=postgres_url,
                      path=write_clinics(tmp_path / "clinics.yml", CHANNEL_CLINICS))
    sessions = session_factory(make_engine(postgres_url))
    patients = [f"+4477009006{i:02d}" for i in range(10)]
    for turn in range(5):
        for patient in patients:
            text(sessions, f"{patient} {turn}", sid=f"SM{patient[1:]}-{turn}", patient=patient,
                 at=NOW + timedelta(seconds=turn))
    seen: dict[str, list[int]] = defaultdict(list)
    taken: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        idle = 0
        while idle < 20:
            batch = claim(sessions, at=NOW + timedelta(seconds=10), limit=3)
            idle = 0 if batch else idle + 1
            for claimed in batch:
                patient, turn = claimed.text.split()
                with lock:
                    seen[patient].append(int(turn))
                    taken.append(claimed.item_id)
                answer(sessions, claimed, [f"reply {turn}"], at=NOW + timedelta(seconds=10))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(taken) == len(set(taken)) == 50
    assert all(turns == [0, 1, 2, 3, 4] for turns in seen.values()) and len(seen) == 10
    for patient in patients:
        assert bodies_to(sessions, patient) == [f"reply {turn}" for turn in range(5)]


def test_a_thread_staff_take_while_the_dialogue_is_down_is_theirs_without_a_second_handover(
        sessions):
    text(sessions, "can I book?", sid="SMtaken")
    (claimed,) = claim(sessions)
    with sessions() as session, session.begin():
        session.execute(select(Thread)).scalar_one().state = ThreadState.handed_off
    later = NOW + timedelta(seconds=120)  # past the longest wait: it would have gone to staff
    with sessions() as session, session.begin():
        assert inbox.retry_later(session, claimed=claimed, error="timeout", now=later,
                                 policy=POLICY) == ()
    with sessions() as session:
        assert session.execute(select(InboxItem.state)).scalar_one() == InboxState.held
        assert session.execute(select(Escalation)).scalars().all() == []
    assert bodies_to(sessions, "+447700900501") == []
