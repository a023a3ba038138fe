"""No patient message is lost when the dialogue is down: the whole stack (simulator, gateway,
Rasa, action server) with processes killed and restarted under it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from booking.messaging.conversations import sender_id_for
from booking.models import Direction, InboxItem, InboxState, Message
from booking.settings import PROJECT_ROOT
from simulator.client import SimulatedPhone
from stack.supervisor import Supervisor, services, with_backend_tokens
from tests.channels.conftest import (
    CHANNEL_CLINICS,
    OPEN_NUMBER,
    STAFF_PHONE,
    new_patient,
    wait_until,
    write_clinics,
)
from tests.channels.test_resilience import FAST_RETRIES, OutageStack
from tests.stack import stack_environment

pytestmark = pytest.mark.integration

QUESTION = "what time do you open?"
URGENT = "my lip is swollen and going white after filler"


@pytest.fixture(scope="module")
def full_outage(trained_model: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[OutageStack]:
    run_dir = tmp_path_factory.mktemp("inbox-outage")
    env = stack_environment(run_dir, extra={
        **FAST_RETRIES,
        "INBOX_FIRST_RETRY_SECONDS": "0.2", "INBOX_MAX_RETRY_SECONDS": "1",
        "INBOX_SWEEP_INTERVAL_SECONDS": "0.2",
        # Longer than Rasa takes to come back: these tests want every message answered.
        "INBOX_MAX_WAIT_SECONDS": "600",
        "CLINICS_FILE": str(write_clinics(run_dir / "clinics.yml", CHANNEL_CLINICS))})
    ringback = str(Path(sys.executable).parent / "ringback")
    for command in (["migrate"], ["load-clinics"]):
        subprocess.run([ringback, *command], cwd=PROJECT_ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    settings, env = with_backend_tokens(env)
    supervisor = Supervisor(services(settings, model=trained_model, run_dir=run_dir,
                                     with_simulator=True), env=env, log_dir=run_dir / "logs")
    supervisor.start(timeout=240, stop_on_signals=False)
    running = OutageStack(settings=settings, env=env, supervisor=supervisor,
                          phone=SimulatedPhone(env["TWILIO_API_BASE_URL"]),
                          log_dir=run_dir / "logs")
    yield running
    running.phone.close()
    supervisor.stop()


def database(stack: OutageStack) -> Session:
    return Session(create_engine(stack.settings.database_url, future=True))


def inbox_of(stack: OutageStack, patient: str) -> list[InboxItem]:
    with database(stack) as session:
        return list(session.execute(
            select(InboxItem).join(Message, Message.id == InboxItem.message_id)
            .where(Message.from_number == patient).order_by(InboxItem.id)).scalars())


def replies_to(stack: OutageStack, patient: str) -> list[Message]:
    with database(stack) as session:
        return list(session.execute(
            select(Message).where(Message.direction == Direction.outbound,
                                  Message.to_number == patient).order_by(Message.id)).scalars())


def dialogue_turns(stack: OutageStack, patient: str) -> list[str]:
    """The message ids of the patient's turns in Rasa's tracker, in the order it read them."""
    sender = sender_id_for(clinic_slug="allday", phone=patient)
    tracker = httpx.get(f"{stack.settings.rasa_url}/conversations/{sender}/tracker",
                        params={"token": stack.settings.rasa_token}, timeout=30).json()
    return [event["message_id"] for event in tracker["events"] if event["event"] == "user"]


def test_messages_sent_while_rasa_is_dead_are_each_answered_once_in_order(full_outage):
    stack = full_outage
    patient, others = new_patient(), [new_patient() for _ in range(5)]
    stack.phone.reply_and_wait(sender=patient, clinic_number=OPEN_NUMBER, body=QUESTION)
    stack.stop("rasa", sig=signal.SIGKILL)
    try:
        sent = [(patient, OPEN_NUMBER)] * 10 + [(other, OPEN_NUMBER) for other in others] * 2
        for sender, clinic_number in sent:
            answer = stack.phone.text(sender=sender, clinic_number=clinic_number, body=QUESTION)
            assert answer["webhook_status"] == 200  # stored, whatever the dialogue's state
        time.sleep(1)  # the inbox has tried (and failed) meanwhile
        assert all(item.state == InboxState.waiting for item in inbox_of(stack, patient)[1:])
    finally:
        stack.start("rasa")
    for sender, expected in [(patient, 11), *((other, 2) for other in others)]:
        stack.phone.wait_for(sender, count=expected, timeout=120)
        wait_until(lambda s=sender: all(i.state == InboxState.answered
                                        for i in inbox_of(stack, s)),
                   timeout=60, message=f"every message of {sender} answered")
        items = inbox_of(stack, sender)
        assert len(items) == expected
        assert len(replies_to(stack, sender)) == expected  # one reply each, none twice
        assert dialogue_turns(stack, sender) == [f"inbox-{item.id}" for item in items]
    time.sleep(2)  # nothing more arrives later either
    assert len(stack.phone.sent_to(patient)) == 11


def test_with_the_action_server_down_an_emergency_still_gets_its_safety_net(full_outage):
    stack = full_outage
    patient = new_patient()
    stack.stop("action server")
    try:
        started = time.monotonic()
        stack.phone.text(sender=patient, clinic_number=OPEN_NUMBER, body=URGENT)
        (safety,) = stack.phone.wait_for(patient, count=1, timeout=5)
        stack.phone.wait_for(STAFF_PHONE, count=1, timeout=5,
                             where=lambda m: patient in m["body"])
        assert time.monotonic() - started < 5
        assert "on-call" in safety["body"]
        # A message that needs an action waits (Rasa's failed turn is rewound, not answered).
        helper = new_patient()
        stack.phone.text(sender=helper, clinic_number=OPEN_NUMBER, body="yes please book me in")
        wait_until(lambda: [i.attempts >= 2 for i in inbox_of(stack, helper)] == [True],
                   timeout=30, message="the dialogue's failure retried")
        assert stack.phone.sent_to(helper) == []
    finally:
        stack.start("action server")
    stack.phone.wait_for(helper, count=1, timeout=60)
    wait_until(lambda: [i.state for i in inbox_of(stack, helper)] == [InboxState.answered],
               timeout=30, message="answered once the action server is back")
    time.sleep(1)
    assert len(stack.phone.sent_to(helper)) == 1
    assert len(stack.phone.sent_to(patient)) == 1  # escalated once, never by the dialogue too
