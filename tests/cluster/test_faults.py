"""The production topology (`make cluster`: nginx, two gateways, two Rasa, two action servers,
PostgreSQL, Redis) losing one process in the middle of a burst, through the public webhooks.

Each case: 100 missed calls, and 100 patients in conversation (their missed call, then the
booking conversation, one message as soon as the bot answered the one before; a tenth of them
write about an emergency), while one fault happens. Afterwards: every missed call texted exactly
once; every patient message read by the dialogue exactly once and in order, and every text the
database holds for a patient taken by Twilio exactly once and in order; no slot booked twice;
an escalation for every emergency. The webhook answers other than 2xx (what Twilio would retry,
and the harness does, with the same MessageSid/CallSid) are counted and reported.

The cluster's PostgreSQL and Redis are the test's own (stack/local_services.py), never the
machine's; Twilio is a fake at the network boundary (twilio_fake.py). The Rasa-kill case is in
`make test`; every case in `make fault-test`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from booking.messaging.twilio_signature import SIGNATURE_HEADER, sign
from stack.cluster import start_cluster
from stack.local_services import OwnPostgres, OwnRedis, postgres_scratch_dir
from stack.supervisor import Service, Supervisor
from tests.cluster.twilio_fake import TwilioFake
from tests.stack import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    HMAC_SECRET,
    free_port,
    free_ports_in_a_row,
    served_in_thread,
)

pytestmark = pytest.mark.integration

CLINIC_NUMBER = "+441632960001"
CONVERSATION = ("yes please", "a check up", "the second one", "It's Sam Taylor")
EMERGENCY = "my lip is swollen and going white after filler"
MISSED_CALLS = 100
PATIENTS = 100
EMERGENCY_EVERY = 10  # every tenth patient's last message is an emergency
# Generous: a killed Rasa's patients wait for its conversation locks to expire (LOCK_SECONDS).
REPLY_TIMEOUT = 240.0
LOCK_SECONDS = 15
# Counted for the report, not promised to be 0.
INFORMATIVE = ("appointments booked", "texts sent while the fault lasted",
               "webhook answers other than 2xx")
PUBLIC_PATHS = {"call": "/twilio/voice/dial-status", "sms": "/twilio/messaging/sms"}


@dataclass
class Cluster:
    settings: object
    env: dict[str, str]
    supervisor: Supervisor
    database: OwnPostgres
    redis: OwnRedis
    twilio: TwilioFake

    def service(self, name: str) -> Service:
        return next(service for service in self.supervisor.services if service.name == name)

    @property
    def public_url(self) -> str:
        return self.settings.gateway_public_url


@pytest.fixture(scope="module")
def cluster(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    run_dir = tmp_path_factory.mktemp("cluster")
    redis = OwnRedis(run_dir / "redis", free_port())
    twilio = TwilioFake()
    twilio_port = free_port()
    with contextlib.ExitStack() as running:
        database = OwnPostgres(running.enter_context(postgres_scratch_dir()) / "data",
                               free_port())
        database.start()
        running.callback(database.stop)
        redis.start()
        running.callback(redis.stop)
        running.enter_context(served_in_thread(twilio.app(), twilio_port, name="twilio fake"))
        rasa_port = free_ports_in_a_row(2)
        env = {
            **os.environ,
            "ENVIRONMENT": "development",
            "DATABASE_URL": database.url,
            "REDIS_URL": redis.url,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_BASE_URL": f"http://127.0.0.1:{twilio_port}",
            "GATEWAY_PORT": str(free_ports_in_a_row(2)),
            "RASA_PORT": str(rasa_port),
            "RASA_URL": f"http://127.0.0.1:{rasa_port}",
            "ACTION_SERVER_PORT": str(free_ports_in_a_row(2)),
            "ACTION_BALANCER_PORT": str(free_port()),
            "BALANCER_PORT": str(free_port()),
            "MISSED_CALL_HMAC_SECRET": HMAC_SECRET,
            "SESSION_SECRET": "test-session-secret",
            "TEXT_BACK_CLINIC_HOURLY_CAP": "100000",
            "TEXT_BACK_GLOBAL_HOURLY_CAP": "100000",
            # A killed Rasa's conversation locks (in Redis) expire after this: a turn here
            # takes a few seconds at most.
            "TICKET_LOCK_LIFETIME": str(LOCK_SECONDS),
            # A message may wait out a lock and a restart without being handed to staff.
            "INBOX_MAX_WAIT_SECONDS": "600",
            "RASA_TIMEOUT_SECONDS": "20",
        }
        settings, env, supervisor = start_cluster(env, model=trained_model, run_dir=run_dir,
                                                  stop_on_signals=False)
        running.callback(supervisor.stop)
        yield Cluster(settings, env, supervisor, database, redis, twilio)


@dataclass
class Burst:
    """The load of one case, and what it saw."""

    cluster: Cluster
    tag: str
    callers: list[str] = field(init=False)
    patients: list[str] = field(init=False)
    answers: Counter = field(default_factory=Counter)  # status code -> webhooks
    # Texts Twilio took while the fault lasted (from its start until all was healthy again).
    sent_during_fault: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # Numbers of this case only, so cases on one cluster do not see each other's texts.
        block = {"rasa": 1, "gateway": 2, "action": 3, "redis": 4, "postgres": 5,
                 "rolling": 6}[self.tag]
        self.callers = [f"+44770{block}{n:06d}" for n in range(MISSED_CALLS)]
        self.patients = [f"+44770{block}{n:06d}" for n in range(500000, 500000 + PATIENTS)]

    def webhook(self, client: httpx.Client, kind: str, form: dict[str, str]) -> None:
        """POST as Twilio does: signed, and again (same ids) until it is answered 2xx."""
        url = self.cluster.public_url + PUBLIC_PATHS[kind]
        headers = {SIGNATURE_HEADER: sign(auth_token=AUTH_TOKEN, url=url, params=form)}
        deadline = time.monotonic() + REPLY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                status = client.post(url, data=form, headers=headers).status_code
            except httpx.TransportError:
                status = 0  # no answer at all
            with self._lock:
                self.answers[status] += 1
            if 200 <= status < 300:
                return
            time.sleep(0.5)  # Twilio waits before it tries again, too
        raise AssertionError(f"{kind} webhook never accepted: {form}")

    def missed_call(self, client: httpx.Client, caller: str) -> None:
        self.webhook(client, "call", {
            "CallSid": f"CA{uuid.uuid4().hex}", "From": caller, "To": CLINIC_NUMBER,
            "CallStatus": "in-progress", "DialCallStatus": "no-answer", "DialBridged": "false",
            "AccountSid": ACCOUNT_SID})

    def message(self, client: httpx.Client, patient: str, body: str) -> None:
        self.webhook(client, "sms", {"MessageSid": f"SM{uuid.uuid4().hex}", "From": patient,
                                     "To": CLINIC_NUMBER, "Body": body,
                                     "AccountSid": ACCOUNT_SID})

    def converse(self, client: httpx.Client, index: int, patient: str) -> None:
        twilio = self.cluster.twilio
        self.missed_call(client, patient)
        twilio.wait_for(patient, 1, timeout=REPLY_TIMEOUT)
        words = list(CONVERSATION)
        if index % EMERGENCY_EVERY == 0:
            words[-1] = EMERGENCY
        for body in words:
            before = twilio.count(patient)
            self.message(client, patient, body)
            try:
                twilio.wait_for(patient, before + 1, timeout=REPLY_TIMEOUT)
            except TimeoutError as exc:
                raise AssertionError(f"{exc}; {self.whereabouts(patient)}") from None

    def whereabouts(self, patient: str) -> str:
        """Where a patient's messages are, for whoever reads a failure: the inbox and the
        dialogue's tracker."""
        engine = create_engine(self.cluster.database.url)
        with engine.connect() as connection:
            items = connection.execute(text(
                "SELECT i.id, i.intent, i.state, i.attempts, t.state FROM inbox_items i "
                "JOIN threads t ON t.id = i.thread_id JOIN contacts c ON c.id = t.contact_id "
                "WHERE c.phone = :phone ORDER BY i.id"), {"phone": patient}).all()
            events = connection.execute(text(
                "SELECT type_name, coalesce(intent_name, action_name, '') FROM events "
                "WHERE sender_id LIKE :sender ORDER BY id"), {"sender": f"%{patient}"}).all()
        engine.dispose()
        return f"inbox {[tuple(row) for row in items]}; tracker {[tuple(e) for e in events]}"

    def run(self, fault: Callable[[], None]) -> None:
        """The whole burst, with `fault` applied once a third of its texts are out."""
        twilio = self.cluster.twilio
        texts = MISSED_CALLS + PATIENTS * (1 + len(CONVERSATION))
        a_third_out = twilio.total() + texts // 3
        limits = httpx.Limits(max_connections=PATIENTS + MISSED_CALLS)
        with httpx.Client(timeout=60, limits=limits) as client, \
                ThreadPoolExecutor(max_workers=PATIENTS + MISSED_CALLS) as pool:
            jobs = [pool.submit(self.missed_call, client, caller) for caller in self.callers]
            jobs += [pool.submit(self.converse, client, index, patient)
                     for index, patient in enumerate(self.patients)]
            twilio.wait_for_total(a_third_out, timeout=REPLY_TIMEOUT)
            before = twilio.total()
            fault()
            self.sent_during_fault = twilio.total() - before
            for job in jobs:
                job.result()


def _restart_after_kill(cluster: Cluster, name: str) -> Callable[[], None]:
    def fault() -> None:
        service = cluster.service(name)
        cluster.supervisor.kill(service, signal.SIGKILL)
        cluster.supervisor.restart(service)
    return fault


def _wait_until_settled(cluster: Cluster, numbers: list[str]) -> None:
    """Until the outbox has nothing left to send to these numbers, and Twilio has what the
    database says went out (the last texts may still be on their way)."""
    engine = create_engine(cluster.database.url)
    deadline = time.monotonic() + REPLY_TIMEOUT
    try:
        while True:
            with engine.connect() as connection:
                unsent = connection.execute(text(
                    "SELECT count(*) FROM messages WHERE direction = 'outbound' AND "
                    "status IN ('pending', 'sending') AND "
                    "replace(to_number, 'whatsapp:', '') = ANY(:numbers)"),
                    {"numbers": numbers}).scalar()
                waiting = connection.execute(text(
                    "SELECT count(*) FROM inbox_items i JOIN threads t ON t.id = i.thread_id "
                    "JOIN contacts c ON c.id = t.contact_id WHERE i.state = 'waiting' AND "
                    "c.phone = ANY(:numbers)"), {"numbers": numbers}).scalar()
            if not unsent and not waiting:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{unsent} texts unsent, {waiting} messages unanswered")
            time.sleep(0.5)
    finally:
        engine.dispose()


def _report(burst: Burst) -> dict:
    """What the case promises, counted: each must be 0 but the non-2xx answers."""
    cluster = burst.cluster
    numbers = burst.callers + burst.patients
    _wait_until_settled(cluster, numbers)
    engine = create_engine(cluster.database.url)
    with engine.connect() as connection:
        outbound = defaultdict(list)
        # Each text the database holds, by the SID Twilio gave it (SMS and WhatsApp alike).
        for to, sid in connection.execute(text(
                "SELECT replace(to_number, 'whatsapp:', ''), twilio_sid FROM messages "
                "WHERE direction = 'outbound' AND replace(to_number, 'whatsapp:', '') = "
                "ANY(:numbers) ORDER BY id"), {"numbers": numbers}):
            outbound[to].append(sid)
        items = defaultdict(list)  # patient -> their messages' inbox ids, in arrival order
        for phone, item_id in connection.execute(text(
                "SELECT c.phone, i.id FROM inbox_items i JOIN threads t ON t.id = i.thread_id "
                "JOIN contacts c ON c.id = t.contact_id WHERE i.intent IS NULL AND "
                "c.phone = ANY(:numbers) ORDER BY i.id"), {"numbers": burst.patients}):
            items[phone].append(f"inbox-{item_id}")
        unanswered = connection.execute(text(
            "SELECT count(*) FROM inbox_items i JOIN threads t ON t.id = i.thread_id "
            "JOIN contacts c ON c.id = t.contact_id WHERE i.intent IS NULL AND "
            "i.state <> 'answered' AND c.phone = ANY(:numbers)"),
            {"numbers": burst.patients}).scalar()
        read = defaultdict(list, _messages_read(connection, burst.patients))
        booked = connection.execute(text(
            "SELECT count(*) FROM appointments a JOIN contacts c ON c.id = a.contact_id "
            "WHERE a.status = 'booked' AND c.phone = ANY(:numbers)"),
            {"numbers": burst.patients}).scalar()
        double_booked = connection.execute(text(
            "SELECT count(*) FROM (SELECT provider_id, starts_at FROM appointments "
            "WHERE status = 'booked' GROUP BY provider_id, starts_at HAVING count(*) > 1) x"
        )).scalar()
        escalated = set(connection.execute(text(
            "SELECT c.phone FROM escalations e JOIN contacts c ON c.id = e.contact_id "
            "WHERE e.red_flag_rule IS NOT NULL AND c.phone = ANY(:numbers)"),
            {"numbers": burst.patients}).scalars())
    engine.dispose()
    twilio = cluster.twilio
    differing = [number for number in numbers if twilio.sids(number) != outbound[number]]
    if differing:  # what went wrong, for whoever reads a failure
        print(f"\n{differing[0]}: Twilio took {twilio.sids(differing[0])!r}, "
              f"the database sent {outbound[differing[0]]!r}")
    texted = Counter(twilio.count(caller) for caller in burst.callers)
    emergencies = {patient for index, patient in enumerate(burst.patients)
                   if index % EMERGENCY_EVERY == 0}
    return {
        "missed calls not texted": texted[0],
        "missed calls texted twice or more": sum(n for count, n in texted.items() if count > 1),
        "patient messages unanswered": unanswered,
        "patient messages read twice": sum(
            count - 1 for patient in burst.patients
            for count in Counter(read[patient]).values() if count > 1),
        # A patient's messages have increasing inbox ids: they wrote each after a reply.
        "patient messages read out of order": sum(
            read[patient] != sorted(read[patient], key=lambda m: int(m.split("-")[1]))
            for patient in burst.patients),
        "patient messages never read": sum(len(set(items[patient]) - set(read[patient]))
                                           for patient in burst.patients),
        "texts lost, doubled or reordered on the way to Twilio": len(differing),
        "double bookings": double_booked,
        "emergencies not escalated": len(emergencies - escalated),
        "appointments booked": booked,
        "texts sent while the fault lasted": burst.sent_during_fault,
        "webhook answers other than 2xx": sum(n for status, n in burst.answers.items()
                                              if not 200 <= status < 300),
    }


def _messages_read(connection, patients: list[str]) -> dict[str, list[str]]:
    """Per patient, the inbox ids of the messages the dialogue took, in the order it took them:
    Rasa's tracker events with a message id, leaving out turns it rewound (an action failed)."""
    taken: dict[str, list[str]] = defaultdict(list)  # every user event, missed-call ones too
    wanted = set(patients)
    rows = connection.execute(text(
        "SELECT sender_id, type_name, data FROM events WHERE type_name IN ('user', 'rewind') "
        "ORDER BY id"))
    for sender_id, type_name, data in rows:
        patient = sender_id.rsplit(":", 1)[-1]
        if patient not in wanted:
            continue
        if type_name == "rewind":
            if taken[patient]:
                taken[patient].pop()
        else:
            taken[patient].append(json.loads(data).get("message_id") or "")
    return {patient: [m for m in ids if m.startswith("inbox-")] for patient, ids in taken.items()}


def _assert_clean(report: dict, case: str) -> None:
    print(f"\nfault report, {case}:")
    for name, count in report.items():
        print(f"  {name:<58} {count}")
    assert {name: count for name, count in report.items()
            if name not in INFORMATIVE and count} == {}


def test_a_rasa_server_killed_mid_burst_loses_and_repeats_nothing(cluster: Cluster) -> None:
    burst = Burst(cluster, "rasa")
    burst.run(_restart_after_kill(cluster, "rasa 1"))
    _assert_clean(_report(burst), "SIGKILL rasa 1, then restart")


@pytest.mark.fault
def test_a_gateway_killed_mid_burst_loses_and_repeats_nothing(cluster: Cluster) -> None:
    burst = Burst(cluster, "gateway")
    burst.run(_restart_after_kill(cluster, "gateway 1"))
    _assert_clean(_report(burst), "SIGKILL gateway 1, then restart")


@pytest.mark.fault
def test_an_action_server_killed_mid_burst_loses_and_repeats_nothing(cluster: Cluster) -> None:
    burst = Burst(cluster, "action")
    burst.run(_restart_after_kill(cluster, "action server 1"))
    _assert_clean(_report(burst), "SIGKILL action server 1, then restart")


@pytest.mark.fault
def test_redis_restarted_mid_burst_loses_and_repeats_nothing(cluster: Cluster) -> None:
    burst = Burst(cluster, "redis")
    burst.run(cluster.redis.restart)
    _assert_clean(_report(burst), "Redis restarted")


@pytest.mark.fault
def test_postgresql_refusing_for_ten_seconds_loses_and_repeats_nothing(cluster: Cluster
                                                                        ) -> None:
    def outage() -> None:
        with cluster.database.refusing_connections():
            time.sleep(10)  # the outage itself lasts 10 s; nothing is waited for here

    burst = Burst(cluster, "postgres")
    burst.run(outage)
    _assert_clean(_report(burst), "PostgreSQL refusing connections for 10 s")


@pytest.mark.fault
def test_a_rolling_restart_under_load_fails_no_webhook(cluster: Cluster) -> None:
    """Every process restarted in turn (SIGTERM, start, healthy, next); nginx itself reloads
    its configuration and workers (SIGHUP), which is how nginx restarts without closing its
    port."""
    def rolling_restart() -> None:
        for service in cluster.supervisor.services:
            if service.name == "nginx":
                service.process.send_signal(signal.SIGHUP)
            else:
                cluster.supervisor.restart(service)

    burst = Burst(cluster, "rolling")
    burst.run(rolling_restart)
    report = _report(burst)
    _assert_clean(report, "rolling restart of every process")
    assert report["webhook answers other than 2xx"] == 0
