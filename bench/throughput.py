"""Many patients writing at once: messages answered per second, reply times, and the CPU each
process spends per message (issue 19's measure).

Through the public edge only, on the whole stack (gateway, Rasa, action server): each patient's
missed call is a signed Dial callback, each of their messages a signed Messaging webhook.
Ringback's Messages API calls go to a small Twilio stand-in inside this process, which notes
when each reply arrives and wakes the patient waiting for it: no polling, so the bench costs
the machine little besides the load it makes. Once every text-back is out, `PATIENTS` patients
have the booking conversation at once, each sending their next message as soon as the bot has
answered the previous one (no think time).

Reported per database (SQLite, and PostgreSQL when the local server answers) and per layout
(one gateway and one Rasa process, then one of each per core), each on a fresh database:
messages answered per second, reply p50/p95 (from sending the webhook to the reply reaching
Twilio), and each process's CPU milliseconds (user + system, from /proc, over the
conversations only) per message, the PostgreSQL server's backends for the bench's database
included: on a 2-core machine their sum is what bounds the messages per second.
Before them, a burst of `BENCH_CALLS` (200) missed calls from as many callers, all sent at
once: missed calls handled per second (from the first webhook to the last text-back reaching
Twilio) and text-back p95: the other half of a layout's capacity (issue 18's capacity note).
Targets (issue 19): 40 patients x 5 messages, at least 30 messages/s with reply p95 < 1 s.
`BENCH_PATIENTS` changes the number of patients.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import aiohttp
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.missed_calls import _percentile, _session, dial_callback
from booking.db import get_engine
from booking.messaging.twilio_signature import SIGNATURE_HEADER, sign
from booking.models import InboxItem, InboxState
from booking.settings import Settings
from tests.postgres import throwaway_database

CLINIC_NUMBER = "+441632960001"
CONVERSATION = ("yes please", "a check up", "how much is it?", "the second one",
                "It's Sam Taylor")
TARGET_MESSAGES_PER_SECOND = 30
TARGET_REPLY_P95_MS = 1000
REPLY_TIMEOUT = 120.0
# The test stack plans and runs outreach every second or so, for the suite's follow-up tests;
# measured here is how often a deployment polls (each gateway's idle cost, paid per process).
_PRODUCTION_POLLING = {
    name.upper(): str(Settings.__fields__[name].default)
    for name in ("outreach_interval_seconds", "outreach_plan_interval_seconds")}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class TwilioStandIn:
    """Twilio's Messages API, as far as Ringback's outbox uses it: takes each message, notes
    when it came, and wakes whoever waits for a message to that number."""

    def __init__(self) -> None:
        self.received: dict[str, list[float]] = defaultdict(list)
        self._arrived: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create)
        app.router.add_get("/2010-04-01/Accounts/{account}/Messages.json", self._list)
        return app

    async def _create(self, request: web.Request) -> web.Response:
        form = await request.post()
        to = str(form.get("To", "")).removeprefix("whatsapp:")
        self.received[to].append(time.time())
        self._arrived[to].set()
        sid = f"SM{uuid.uuid4().hex}"
        return web.json_response({"sid": sid, "status": "queued", "to": form.get("To")},
                                 status=201)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"messages": []})  # nothing lost in flight here

    async def wait_for(self, number: str, count: int, timeout: float = REPLY_TIMEOUT) -> float:
        """When the `count`-th message to `number` arrived (epoch seconds)."""
        deadline = time.monotonic() + timeout
        while len(self.received[number]) < count:
            event = self._arrived[number]
            event.clear()
            if len(self.received[number]) >= count:
                break
            await asyncio.wait_for(event.wait(), max(0.01, deadline - time.monotonic()))
        return self.received[number][count - 1]


class _Process(NamedTuple):
    parent: int
    cpu_seconds: float  # user + system
    command: str


def _processes() -> dict[int, _Process]:
    processes = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # it ended meanwhile
        processes[int(entry)] = _Process(
            int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, command)
    return processes


def _process_tree_cpu_seconds(processes: dict[int, _Process], root_pid: int) -> float:
    """CPU of a process and every descendant still running."""
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, process in processes.items() if process.parent == parent]
        tree.update(children)
        frontier.extend(children)
    return sum(processes[pid].cpu_seconds for pid in tree if pid in processes)


def _cpu_by_process(stack) -> dict[str, float]:
    """Each service's CPU, and on PostgreSQL the server's for this database: the backends
    serving its connections (their titles name the database), on the same cores."""
    processes = _processes()
    cpu = {service.name: _process_tree_cpu_seconds(processes, service.process.pid)
           for service in stack.supervisor.services if service.name != "twilio simulator"}
    url = make_url(stack.database_url)
    if url.get_backend_name() == "postgresql":
        cpu["postgresql server"] = sum(
            process.cpu_seconds for process in processes.values()
            if process.command.startswith("postgres: ") and f" {url.database} " in process.command)
    return cpu


async def _post(session: aiohttp.ClientSession, stack, path: str, form: dict[str, str]) -> None:
    url = f"{stack.gateway}{path}"
    headers = {SIGNATURE_HEADER: sign(auth_token=stack.env["TWILIO_AUTH_TOKEN"], url=url,
                                      params=form)}
    async with session.post(url, data=form, headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")


async def _missed_call_burst(stack, twilio: TwilioStandIn, callers: list[str]) -> dict:
    async with _session(len(callers)) as session:
        began = time.time()

        async def call(caller: str) -> float:
            path, form = dial_callback(caller)
            form["To"] = CLINIC_NUMBER
            await _post(session, stack, path, form)
            return await twilio.wait_for(caller, 1) - began

        texted = sorted(await asyncio.gather(*[call(caller) for caller in callers]))
    await _dialogue_caught_up(stack)
    return {"calls": len(callers),
            "calls_per_second": round(len(callers) / texted[-1], 1),
            "text_back_p95_ms": round(_percentile([t * 1000 for t in texted], 0.95), 1)}


async def _dialogue_caught_up(stack, timeout: float = REPLY_TIMEOUT) -> None:
    engine = get_engine(stack.database_url)
    waiting = select(func.count()).select_from(InboxItem).where(
        InboxItem.state == InboxState.waiting)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if not connection.execute(waiting).scalar():
                return
        await asyncio.sleep(0.2)
    raise TimeoutError("the dialogue did not hear of every missed call in time")


async def _conversations(stack, twilio: TwilioStandIn, patients: list[str]) -> dict:
    async with _session(len(patients)) as session:
        for patient in patients:
            path, form = dial_callback(patient)
            form["To"] = CLINIC_NUMBER
            await _post(session, stack, path, form)
        for patient in patients:
            await twilio.wait_for(patient, 1)
        # The missed-call turns reach Rasa after the text-backs: the conversations start once
        # the dialogue has heard of every call, so they are measured alone.
        await _dialogue_caught_up(stack)

        replies: list[float] = []

        async def talk(patient: str) -> None:
            for body in CONVERSATION:
                before = len(twilio.received[patient])
                sent = time.time()
                await _post(session, stack, "/twilio/messaging/sms", {
                    "MessageSid": f"SM{uuid.uuid4().hex}", "From": patient,
                    "To": CLINIC_NUMBER, "Body": body})
                replies.append(await twilio.wait_for(patient, before + 1) - sent)

        cpu_before = _cpu_by_process(stack)
        began = time.perf_counter()
        await asyncio.gather(*[talk(patient) for patient in patients])
        elapsed = time.perf_counter() - began
        cpu_after = _cpu_by_process(stack)
    ms = sorted(seconds * 1000 for seconds in replies)
    return {
        "patients": len(patients),
        "messages": len(replies),
        "messages_per_second": round(len(replies) / elapsed, 1),
        "reply_p50_ms": round(_percentile(ms, 0.50), 1),
        "reply_p95_ms": round(_percentile(ms, 0.95), 1),
        "reply_max_ms": round(ms[-1], 1),
        "cpu_ms_per_message": {name: round((cpu_after[name] - cpu_before[name]) * 1000
                                           / len(replies), 1) for name in cpu_before},
    }


async def _with_stand_in(database_url: str, run_dir: Path, model: Path, patients: int,
                         calls: int, processes: int) -> dict:
    from tests.stack import free_port, start_stack

    twilio = TwilioStandIn()
    runner = web.AppRunner(twilio.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        stack = await asyncio.to_thread(
            start_stack, run_dir, model=model, database_url=database_url,
            extra_env={"TWILIO_API_BASE_URL": f"http://127.0.0.1:{port}",
                       "RASA_PROCESSES": str(processes), "GATEWAY_PROCESSES": str(processes),
                       **_PRODUCTION_POLLING})
        try:
            # Ofcom's drama range, 07700 900000-900999: the patients first, then the callers.
            burst = await _missed_call_burst(
                stack, twilio, [f"+4477009{n:05d}" for n in range(patients, patients + calls)])
            conversations = await _conversations(
                stack, twilio, [f"+4477009{n:05d}" for n in range(patients)])
            return {**conversations, "missed_call_burst": burst}
        finally:
            await asyncio.to_thread(stack.stop)
    finally:
        await runner.cleanup()


def _database_kinds() -> list[str]:
    kinds = ["sqlite"]
    with contextlib.suppress(Exception):  # no PostgreSQL here: SQLite alone
        import psycopg2

        psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test",
                         connect_timeout=2).close()
        kinds.append("postgresql")
    return kinds


def _fresh_database(kind: str, run_dir: Path) -> contextlib.AbstractContextManager[str]:
    if kind == "sqlite":
        return contextlib.nullcontext(f"sqlite:///{run_dir / 'bench.db'}")
    return throwaway_database("ringback_throughput")


def run() -> dict:
    from tests.stack import train_model

    model = train_model()
    patients = int(os.environ.get("BENCH_PATIENTS", "40"))
    calls = min(int(os.environ.get("BENCH_CALLS", "200")), 1000 - patients)
    results: dict = {}
    layouts = sorted({1, os.cpu_count() or 1})
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        for kind in _database_kinds():
            for processes in layouts:
                run_dir = Path(tmp) / f"{kind}-{processes}"
                run_dir.mkdir()
                with _fresh_database(kind, run_dir) as url:
                    results[f"{kind}, {processes} gateway + {processes} rasa"] = asyncio.run(
                        _with_stand_in(url, run_dir, model, patients, calls, processes))
    results["targets"] = {"messages_per_second": TARGET_MESSAGES_PER_SECOND,
                          "reply_p95_ms": TARGET_REPLY_P95_MS}
    return results
