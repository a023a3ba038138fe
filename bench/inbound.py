"""Patient messages in: how fast the gateway answers Twilio, and how many messages one node reads
per second while replies stay quick.

Starts the whole stack on free ports (Twilio fake, gateway, Rasa, action server), on a fresh
PostgreSQL database when the local server answers (else SQLite; BENCH_DATABASE_URL picks one),
with the example clinics. Every message is "what time do you open?": NLU, the policies, one
custom action (the FAQ answer from clinic config) and the outbox.

- `webhook_answer`: 50 signed Messaging webhooks from 50 patients at the same moment; from
  sending each to the gateway's answer (the message is stored, as it came, by then).
  Target: p99 < 100 ms. `health_floor` is 50 concurrent GET /health on the same gateway.
- `sustained`: messages at a steady rate, each from a patient with no message in flight, for
  `STEP_SECONDS` per rate, rates rising; from sending the webhook to the reply reaching the
  fake (where Twilio would take it). The highest rate whose reply p95 stays under 500 ms is
  `messages_per_second`.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from bench.missed_calls import _floor, _open_connections, _percentile, _session, bench_database
from booking.messaging.twilio_signature import SIGNATURE_HEADER, sign

CLINIC_NUMBER = "+441632960001"
QUESTION = "what time do you open?"
BURST = 50
RATES = (2, 4, 6, 8, 10, 12, 16)
STEP_SECONDS = 8
TARGET_ANSWER_P99_MS = 100
TARGET_REPLY_P95_MS = 500
_patients = itertools.count()


def _patient() -> str:
    return f"+4477009{next(_patients):05d}"


def _ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(_percentile(ms, 0.95), 1),
            "p99_ms": round(_percentile(ms, 0.99), 1), "max_ms": round(max(ms), 1)}


def _form(patient: str) -> dict[str, str]:
    sid = f"SMbench{patient[1:]}{time.time_ns()}"
    return {"MessageSid": sid, "From": patient, "To": CLINIC_NUMBER, "Body": QUESTION}


async def _post(session, stack, patient: str) -> tuple[float, float]:
    """Send one signed webhook; (epoch sent, seconds to the answer)."""
    url = f"{stack.gateway}/twilio/messaging/sms"
    form = _form(patient)
    headers = {SIGNATURE_HEADER: sign(auth_token=stack.env["TWILIO_AUTH_TOKEN"], url=url,
                                      params=form)}
    sent, began = time.time(), time.perf_counter()
    async with session.post(url, data=form, headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"webhook answered {response.status}")
    return sent, time.perf_counter() - began


async def _burst(stack, patients: list[str]) -> list[tuple[float, float]]:
    async with _session(len(patients)) as session:
        await _open_connections(session, f"{stack.gateway}/health", len(patients))
        start = asyncio.Event()

        async def one(patient: str) -> tuple[float, float]:
            await start.wait()
            return await _post(session, stack, patient)

        tasks = [asyncio.create_task(one(p)) for p in patients]
        await asyncio.sleep(0.05)
        start.set()
        return list(await asyncio.gather(*tasks))


async def _steady(stack, rate: float, seconds: float) -> dict[str, float]:
    """Send `rate` messages a second for `seconds`; patient -> epoch sent."""
    patients = [_patient() for _ in range(int(rate * seconds))]
    async with _session(50) as session:
        tasks = []
        began = time.perf_counter()
        for index, patient in enumerate(patients):
            delay = began + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(session, stack, patient)))
        answers = await asyncio.gather(*tasks)
    return {patient: epoch for patient, (epoch, _) in zip(patients, answers, strict=True)}


def _reply_seconds(stack, sent: dict[str, float], timeout: float = 120) -> list[float]:
    deadline = time.monotonic() + timeout
    seconds = []
    for patient, epoch in sent.items():
        reply = stack.phone.wait_for(patient, count=1,
                                     timeout=max(1.0, deadline - time.monotonic()))[0]
        seconds.append(reply["created_epoch"] - epoch)
    return seconds


def run() -> dict:
    from tests.stack import start_stack, train_model

    model = train_model()
    with tempfile.TemporaryDirectory(prefix="bench-inbound-") as tmp, \
            bench_database(Path(tmp)) as database_url:
        stack = start_stack(Path(tmp) / "stack", model=model, database_url=database_url)
        try:
            warm = [_patient() for _ in range(5)]
            asyncio.run(_burst(stack, warm))
            _reply_seconds(stack, {p: 0.0 for p in warm})
            floor = asyncio.run(_floor({"GATEWAY_PUBLIC_URL": stack.gateway}))
            burst = [_patient() for _ in range(BURST)]
            answered = asyncio.run(_burst(stack, burst))
            burst_replies = _reply_seconds(stack, {p: sent for p, (sent, _) in
                                                   zip(burst, answered, strict=True)})
            steps, sustained = [], 0
            for rate in RATES:
                seconds = _reply_seconds(stack, asyncio.run(_steady(stack, rate, STEP_SECONDS)))
                step = {"rate": rate, **_ms(seconds)}
                steps.append(step)
                if step["p95_ms"] >= TARGET_REPLY_P95_MS:
                    break
                sustained = rate
                time.sleep(1)
        finally:
            stack.stop()
    return {
        "database": database_url.split(":", 1)[0],
        "webhook_answer": _ms([seconds for _, seconds in answered]),
        "health_floor": _ms(floor),
        "burst_replies": _ms(burst_replies),
        "sustained_steps": steps,
        "messages_per_second": sustained,
        "targets": {"answer_p99_ms": TARGET_ANSWER_P99_MS, "reply_p95_ms": TARGET_REPLY_P95_MS},
    }
