"""Several gateway processes share the scheduled jobs on PostgreSQL: each job is sent once, and
a process killed after claiming jobs, before its transaction commits, loses none of them."""

from __future__ import annotations

import multiprocessing
import os
import signal
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from booking.clinics.config import load_clinics
from booking.db import make_engine, session_factory
from booking.migrate import upgrade
from booking.models import (
    Appointment,
    Clinic,
    Contact,
    JobDecision,
    JobState,
    Message,
    ScheduledJob,
)
from booking.outreach.gate import ComplianceGate
from booking.outreach.planner import plan
from booking.outreach.runner import run_due
from tests.booking.conftest import EXAMPLE_FILE
from tests.booking.test_concurrency import postgres_url  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)  # a Monday, noon in London
PATIENTS = 300


def _prepare(url: str) -> None:
    """Migrate, and give 300 patients of Riverside an appointment whose reminder is due."""
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine)() as session, session.begin():
        load_clinics(session, EXAMPLE_FILE)
        clinic = session.execute(select(Clinic).where(Clinic.slug == "riverside")).scalar_one()
        service = clinic.services[0]
        for index in range(PATIENTS):
            contact = Contact(clinic_id=clinic.id, phone=f"+4477009{index:05d}",
                              first_name="Pat")
            session.add(contact)
            session.flush()
            starts = NOW + timedelta(hours=24) - timedelta(minutes=index % 30)
            session.add(Appointment(
                clinic_id=clinic.id, contact_id=contact.id, service_id=service.id,
                provider_id=service.providers[0].id, starts_at=starts,
                ends_at=starts + timedelta(minutes=30), idempotency_key=uuid.uuid4().hex,
                created_at=NOW - timedelta(days=7), updated_at=NOW - timedelta(days=7)))
        plan(session, now=NOW)
    engine.dispose()


def _gateway(url: str, start, results) -> None:
    start.wait()
    results.put(_run_until_none_due(url))


def _run_until_none_due(url: str) -> int:
    """What one gateway process does: decide due jobs in small batches until none are left."""
    engine = make_engine(url)
    sessions, gate, sent = session_factory(engine), ComplianceGate.from_file(), 0
    while True:
        with sessions() as session, session.begin():
            started = run_due(session, now=NOW, gate=gate, limit=20)
            sent += len(started)
            left = session.execute(select(func.count()).select_from(ScheduledJob).where(
                ScheduledJob.state == JobState.scheduled,
                ScheduledJob.due_at <= NOW)).scalar_one()
        if not started and not left:
            engine.dispose()
            return sent


def _claim_and_hang(url: str, claimed: multiprocessing.Event) -> None:
    """A gateway that takes jobs and stores their messages, then dies before committing."""
    sessions = session_factory(make_engine(url))
    with sessions() as session, session.begin():
        run_due(session, now=NOW, gate=ComplianceGate.from_file(), limit=PATIENTS)
        claimed.set()
        signal.pause()


def _sent_once(url: str) -> None:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        jobs = session.execute(select(ScheduledJob)).scalars().all()
        assert len(jobs) == PATIENTS
        assert {job.state for job in jobs} == {JobState.sent}
        per_patient = Counter(session.execute(
            select(Message.to_number).where(Message.author == "bot")).scalars())
        assert len(per_patient) == PATIENTS and set(per_patient.values()) == {1}
        assert session.execute(select(func.count()).select_from(JobDecision).where(
            JobDecision.outcome == "sent")).scalar_one() == PATIENTS
    engine.dispose()


def test_two_gateway_processes_never_send_one_job_twice(postgres_url):  # noqa: F811
    _prepare(postgres_url)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    gateways = [context.Process(target=_gateway, args=(postgres_url, start, results))
                for _ in range(2)]
    for gateway in gateways:
        gateway.start()
    sent = [results.get(timeout=300) for _ in gateways]
    for gateway in gateways:
        gateway.join()
    assert sum(sent) == PATIENTS
    _sent_once(postgres_url)


def test_a_gateway_killed_between_claiming_and_committing_loses_nothing(
        postgres_url):  # noqa: F811
    _prepare(postgres_url)
    context = multiprocessing.get_context("spawn")
    claimed = context.Event()
    doomed = context.Process(target=_claim_and_hang, args=(postgres_url, claimed))
    doomed.start()
    assert claimed.wait(timeout=120), "the doomed gateway never claimed its jobs"
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join()
    # Its row locks went with its connection; the next pass takes every job.
    assert _run_until_none_due(postgres_url) == PATIENTS
    _sent_once(postgres_url)
