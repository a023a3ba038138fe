"""Rasa's tracker store on PostgreSQL: one conversation session per tracker however many a
patient has had (the booking database keeps every message), and an unreachable store is an
error (Rasa refuses to start; its health check and each message say so) instead of a
conversation kept in memory."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import psycopg2
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from booking.models import Direction, InboxItem, InboxState, Message
from booking.settings import Settings
from stack.supervisor import Supervisor, services, with_backend_tokens
from tests.channels.conftest import twilio_post, wait_until
from tests.postgres import ADMIN, throwaway_database
from tests.stack import free_port, free_ports_in_a_row, stack_environment, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CLINIC_NUMBER = "+441632960001"
PATIENT = "+447700900555"
SENDER = f"riverside:{PATIENT}"
QUESTION = "what time do you open?"
SESSIONS = 4
# Older than domain.yml's session_expiration_time (a week).
EIGHT_DAYS = 8 * 24 * 3600


def _tracker_rows(connection) -> tuple[int, int]:
    """(events, SessionStarted events) stored for the patient's conversation."""
    return tuple(connection.execute(text(
        "SELECT count(*), count(*) FILTER (WHERE type_name = 'session_started') "
        "FROM events WHERE sender_id = :sender"), {"sender": SENDER}).one())


def test_a_tracker_holds_one_session_while_the_booking_database_keeps_every_message(
        trained_model, tmp_path):
    with throwaway_database("ringback_bounded") as database_url:
        stack = start_stack(tmp_path, model=trained_model, database_url=database_url)
        engine = create_engine(database_url, future=True)
        try:
            sizes = []
            for session_number in range(SESSIONS):
                sid = f"SMbounded{session_number}"
                assert twilio_post(f"{stack.gateway}/twilio/messaging/sms", {
                    "MessageSid": sid, "From": PATIENT, "To": CLINIC_NUMBER,
                    "Body": QUESTION}).status_code == 200
                with Session(engine) as session:
                    def answered(session=session, expected=session_number + 1) -> bool:
                        states = session.execute(select(InboxItem.state)).scalars().all()
                        session.rollback()  # a fresh snapshot on each look
                        return (len(states) == expected
                                and set(states) == {InboxState.answered})

                    wait_until(answered, timeout=120, message=f"message {sid} answered")
                with engine.begin() as connection:
                    events, session_starts = _tracker_rows(connection)
                    assert session_starts == 1
                    sizes.append(events)
                    # A week and a day of silence: the next message starts a new session.
                    # (Rasa reads an event's time from its JSON, queries by the column.)
                    connection.execute(text(
                        "UPDATE events SET timestamp = timestamp - :age, data = jsonb_set("
                        "data::jsonb, '{timestamp}', to_jsonb((data::jsonb->>'timestamp')"
                        "::float8 - :age))::text WHERE sender_id = :sender"),
                        {"age": EIGHT_DAYS, "sender": SENDER})
            # The first session has no slots to carry over; every later one holds the same
            # events, however many came before it.
            assert len(set(sizes[1:])) == 1, sizes
            with Session(engine) as session:
                inbound = session.scalar(select(func.count()).select_from(Message).where(
                    Message.direction == Direction.inbound, Message.from_number == PATIENT))
            assert inbound == SESSIONS
        finally:
            engine.dispose()
            stack.stop()


def _rasa_alone(tmp_path: Path, model: Path, *, tracker_store_url: str,
                extra: dict[str, str] | None = None) -> tuple[Supervisor, Settings]:
    """A Rasa server (and the action server it needs) on `tracker_store_url`."""
    rasa_port = free_ports_in_a_row(1)
    env = stack_environment(tmp_path, extra={
        "TRACKER_STORE_URL": tracker_store_url, "RASA_PORT": str(rasa_port),
        "RASA_URL": f"http://127.0.0.1:{rasa_port}", **(extra or {})})
    settings, env = with_backend_tokens(env)
    wanted = [each for each in services(settings, model=model, run_dir=tmp_path,
                                        with_simulator=False)
              if each.name in ("action server", "rasa")]
    return Supervisor(wanted, env=env, log_dir=tmp_path / "logs"), settings


def test_rasa_refuses_to_start_without_its_tracker_store(trained_model, tmp_path):
    nobody_listens = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/ringback"
    supervisor, _ = _rasa_alone(tmp_path, trained_model, tracker_store_url=nobody_listens,
                                extra={"TRACKER_STORE_START_TIMEOUT_SECONDS": "1"})
    with pytest.raises(RuntimeError, match="rasa exited"):
        supervisor.start(timeout=240, stop_on_signals=False)
    log = (tmp_path / "logs" / "rasa.log").read_text()
    assert "did not answer within 1 s" in log
    assert "InMemoryTrackerStore" not in log


def _allow_connections(database: str, allowed: bool) -> None:
    admin = psycopg2.connect(**ADMIN)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {allowed}')
        if not allowed:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = %s", (database,))
    admin.close()


def test_a_tracker_store_outage_fails_the_health_check_and_each_message(trained_model,
                                                                          tmp_path):
    with throwaway_database("ringback_outage") as tracker_store_url:
        database = tracker_store_url.rsplit("/", 1)[1]
        stack = start_stack(tmp_path, model=trained_model,
                            extra_env={"TRACKER_STORE_URL": tracker_store_url})
        health = f"{stack.rasa}/webhooks/ringback/"

        def say(text_: str) -> httpx.Response:
            """A message straight to Rasa's channel, as the gateway's inbox sends it."""
            return httpx.post(
                f"{stack.rasa}/webhooks/ringback/webhook", timeout=60,
                headers={"Authorization": f"Bearer {stack.env['RASA_TOKEN']}"},
                json={"sender": SENDER, "text": text_, "message_id": uuid.uuid4().hex,
                      "metadata": {"clinic": "riverside", "channel": "sms"}})

        try:
            # The patient's thread, through the gateway as ever.
            assert twilio_post(f"{stack.gateway}/twilio/messaging/sms", {
                "MessageSid": "SMoutage0", "From": PATIENT, "To": CLINIC_NUMBER,
                "Body": QUESTION}).status_code == 200
            stack.phone.wait_for(PATIENT, count=1, timeout=120)
            assert httpx.get(health, timeout=10).status_code == 200
            _allow_connections(database, False)
            try:
                answer = httpx.get(health, timeout=10)
                assert (answer.status_code, answer.json()) == (
                    503, {"status": "tracker store unreachable"})
                # Rasa's own store would answer from an empty conversation kept in memory.
                refused = say(QUESTION)
                assert (refused.status_code, refused.json()) == (
                    503, {"error": "the tracker store is not answering"})
            finally:
                _allow_connections(database, True)
            wait_until(lambda: httpx.get(health, timeout=10).status_code == 200,
                       message="healthy again")
            # The pool's connections died with the outage: the first use after it may fail
            # once more (the gateway would deliver again), then the conversation carries on.
            wait_until(lambda: say("thanks").status_code == 200, message="answered again")
            engine = create_engine(tracker_store_url, future=True)
            with engine.connect() as connection:
                users = connection.execute(text(
                    "SELECT count(*) FROM events WHERE sender_id = :sender "
                    "AND type_name = 'user'"), {"sender": SENDER}).scalar()
            engine.dispose()
            # The message refused during the outage was kept nowhere: the tracker holds the
            # one before it and the one after.
            assert users == 2
            # The failure is in Rasa's log without the patient's number or words.
            log = (tmp_path / "logs" / "rasa.log").read_text()
            assert "the tracker store failed" in log
            assert PATIENT not in log and QUESTION not in log
        finally:
            stack.stop()
