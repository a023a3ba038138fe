"""10,000 reminders due at once across 200 clinics, while 50 missed calls arrive together.

Starts the gateway as production runs it (one worker process per core, up to
BENCH_GATEWAY_WORKERS, default 2) and the Twilio fake, on a fresh PostgreSQL database when the
local server answers (else SQLite; BENCH_DATABASE_URL picks one), with 200 clinics that send at
any hour (their own compliance override, so the run does not depend on the time of day; the
gate still decides every message). Then, in one transaction, 10,000 appointments starting in a
little under 24 hours appear, each for its own patient, booked a week ago: every one's 24-hour
reminder is due at once. A second later a burst of 50 missed-call webhooks arrives.

- decided: from the appointments' commit until every reminder is sent or held by the gate;
- delivered: until Twilio (the fake) has accepted every reminder;
- text-back during the run: the missed calls' webhook answer and text-back to Twilio, as in
  `missed_calls` (targets: answer p99 < 200 ms, to Twilio p99 < 1 s).
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from bench.missed_calls import (
    CLINIC,
    bench_database,
    burst,
    dial_callback,
    start_gateway,
    summary,
    texted_at,
)
from booking.db import make_engine, session_factory
from booking.models import (
    Appointment,
    Clinic,
    Contact,
    Direction,
    JobKind,
    JobState,
    Message,
    ScheduledJob,
    utcnow,
)

REMINDERS = 10_000
CLINICS = 200
CALLS = 50
TIMEOUT_SECONDS = 1800  # at ~11 a second the outbox needs about 15 minutes for 10,000


def _clinics() -> list[dict]:
    return [{**CLINIC, "slug": f"remind-{n:03d}", "name": f"Reminder Clinic {n:03d}",
             "numbers": {"voice": f"+44163296{300 + n:04d}", "sms": f"+44163296{300 + n:04d}"},
             "settings": {"outreach": {"compliance": {"sending_hours": "00:00-24:00"}}}}
            for n in range(CLINICS)]


def _book_everyone(database_url: str) -> float:
    """10,000 appointments whose 24-hour reminder is due now; returns when they committed."""
    engine = make_engine(database_url)
    now = utcnow()
    with session_factory(engine)() as session, session.begin():
        clinics = session.execute(select(Clinic).where(Clinic.slug.like("remind-%"))
                                  .order_by(Clinic.id)).scalars().all()
        services = {clinic.id: clinic.services[0] for clinic in clinics}
        session.execute(insert(Contact), [
            {"clinic_id": clinics[n % CLINICS].id, "phone": f"+4474{n:08d}",
             "first_name": "Pat", "is_known_patient": True, "consent": "implied",
             "whatsapp_unreachable": False, "created_at": now} for n in range(REMINDERS)])
        contacts = session.execute(select(Contact.id, Contact.clinic_id)
                                   .where(Contact.phone.like("+4474%"))).all()
        booked_at = now - timedelta(days=7)
        rows = []
        for index, (contact_id, clinic_id) in enumerate(contacts):
            starts = now + timedelta(hours=24) - timedelta(minutes=1 + index % 20)
            service = services[clinic_id]
            rows.append({"clinic_id": clinic_id, "contact_id": contact_id,
                         "service_id": service.id, "provider_id": service.providers[0].id,
                         "starts_at": starts, "ends_at": starts + timedelta(minutes=30),
                         "status": "booked", "source": "pms",
                         "idempotency_key": uuid.uuid4().hex, "created_at": booked_at,
                         "updated_at": booked_at})
        session.execute(insert(Appointment), rows)
    committed = time.time()
    engine.dispose()
    return committed


def _count(database_url: str) -> tuple[int, int]:
    """(reminders decided, reminders Twilio accepted)."""
    engine = make_engine(database_url)
    with session_factory(engine)() as session:
        decided = session.execute(select(func.count()).select_from(ScheduledJob).where(
            ScheduledJob.kind == JobKind.reminder,
            (ScheduledJob.state != JobState.scheduled) | (ScheduledJob.deferrals > 0))
        ).scalar_one()
        accepted = session.execute(select(func.count()).select_from(Message).where(
            Message.direction == Direction.outbound, Message.to_number.like("+4474%"),
            Message.twilio_sid.is_not(None))).scalar_one()
    engine.dispose()
    return decided, accepted


def run() -> dict:
    with (tempfile.TemporaryDirectory(prefix="ringback-bench-") as directory,
          bench_database(Path(directory)) as database_url):
        env, processes = start_gateway(
            Path(directory), database_url, more_clinics=_clinics(),
            extra_env={"OUTREACH_INTERVAL_SECONDS": "0.5",
                       "OUTREACH_PLAN_INTERVAL_SECONDS": "1"})
        try:
            calls: dict = {}
            callers = [f"+447700900{i:03d}" for i in range(100, 100 + CALLS)]

            def missed_calls() -> None:
                time.sleep(1)  # the reminders are being planned and sent by now
                answers = asyncio.run(burst(env, callers, dial_callback))
                sent = texted_at(env, callers, timeout=120)
                calls["webhook_answer"] = summary([seconds for _, seconds in answers.values()])
                calls["to_twilio"] = summary([sent[c] - answers[c][0] for c in callers
                                              if c in sent])
                calls["text_backs_sent"] = len(sent)

            committed = _book_everyone(database_url)
            during = threading.Thread(target=missed_calls)
            during.start()
            decided_at = delivered_at = None
            while time.time() - committed < TIMEOUT_SECONDS:
                decided, accepted = _count(database_url)
                if decided_at is None and decided >= REMINDERS:
                    decided_at = time.time()
                if accepted >= REMINDERS:
                    delivered_at = time.time()
                    break
                time.sleep(0.5)
            during.join()
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    decided_s = round(decided_at - committed, 1) if decided_at else None
    delivered_s = round(delivered_at - committed, 1) if delivered_at else None
    return {
        "reminders": REMINDERS, "clinics": CLINICS,
        "database": "sqlite" if database_url.startswith("sqlite") else "postgresql",
        "all_decided_seconds": decided_s, "all_at_twilio_seconds": delivered_s,
        "reminders_per_second": round(REMINDERS / delivered_s, 1) if delivered_s else None,
        "missed_calls_meanwhile": {**calls,
                                   "to_twilio_p99_under_1s": calls["to_twilio"]["p99_ms"] < 1000},
    }


if __name__ == "__main__":
    print(run())
