"""Patient reply in -> the bot's answer handed to Twilio, through the real stack, warm model.

Each round a new patient rings Riverside and has a whole booking conversation: "yes", the
treatment, a question mid-booking, a pick, a name. Both ends are timed by the Twilio simulator
on one clock: from just before it posts the signed Messaging webhook to the gateway, to the
moment Ringback's Messages API call for the reply reaches it. That covers the webhook, the
inbox, NLU, the policies, the action server (free slots, booking, database) and the outbox.
Target: p95 < 300 ms.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

CLINIC_NUMBER = "+441632960001"
CONVERSATION = ("yes please", "a check up", "how much is it?", "the second one", "It's Sam Taylor")
WARM_UP = 2
ROUNDS = 20
TARGET_P95_MS = 300


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _reply_latency_ms(phone, patient: str, body: str) -> float:
    """Send one text and return how long until the reply's send call reached Twilio."""
    before = len(phone.sent_to(patient))
    phone.text(sender=patient, clinic_number=CLINIC_NUMBER, body=body)
    reply = phone.wait_for(patient, count=before + 1)[before]
    inbound = [m for m in phone.messages(patient, direction="inbound") if m["body"] == body][-1]
    return (reply["created_epoch"] - inbound["created_epoch"]) * 1000


def _settle(stack, patient: str) -> None:
    """Let Rasa finish the missed-call turn before the first reply, as a patient's typing time
    would (a reply itself comes back only once its turn is stored)."""
    import httpx

    url = stack.rasa_api(f"/conversations/riverside:{patient}/tracker")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = httpx.get(url, timeout=5).json().get("events") or []
        if events and events[-1].get("name") == "action_listen":
            return
        time.sleep(0.02)


def run() -> dict:
    from tests.stack import start_stack, train_model

    model = train_model()
    by_step: dict[str, list[float]] = {body: [] for body in CONVERSATION}
    with tempfile.TemporaryDirectory(prefix="bench-reply-") as tmp:
        stack = start_stack(Path(tmp), model=model)
        try:
            for round_ in range(WARM_UP + ROUNDS):
                patient = f"+4477009007{round_:02d}"
                stack.phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
                stack.phone.wait_for(patient, count=1)
                _settle(stack, patient)
                for body in CONVERSATION:
                    elapsed = _reply_latency_ms(stack.phone, patient, body)
                    if round_ >= WARM_UP:
                        by_step[body].append(elapsed)
        finally:
            stack.stop()
    samples = [ms for step in by_step.values() for ms in step]
    return {
        "replies": len(samples),
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(_percentile(samples, 0.95), 1),
        "max_ms": round(max(samples), 1),
        "p95_ms_by_step": {body: round(_percentile(ms, 0.95), 1) for body, ms in by_step.items()},
        "target_p95_ms": TARGET_P95_MS,
    }
