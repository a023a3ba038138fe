"""Retention and patients' rights against a running stack of its own (real Rasa, action server,
gateway, SQLite booking database and Rasa's SQL tracker store):

- the gateway's scheduled purge removes words past the clinic's retention from both databases
  and keeps newer ones;
- `ringback patient export` gives everything held about one patient, and `ringback patient
  erase` then leaves nothing in either database that names them, while the funnel's counts do
  not move.

Its own stack: purging and erasing must not touch the other tests' patients."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from booking.models import AuditEvent, Contact, InboxItem, Message, Thread, utcnow
from booking.reports.metrics import clinic_figures
from booking.reports.periods import last_days
from tests.console.conftest import CLINIC_NUMBER, URGENT, bot_answer, escalation_of, thread_of
from tests.stack import start_stack

pytestmark = pytest.mark.integration

RINGBACK = str(Path(sys.executable).parent / "ringback")
THREE_YEARS = timedelta(days=3 * 365)


@pytest.fixture(scope="module")
def stack(trained_model: Path, tmp_path_factory: pytest.TempPathFactory):
    running = start_stack(tmp_path_factory.mktemp("records"), model=trained_model,
                          extra_env={"RETENTION_PURGE_INTERVAL_SECONDS": "0.5"})
    yield running
    running.stop()


@pytest.fixture
def engines(stack) -> Iterator[tuple[Engine, Engine]]:
    booking = create_engine(stack.database_url, future=True)
    tracker = create_engine(stack.settings.rasa_tracker_store_url, future=True)
    yield booking, tracker
    booking.dispose()
    tracker.dispose()


@pytest.fixture
def db(engines) -> Iterator[Session]:
    with Session(engines[0]) as session:
        yield session


def where_found(engine: Engine, needle: str) -> list[str]:
    """Every table.column of the database whose text holds `needle`, whatever its type."""
    found = []
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            for column in inspect(engine).get_columns(table):
                hits = connection.execute(text(
                    f'SELECT count(*) FROM "{table}" WHERE CAST("{column["name"]}" AS TEXT) '
                    "LIKE :needle"), {"needle": f"%{needle}%"}).scalar()
                if hits:
                    found.append(f"{table}.{column['name']}")
    return found


def wait_until(condition, *, timeout: float = 60.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def conversation(stack, db: Session, patient: str, said: str) -> Thread:
    """A missed call, the text-back, and one message the bot answers."""
    stack.phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    stack.phone.wait_for(patient, count=1)
    assert bot_answer(stack, db, patient, said)
    return thread_of(db, patient)


def backdate(db: Session, tracker: Engine, thread: Thread, by: timedelta) -> None:
    """Make a conversation as old as one from years ago, in both databases."""
    for message in db.execute(select(Message).where(Message.thread_id == thread.id)).scalars():
        message.created_at -= by
    for item in db.execute(select(InboxItem).where(InboxItem.thread_id == thread.id)).scalars():
        item.received_at -= by
    db.commit()
    with tracker.begin() as connection:
        moved = connection.execute(text(
            "UPDATE events SET timestamp = timestamp - :seconds WHERE sender_id = :sender"),
            {"seconds": by.total_seconds(), "sender": thread.sender_id}).rowcount
    assert moved


def test_the_gateways_purge_removes_old_words_from_both_databases_and_keeps_new_ones(
        stack, engines, db):
    booking, tracker = engines
    old = conversation(stack, db, "+447700900801", "hello, old words quokka please")
    new = conversation(stack, db, "+447700900802", "hello, new words wombat please")
    assert where_found(tracker, "quokka") == ["events.data"]
    backdate(db, tracker, old, THREE_YEARS)

    # Nothing runs the purge here: the gateway does, every RETENTION_PURGE_INTERVAL_SECONDS.
    wait_until(lambda: not where_found(booking, "quokka") and not where_found(tracker, "quokka"),
               what="the old words are still stored")
    assert set(where_found(booking, "wombat")) == {"messages.body", "inbox_items.text"}
    assert where_found(tracker, "wombat") == ["events.data"]
    db.expire_all()
    # The rows stay (they are counted), emptied of words.
    old_rows = db.execute(select(Message).where(Message.thread_id == old.id)).scalars().all()
    assert old_rows and all(row.body == "" for row in old_rows)
    with tracker.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM events WHERE sender_id = :s"),
                                  {"s": new.sender_id}).scalar() > 0


def ringback(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RINGBACK, *args], env=stack.env, capture_output=True, text=True,
                          timeout=120)


def test_export_then_erase_leaves_nothing_that_names_the_patient(stack, engines, db):
    booking, tracker = engines
    patient, digits = "+447700900811", "7700900811"
    first, last = "Zebediah", "Quinlan"
    thread = conversation(stack, db, patient, f"hi, it's {first} {last}, I'd like to book")
    # On file at the clinic, as a known patient's details would be.
    contact = db.get(Contact, thread.contact_id)
    contact.first_name, contact.last_name, contact.email = first, last, "zq@example.org"
    db.commit()
    stack.phone.reply_and_wait(sender=patient, clinic_number=CLINIC_NUMBER, body=URGENT)
    escalation = escalation_of(db, patient)
    # The on-call clinician's alert quotes them: that copy is theirs too.
    alert = stack.phone.wait_for("+447700900111", count=1,
                                 where=lambda m: patient in m["body"])[0]
    assert first in alert["body"]

    clinic_id = thread.clinic_id
    period = last_days(1, now=utcnow() + timedelta(minutes=1), zone="Europe/London")
    with Session(booking) as session:
        counted = clinic_figures(session, clinic_id=clinic_id, period=period)

    exported = ringback(stack, "patient", "export", "--clinic", "riverside",
                        "--phone", "07700 900811")
    assert exported.returncode == 0, exported.stderr
    held = json.loads(exported.stdout)
    assert held["phone"] == patient
    tables = held["booking_database"]
    assert tables["contact"][0]["first_name"] == first
    assert any(first in m["body"] for m in tables["messages"] if m["author"] == "patient")
    assert any(first in m["body"] and m["to_number"] == "+447700900111"
               for m in tables["messages"])
    assert [e["id"] for e in tables["escalations"]] == [escalation.id]
    assert tables["missed_calls"] and tables["funnel_events"]
    assert any(first in json.dumps(event["data"]) for event in held["rasa_tracker_store"])

    erased = ringback(stack, "patient", "erase", "--clinic", "riverside", "--phone", patient)
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.startswith(f"erased {patient} at riverside:")
    for needle in (digits, first, last, "zq@example.org"):
        assert where_found(booking, needle) == [], needle
        assert where_found(tracker, needle) == [], needle

    with Session(booking) as session:
        assert clinic_figures(session, clinic_id=clinic_id, period=period) == counted
        trail = session.execute(select(AuditEvent).where(
            AuditEvent.contact_id == contact.id).order_by(AuditEvent.id)).scalars().all()
    assert [(e.action, e.channel) for e in trail if e.actor.startswith("cli:")] == [
        ("export", "cli"), ("erase", "cli")]

    # Asked again, the clinic holds nothing for that number: a clear error, nothing changed.
    again = ringback(stack, "patient", "export", "--clinic", "riverside", "--phone", patient)
    assert again.returncode == 2 and "holds nothing" in again.stderr


def test_patient_commands_refuse_bad_input(stack):
    unknown = ringback(stack, "patient", "export", "--clinic", "nowhere",
                       "--phone", "+447700900811")
    assert unknown.returncode == 2 and "no clinic 'nowhere'" in unknown.stderr
    garbage = ringback(stack, "patient", "erase", "--clinic", "riverside", "--phone", "call me")
    assert garbage.returncode == 2 and "not a phone number" in garbage.stderr
    assert ringback(stack, "purge", "--clinic", "nowhere").returncode == 2
    purged = ringback(stack, "purge")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.count("words before") == 2  # riverside and northside


def test_the_files_the_stack_creates_are_its_users_alone(stack, engines):
    booking, tracker = engines
    with tracker.connect() as connection:  # Rasa has made its store by now
        assert connection.execute(text("SELECT count(*) FROM events")).scalar() >= 0
    made = [stack.run_dir / "ringback.db", stack.run_dir / "rasa_tracker.db",
            stack.run_dir / "endpoints.yml", stack.run_dir / "logs",
            *(stack.run_dir / "logs").iterdir(), *stack.run_dir.glob("*.db-*")]
    assert len(made) >= 7
    open_to_others = {path.name: oct(path.stat().st_mode & 0o777) for path in made
                      if path.stat().st_mode & 0o077}
    assert open_to_others == {}
