"""50 missed calls at once: how fast the gateway answers Twilio, and how fast the text-backs go.

Starts what the missed-call path needs, on free ports: the Twilio fake, and the gateway as
production runs it (one worker process per core, up to BENCH_GATEWAY_WORKERS, default 2), on a
fresh PostgreSQL database when the local server answers (else SQLite; BENCH_DATABASE_URL picks
one). It warms up with a few calls, then sends two bursts of 50 signed webhooks for 50
different callers each, at the same moment: Dial callbacks (the desk did not answer), then
calls to a closed clinic (the voice webhook itself records the missed call, as before opening
time). The load generator is aiohttp: httpx's pool costs milliseconds per request once fifty
are in flight (encode/httpx#3215), which measured the client rather than the gateway.

- webhook answer: from sending the webhook to the gateway's TwiML answer;
- to Twilio: from sending the webhook to the fake storing the text-back (the moment Twilio
  would have accepted the message).

Targets: answer p99 < 200 ms, to-Twilio p99 < 1 s. `health_floor` is 50 concurrent GET /health
on the same gateway: what the machine itself allows right now (on a shared, loaded machine it
alone can exceed the target)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import httpx
import yaml

from booking.messaging.twilio_signature import SIGNATURE_HEADER, sign
from stack.local_services import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CALLS = 50
WARM_UP = 5
# Between the two bursts: the first one's delivery reports are in, so each is measured alone.
SETTLE_SECONDS = 2.0
ACCOUNT_SID = "AC" + "2" * 32
AUTH_TOKEN = "bench-auth-token"
CLINIC_NUMBER = "+441632960051"
CLINIC = {
    "slug": "bench", "name": "Bench Dental", "timezone": "Europe/London", "country": "GB",
    "numbers": {"voice": CLINIC_NUMBER, "sms": CLINIC_NUMBER, "front_desk": "+441632960052"},
    "channel_policy": "sms",
    "opening_hours": {day: ["00:00-24:00"]
                      for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    "services": [{"slug": "check-up", "name": "Check-up", "duration_minutes": 30,
                  "providers": ["dr-a"]}],
    "providers": [{"slug": "dr-a", "name": "Dr A"}],
}
CLOSED_NUMBER = "+441632960053"


def _closed_clinic() -> dict:
    """A clinic closed today (a bank holiday), open tomorrow at 8:00: calls to it are missed
    calls, like the ones queued up before opening time."""
    today = datetime.now(ZoneInfo(CLINIC["timezone"])).date().isoformat()
    return {
        **CLINIC, "slug": "bench-closed", "name": "Bench Closed Dental",
        "numbers": {"voice": CLOSED_NUMBER, "sms": CLOSED_NUMBER,
                    "front_desk": "+441632960054"},
        "opening_hours": {day: ["08:00-18:00"]
                          for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        "closures": [{"from": today, "to": today, "reason": "bank holiday"}],
    }


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(statistics.median(ms), 1), "p99_ms": round(_percentile(ms, 0.99), 1),
            "max_ms": round(max(ms), 1)}


def _wait_healthy(url: str, process: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy")


@contextlib.contextmanager
def bench_database(run_dir: Path):
    """BENCH_DATABASE_URL, or a throw-away PostgreSQL database, or SQLite in run_dir."""
    if os.environ.get("BENCH_DATABASE_URL"):
        yield os.environ["BENCH_DATABASE_URL"]
        return
    try:
        import psycopg2

        admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test",
                                 connect_timeout=2)
    except Exception:  # no PostgreSQL here: the embedded default it is
        yield f"sqlite:///{run_dir / 'bench.db'}"
        return
    admin.close()
    from tests.postgres import throwaway_database

    with throwaway_database("ringback_bench") as url:
        yield url


def _workers() -> int:
    wanted = int(os.environ.get("BENCH_GATEWAY_WORKERS", "2"))
    return max(1, min(wanted, os.cpu_count() or 1))


def start_gateway(run_dir: Path, database_url: str, *, more_clinics: list[dict] = (),
                  extra_env: dict[str, str] | None = None
                  ) -> tuple[dict[str, str], list[subprocess.Popen]]:
    gateway_port, fake_port, closed_port = free_port(), free_port(), free_port()
    clinics = run_dir / "clinics.yml"
    clinics.write_text(yaml.safe_dump({"clinics": [CLINIC, _closed_clinic(), *more_clinics]},
                                      sort_keys=False))
    env = {
        **os.environ, "ENVIRONMENT": "development", "PYTHONPATH": str(PROJECT_ROOT),
        "DATABASE_URL": database_url,
        "CLINICS_FILE": str(clinics),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": f"http://127.0.0.1:{fake_port}",
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{gateway_port}",
        # No Rasa here: telling it about the call fails fast, after the text-back is sent.
        "RASA_URL": f"http://127.0.0.1:{closed_port}",
        # A run texts 55 callers of one clinic and 50 of another within a minute (more in
        # bench/reminders.py): the fraud caps are not what is measured, so they stand aside.
        "TEXT_BACK_CLINIC_HOURLY_CAP": "100000",
        "TEXT_BACK_GLOBAL_HOURLY_CAP": "100000",
        **(extra_env or {}),
    }
    ringback = str(Path(sys.executable).parent / "ringback")
    for command in (["migrate"], ["load-clinics"]):
        subprocess.run([ringback, *command], cwd=PROJECT_ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    log = open(run_dir / "bench.log", "ab")  # noqa: SIM115 - closed with the processes
    processes = [
        subprocess.Popen([sys.executable, "-m", "stack.cli", "simulator", "--port",
                          str(fake_port)], cwd=PROJECT_ROOT, env=env, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True),
        subprocess.Popen([sys.executable, "-m", "uvicorn", "booking.gateway.app:create_app",
                          "--factory", "--host", "127.0.0.1", "--port", str(gateway_port),
                          "--no-access-log", "--log-level", "warning",
                          "--workers", str(_workers())], cwd=PROJECT_ROOT,
                         env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True),
    ]
    deadline = time.monotonic() + 60
    _wait_healthy(f"{env['TWILIO_API_BASE_URL']}/_fake/messages?number=none", processes[0],
                  deadline)
    _wait_healthy(f"{env['GATEWAY_PUBLIC_URL']}/health", processes[1], deadline)
    return env, processes


def _session(connections: int) -> aiohttp.ClientSession:
    # aiohttp, not httpx: httpx's pool costs milliseconds per request once fifty are in flight
    # (encode/httpx#3215), which measured the load generator instead of the gateway.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections + 5),
                                 timeout=aiohttp.ClientTimeout(total=30))


async def _open_connections(session: aiohttp.ClientSession, url: str, n: int) -> None:
    """Open n keep-alive connections first, as Twilio's would be, so only requests are timed."""
    async def one() -> None:
        async with session.get(url) as response:
            await response.read()

    await asyncio.gather(*(one() for _ in range(n)))


async def _floor(env: dict[str, str], n: int = CALLS) -> list[float]:
    """The machine's own floor: n concurrent GET /health on the same gateway."""
    url = f"{env['GATEWAY_PUBLIC_URL']}/health"
    async with _session(n) as session:
        await _open_connections(session, url, n)
        start = asyncio.Event()

        async def one() -> float:
            await start.wait()
            began = time.perf_counter()
            async with session.get(url) as response:
                response.raise_for_status()
                await response.read()
            return time.perf_counter() - began

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await asyncio.sleep(0.05)
        start.set()
        return list(await asyncio.gather(*tasks))


def dial_callback(caller: str) -> tuple[str, dict[str, str]]:
    """The Dial's action after the front desk did not answer."""
    return "/twilio/voice/dial-status", {
        "CallSid": f"CA{caller[1:]}{time.time_ns()}", "From": caller, "To": CLINIC_NUMBER,
        "CallStatus": "in-progress", "DialCallStatus": "no-answer", "DialBridged": "false",
        "AccountSid": ACCOUNT_SID}


def _after_hours_call(caller: str) -> tuple[str, dict[str, str]]:
    """A call to a closed clinic: the voice webhook itself records the missed call."""
    return "/twilio/voice", {
        "CallSid": f"CA{caller[1:]}{time.time_ns()}", "From": caller, "To": CLOSED_NUMBER,
        "CallStatus": "ringing", "AccountSid": ACCOUNT_SID}


async def burst(env: dict[str, str], callers: list[str],
                 webhook=dial_callback) -> dict[str, tuple[float, float]]:
    """Send one webhook per caller, all at once; {caller: (sent at, answer seconds)}."""
    requests = {}
    for caller in callers:
        path, form = webhook(caller)
        url = f"{env['GATEWAY_PUBLIC_URL']}{path}"
        requests[caller] = (url, form, sign(auth_token=AUTH_TOKEN, url=url, params=form))
    async with _session(len(callers)) as session:
        await _open_connections(session, f"{env['GATEWAY_PUBLIC_URL']}/health", len(callers))
        start = asyncio.Event()

        async def call(caller: str) -> tuple[str, float, float]:
            await start.wait()
            sent = time.time()
            began = time.perf_counter()
            url, form, signature = requests[caller]
            async with session.post(url, data=form,
                                    headers={SIGNATURE_HEADER: signature}) as response:
                response.raise_for_status()
                await response.read()
            return caller, sent, time.perf_counter() - began

        tasks = [asyncio.create_task(call(caller)) for caller in callers]
        await asyncio.sleep(0.05)
        start.set()
        results = await asyncio.gather(*tasks)
    return {caller: (sent, answer) for caller, sent, answer in results}


def texted_at(env: dict[str, str], callers: list[str], timeout: float = 60) -> dict[str, float]:
    """When the fake stored each caller's text-back (epoch seconds)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=env["TWILIO_API_BASE_URL"], timeout=10) as fake:
        while True:
            found = {}
            for message in fake.get("/_fake/messages",
                                    params={"direction": "outbound-api"}).json():
                if message["to"] in callers:
                    found.setdefault(message["to"], []).append(message["created_epoch"])
            if len(found) == len(callers) or time.monotonic() > deadline:
                duplicates = sum(len(times) - 1 for times in found.values())
                if duplicates:
                    raise AssertionError(f"{duplicates} text-backs were sent twice")
                return {caller: min(times) for caller, times in found.items()}
            time.sleep(0.1)


def _measure(env: dict[str, str], callers: list[str], webhook) -> dict:
    answers = asyncio.run(burst(env, callers, webhook))
    sent = texted_at(env, callers)
    answer = summary([seconds for _, seconds in answers.values()])
    to_twilio = summary([sent[c] - answers[c][0] for c in callers if c in sent])
    return {"text_backs_sent": len(sent), "webhook_answer": answer, "to_twilio": to_twilio,
            "answer_p99_under_200ms": answer["p99_ms"] < 200,
            "to_twilio_p99_under_1s": to_twilio["p99_ms"] < 1000}


def run() -> dict:
    with (tempfile.TemporaryDirectory(prefix="ringback-bench-") as directory,
          bench_database(Path(directory)) as database_url):
        env, processes = start_gateway(Path(directory), database_url)
        try:
            warm = [f"+4477009009{i:02d}" for i in range(WARM_UP)]
            asyncio.run(burst(env, warm))
            texted_at(env, warm)
            floor = asyncio.run(_floor(env))
            dial = _measure(env, [f"+447700900{i:03d}" for i in range(100, 100 + CALLS)],
                            dial_callback)
            time.sleep(SETTLE_SECONDS)
            closed = _measure(env, [f"+447700900{i:03d}" for i in range(200, 200 + CALLS)],
                              _after_hours_call)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
    return {
        "calls": CALLS,
        "database": "sqlite" if env["DATABASE_URL"].startswith("sqlite") else "postgresql",
        "gateway_workers": _workers(),
        # What 50 concurrent requests to an endpoint doing nothing take on this machine now.
        "health_floor": summary(floor),
        # The desk did not answer: the Dial's action callback reports the missed call.
        "dial_no_answer": dial,
        # Before opening time: the voice webhook itself records the call and says so.
        "after_hours": closed,
    }


if __name__ == "__main__":
    print(run())
