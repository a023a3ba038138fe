"""Twilio down, the gateway crashing, answers lost in a timeout: every text-back still arrives
exactly once. A stack of its own (Twilio fake with a state file, and the gateway), because these
tests stop and restart processes; Rasa is not needed for text-backs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from booking.calls.recovery import register_missed_call
from booking.clinics.lookups import find_clinic_by_number
from booking.models import Direction, Message, MessageStatus, utcnow
from booking.settings import PROJECT_ROOT, Settings
from simulator.client import SimulatedPhone
from stack.supervisor import Service, Supervisor, services, with_backend_tokens
from tests.channels.conftest import (
    CHANNEL_CLINICS,
    CLOSED_NUMBER,
    OPEN_NUMBER,
    STAFF_PHONE,
    new_patient,
    twilio_post,
    wait_until,
    write_clinics,
)
from tests.stack import stack_environment

pytestmark = pytest.mark.integration

FAST_RETRIES = {
    "OUTBOX_FIRST_RETRY_SECONDS": "0.2",
    "OUTBOX_MAX_RETRY_SECONDS": "1",
    "OUTBOX_SWEEP_INTERVAL_SECONDS": "0.2",
    "TWILIO_TIMEOUT_SECONDS": "1",
    # Rasa is not started here: the dialogue is down for as long as these tests run.
    "INBOX_MAX_WAIT_SECONDS": "3",
    "INBOX_FIRST_RETRY_SECONDS": "0.2",
    "INBOX_MAX_RETRY_SECONDS": "1",
}


@dataclass
class OutageStack:
    settings: Settings
    env: dict[str, str]
    supervisor: Supervisor
    phone: SimulatedPhone
    log_dir: Path

    def service(self, name: str) -> Service:
        return next(s for s in self.supervisor.services if s.name == name)

    def stop(self, name: str, *, sig: int = signal.SIGTERM) -> None:
        process = self.service(name).process
        os.killpg(process.pid, sig)
        process.wait(timeout=15)

    def start(self, name: str) -> None:
        """Start the service again, same command, same port, and wait until it is healthy."""
        service = self.service(name)
        log = open(self.log_dir / f"{name.replace(' ', '_')}.log", "ab")  # noqa: SIM115
        service.process = subprocess.Popen(service.command, cwd=PROJECT_ROOT, env=self.env,
                                           stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        wait_until(lambda: _healthy(service.health_url), timeout=60,
                   message=f"{name} healthy again")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageStack]:
    run_dir = tmp_path_factory.mktemp("outage")
    settings, env = with_backend_tokens(stack_environment(run_dir, extra={
        **FAST_RETRIES,
        "CLINICS_FILE": str(write_clinics(run_dir / "clinics.yml", CHANNEL_CLINICS))}))
    ringback = str(Path(sys.executable).parent / "ringback")
    for command in (["migrate"], ["load-clinics"]):
        subprocess.run([ringback, *command], cwd=PROJECT_ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    wanted = [s for s in services(settings, model=Path("unused"), run_dir=run_dir,
                                  with_simulator=True)
              if s.name in ("twilio simulator", "gateway")]
    for service in wanted:
        if service.name == "twilio simulator":
            # Its log survives a restart, as Twilio's does.
            service.command += ["--state-file", str(run_dir / "twilio-state.json")]
    supervisor = Supervisor(wanted, env=env, log_dir=run_dir / "logs")
    supervisor.start(timeout=120, stop_on_signals=False)
    running = OutageStack(settings=settings, env=env, supervisor=supervisor,
                          phone=SimulatedPhone(env["TWILIO_API_BASE_URL"]),
                          log_dir=run_dir / "logs")
    yield running
    running.phone.close()
    supervisor.stop()


def missed_call(stack: OutageStack, caller: str) -> httpx.Response:
    """Twilio Voice calling the gateway for an after-hours call (the fake may be down)."""
    return twilio_post(f"{stack.settings.gateway_public_url}/twilio/voice",
                       {"CallSid": f"CAout{caller[1:]}{time.time_ns()}", "From": caller,
                        "To": CLOSED_NUMBER, "CallStatus": "ringing"})


def outbound(stack: OutageStack, callers: list[str]) -> list[Message]:
    engine = create_engine(stack.settings.database_url, future=True)
    try:
        with Session(engine) as session:
            return list(session.execute(select(Message).where(
                Message.direction == Direction.outbound, Message.to_number.in_(callers))
                .order_by(Message.id)).scalars())
    finally:
        engine.dispose()


def test_twilio_down_and_gateway_crash_then_every_text_back_arrives_once(outage):
    callers = [new_patient() for _ in range(5)]
    outage.stop("twilio simulator")
    try:
        assert [missed_call(outage, c).status_code for c in callers] == [200] * 5
        # Stored before the webhooks answered, and retried (with backoff) while Twilio is down.
        wait_until(lambda: all(m.attempts >= 2 and m.status == MessageStatus.pending
                               for m in outbound(outage, callers))
                   and len(outbound(outage, callers)) == 5,
                   message="text-backs stored and retried")
        # The gateway dies with the text-backs still unsent, and comes back.
        outage.stop("gateway", sig=signal.SIGKILL)
        outage.start("gateway")
    finally:
        outage.start("twilio simulator")

    for caller in callers:
        (text_back,) = outage.phone.wait_for(caller, count=1)
        assert "Nightowl Physio" in text_back["body"]
    wait_until(lambda: all(m.status == MessageStatus.delivered
                           for m in outbound(outage, callers)),
               message="every text-back reported delivered")
    # Nothing left to send, so nothing more can arrive: each went out exactly once.
    rows = outbound(outage, callers)
    assert sorted(m.twilio_sid for m in rows) == sorted(
        m["sid"] for c in callers for m in outage.phone.sent_to(c))
    assert all(len(outage.phone.sent_to(c)) == 1 for c in callers)


def test_a_call_stored_just_before_a_crash_is_texted_back_after_the_restart(outage):
    """The webhook stored the call and answered; the process died before deciding it."""
    caller = new_patient()
    outage.stop("gateway", sig=signal.SIGKILL)
    try:
        engine = create_engine(outage.settings.database_url, future=True)
        with Session(engine) as session, session.begin():
            clinic = find_clinic_by_number(session, CLOSED_NUMBER)
            recorded = register_missed_call(
                session, clinic=clinic, caller=caller, call_sid=f"CAcrash{caller[1:]}",
                dial_status="no-answer", source="twilio",
                occurred_at=utcnow() - timedelta(minutes=1))
        engine.dispose()
        assert recorded.is_new and outbound(outage, [caller]) == []
    finally:
        outage.start("gateway")
    (text_back,) = outage.phone.wait_for(caller, count=1)
    assert "Nightowl Physio" in text_back["body"]
    wait_until(lambda: [m.status for m in outbound(outage, [caller])] == [
        MessageStatus.delivered], message="text-back delivered")
    assert len(outage.phone.sent_to(caller)) == 1


def test_the_simulator_keeps_its_log_across_a_restart(outage):
    caller = new_patient()
    missed_call(outage, caller)
    outage.phone.wait_for(caller, count=1)
    outage.stop("twilio simulator")
    outage.start("twilio simulator")
    assert len(outage.phone.sent_to(caller)) == 1


def test_an_answer_lost_in_a_timeout_is_settled_from_twilios_list_not_resent(outage):
    caller = new_patient()
    # Twilio takes the message, then answers only after our 1 s timeout, and (this time) no
    # delivery report says anything: the next attempt must look before it sends again.
    outage.phone.control(hang_after_create=1, hang_seconds=2.5, status_callbacks=False)
    try:
        missed_call(outage, caller)
        wait_until(lambda: [(m.status, m.attempts >= 2) for m in outbound(outage, [caller])]
                   == [(MessageStatus.queued, True)], message="in-doubt text-back settled")
    finally:
        outage.phone.control()
    (row,) = outbound(outage, [caller])
    (received,) = outage.phone.sent_to(caller)
    assert row.twilio_sid == received["sid"] and row.error_code is None


def test_an_answer_lost_in_a_timeout_is_settled_by_its_delivery_report(outage):
    caller = new_patient()
    outage.phone.control(hang_after_create=1, hang_seconds=2.5)
    log = outage.log_dir / "gateway.log"
    try:
        missed_call(outage, caller)
        # The report (which carries our message id) names the SID before the timeout ends.
        (row,) = wait_until(lambda: [m for m in outbound(outage, [caller])
                                     if m.status == MessageStatus.delivered],
                            message="delivery reported")
        wait_until(lambda: f"message {row.id}: no answer from Twilio" in log.read_text(),
                   message="the timeout noticed")
        wait_until(lambda: outbound(outage, [caller])[0].next_attempt_at is None,
                   message="nothing left to retry")
    finally:
        outage.phone.control()
    (row,) = outbound(outage, [caller])
    assert row.status == MessageStatus.delivered and row.attempts == 1
    assert [m["sid"] for m in outage.phone.sent_to(caller)] == [row.twilio_sid]


@pytest.mark.parametrize("status", [503, 429])
def test_twilio_errors_are_retried_until_it_takes_the_message(outage, status):
    caller = new_patient()
    outage.phone.control(fail_next=3, fail_status=status)
    try:
        missed_call(outage, caller)
        outage.phone.wait_for(caller, count=1)
    finally:
        outage.phone.control()
    (row,) = outbound(outage, [caller])
    # Three refusals, each retried. On a busy machine the fake may answer after the 1 s
    # timeout set here: that costs an attempt that settles the send, never a second text.
    assert row.attempts >= 4
    assert len(outage.phone.sent_to(caller)) == 1


def test_a_message_the_dialogue_cannot_take_in_time_goes_to_staff_with_one_holding_reply(
        outage):
    patient = new_patient()
    answer = outage.phone.text(sender=patient, clinic_number=OPEN_NUMBER,
                               body="can I book a check-up?")
    assert answer["webhook_status"] == 200
    outage.phone.text(sender=patient, clinic_number=OPEN_NUMBER, body="hello??")
    (holding,) = outage.phone.wait_for(patient, count=1, timeout=30)
    assert "team" in holding["body"]
    (alert,) = outage.phone.wait_for(STAFF_PHONE, count=1, timeout=30,
                                     where=lambda m: patient in m["body"])
    assert "Bot unavailable" in alert["body"]
    time.sleep(1.5)  # the second message joined the handover: no second holding reply
    assert len(outage.phone.sent_to(patient)) == 1
