"""The console dashboard for a clinic with two years of history, on PostgreSQL.

`ringback seed-history` writes two years for riverside (about 50,000 missed calls, 200,000
messages) into a throw-away PostgreSQL database; a real gateway process serves the signed-in
dashboard; each period preset is fetched over HTTP (the whole page: every figure and its
previous period, the charts, the tables). The machine's floor, a /health round trip, is
printed beside. Target: p95 < 500 ms for every preset.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stack.local_services import free_port

DAYS = 730
MISSED_PER_DAY = 68
PRESETS = ("today", "7d", "30d", "90d")
WARM_UP, ROUNDS = 2, 20
TARGET_P95_MS = 500


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _history(database_url: str) -> dict:
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from booking.clinics.config import load_clinics
    from booking.db import make_engine
    from booking.migrate import upgrade
    from booking.models import Message, MissedCall, utcnow
    from booking.settings import PROJECT_ROOT
    from stack.seed_history import seed_history

    upgrade(database_url)
    engine = make_engine(database_url)
    started = time.perf_counter()
    with Session(engine) as session, session.begin():
        load_clinics(session, PROJECT_ROOT / "clinics" / "example.yml")
        made = seed_history(session, clinic_slug="riverside", days=DAYS, end=utcnow(),
                            missed_per_day=MISSED_PER_DAY)
    with engine.connect() as connection:
        # Committed: statistics from an ANALYZE that is rolled back are lost, and the planner
        # then picks nested loops over the whole history.
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
        rows = {"missed_calls_table": connection.execute(
                    select(func.count()).select_from(MissedCall)).scalar_one(),
                "messages_table": connection.execute(
                    select(func.count()).select_from(Message)).scalar_one()}
    engine.dispose()
    return {"missed_calls": made.missed, "answered_calls": made.calls - made.missed,
            "messages": made.messages, "appointments": made.appointments, **rows,
            "seed_seconds": round(time.perf_counter() - started, 1)}


@contextlib.contextmanager
def _gateway(database_url: str, run_dir: Path):
    import httpx

    port = free_port()
    env = {**os.environ, "ENVIRONMENT": "development", "DATABASE_URL": database_url,
           "GATEWAY_PORT": str(port), "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "SESSION_SECRET": "bench-session-secret",
           # Nothing to send: the outbox and Rasa are never reached by the dashboard.
           "TWILIO_API_BASE_URL": f"http://127.0.0.1:{free_port()}",
           "RASA_URL": f"http://127.0.0.1:{free_port()}"}
    log = open(run_dir / "gateway.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "booking.gateway.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the gateway did not start; see {run_dir / 'gateway.log'}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()  # a request still waiting on the database
            process.wait()
        log.close()


def _signed_in(base: str):
    import httpx

    http = httpx.Client(base_url=base, timeout=60)
    form = http.get("/console/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = http.post("/console/login", data={"username": "riverside-admin",
                                                 "password": "riverside-demo",
                                                 "csrf_token": token})
    if response.status_code != 303:
        raise RuntimeError(f"sign-in failed: {response.status_code}")
    return http


def _timed(http, path: str) -> float:
    started = time.perf_counter()
    response = http.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code}")
    return elapsed


def run() -> dict:
    from tests.postgres import throwaway_database

    with throwaway_database("ringback_bench_dashboard") as database_url, \
            tempfile.TemporaryDirectory(prefix="bench-dash-") as tmp:
        history = _history(database_url)
        with _gateway(database_url, Path(tmp)) as base:
            http = _signed_in(base)
            floor = [_timed(http, "/health") for _ in range(ROUNDS)]
            by_preset = {}
            for preset in PRESETS:
                path = f"/console/dashboard?period={preset}"
                for _ in range(WARM_UP):
                    _timed(http, path)
                by_preset[preset] = [_timed(http, path) for _ in range(ROUNDS)]
            export = [_timed(http, "/console/dashboard/missed-calls.csv?period=90d")
                      for _ in range(5)]
            http.close()
    return {
        "history": history,
        "floor_health_p50_ms": round(statistics.median(floor), 1),
        "p50_ms": {p: round(statistics.median(ms), 1) for p, ms in by_preset.items()},
        "p95_ms": {p: round(_percentile(ms, 0.95), 1) for p, ms in by_preset.items()},
        "csv_90d_p50_ms": round(statistics.median(export), 1),
        "target_p95_ms": TARGET_P95_MS,
    }
