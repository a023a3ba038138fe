"""Urgent text in -> the on-call clinician's alert accepted by Twilio, through the real stack.

Each round a new patient rings Riverside, gets the text-back, then texts an emergency. The clock
starts just before the simulator posts the signed webhook to Rasa and stops at the alert
message's `sent_at` (written when the Twilio Messages API call returned): NLU with the red-flag
rules, the escalation action, the database writes and the Twilio call. Target: p95 < 1 s.

The emergency is sent once the bot has finished its missed-call turn, as a person reading the
text-back would: a message that arrives while Rasa still holds the conversation's lock waits
for it, and Rasa's lock store polls once a second, which would measure that race instead.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from booking.models import Contact, Escalation, EscalationAlert, Message

CLINIC_NUMBER = "+441632960001"
URGENT = "my lip is swollen and going white after filler"
WARM_UP = 2
ROUNDS = 20


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _alert_sent_at(engine, patient: str, timeout: float = 30.0) -> datetime:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as session:
            sent_at = session.execute(
                select(Message.sent_at)
                .join(EscalationAlert, EscalationAlert.message_id == Message.id)
                .join(Escalation, Escalation.id == EscalationAlert.escalation_id)
                .join(Contact, Contact.id == Escalation.contact_id)
                .where(Contact.phone == patient, EscalationAlert.kind == "alert")
                .order_by(Message.id).limit(1)
            ).scalar_one_or_none()
        if sent_at is not None:
            return sent_at
        time.sleep(0.01)
    raise TimeoutError(f"no alert sent for {patient}")


def _wait_until_listening(stack, sender_id: str, timeout: float = 30.0) -> None:
    """Until the missed-call turn is over: action_start_from_missed_call, then action_listen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = httpx.get(stack.rasa_api(f"/conversations/{sender_id}/tracker"),
                           timeout=10).json()["events"]
        actions = [e.get("name") for e in events if e["event"] == "action"]
        if "action_start_from_missed_call" in actions and actions[-1] == "action_listen":
            return
        time.sleep(0.02)
    raise TimeoutError(f"the bot never finished the missed-call turn for {sender_id}")


def run() -> dict:
    from tests.stack import start_stack, train_model

    model = train_model()
    with tempfile.TemporaryDirectory(prefix="bench-urgent-") as tmp:
        stack = start_stack(Path(tmp), model=model)
        engine = create_engine(stack.database_url, future=True)
        try:
            samples = []
            for round_ in range(WARM_UP + ROUNDS):
                patient = f"+4477009008{round_:02d}"
                stack.phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
                stack.phone.wait_for(patient, count=1)
                _wait_until_listening(stack, f"riverside:{patient}")
                started = datetime.now(timezone.utc)
                stack.phone.text(sender=patient, clinic_number=CLINIC_NUMBER, body=URGENT)
                elapsed = (_alert_sent_at(engine, patient) - started).total_seconds()
                if round_ >= WARM_UP:
                    samples.append(elapsed)
        finally:
            engine.dispose()
            stack.stop()
    return {
        "rounds": len(samples),
        "p50_seconds": round(statistics.median(samples), 3),
        "p95_seconds": round(_percentile(samples, 0.95), 3),
        "max_seconds": round(max(samples), 3),
        "target_p95_seconds": 1.0,
    }
