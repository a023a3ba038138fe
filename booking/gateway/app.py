"""The gateway application: routes, plus the background work that keeps the outbox moving."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from booking import console
from booking.batching import Batches
from booking.db import get_engine, session_factory, warm_up
from booking.escalation.staff_alerts import EscalationAlerts
from booking.gateway import (
    follow_up,
    messaging,
    messaging_status,
    missed_call_hook,
    outreach,
    voice,
)
from booking.gateway.context import GatewayContext
from booking.messaging import inbox
from booking.messaging.outbox import Outbox
from booking.messaging.rasa_client import RasaClient
from booking.models import utcnow
from booking.outreach.gate import ComplianceGate
from booking.records.retention import RetentionPurge
from booking.settings import Settings, get_settings

logger = logging.getLogger(__name__)
BATCH_SIZE = 50


def build_context(settings: Settings) -> GatewayContext:
    context = GatewayContext(settings=settings,
                             sessions=session_factory(get_engine(settings.database_url)),
                             outbox=Outbox.from_settings(settings),
                             rasa=RasaClient(base_urls=settings.rasa_urls,
                                             token=settings.rasa_token,
                                             timeout=settings.rasa_timeout_seconds))
    context.outbox.use_executor(context.executor)  # sending never queues before webhooks
    # Each batches what arrives together: a burst of calls is a few transactions, not one each.
    context.missed_calls = Batches(functools.partial(voice.record_calls, context),
                                   spawn=context.spawn, max_size=BATCH_SIZE)
    context.delivery_reports = Batches(functools.partial(messaging_status.record_reports, context),
                                       spawn=context.spawn, max_size=BATCH_SIZE)
    context.text_backs = Batches(functools.partial(follow_up.decide_batch, context),
                                 spawn=context.spawn, max_size=BATCH_SIZE,
                                 before_each=context.give_way_to_webhooks)
    context.inbound = Batches(functools.partial(messaging.store_batch, context),
                              spawn=context.spawn, max_size=BATCH_SIZE)
    context.intake = messaging.Intake(context, interval=settings.inbox_sweep_interval_seconds)
    context.inbox = messaging.InboxWorker(context, policy=inbox.InboxPolicy.from_settings(settings),
                                          interval=settings.inbox_sweep_interval_seconds)
    return context


def create_app(settings: Settings | None = None, *,
               clock: Callable[[], datetime] = utcnow) -> FastAPI:
    """`clock`: the time console sessions and sign-in throttling read (tests drive it)."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = build_context(settings)
        app.state.context = context
        try:
            await asyncio.to_thread(warm_up, get_engine(settings.database_url))
        except SQLAlchemyError:  # the database is not up yet: connect when it is needed
            logger.warning("could not open database connections at start", exc_info=True)
        # Read once at start, so the first patient message does not wait on the rule file.
        await asyncio.to_thread(inbox.red_flag_rules)
        sweeper = asyncio.create_task(context.outbox.run(), name="outbox sweeper")
        undecided = asyncio.create_task(follow_up.sweep_undecided(context),
                                        name="undecided missed calls")
        # Patient messages into the inbox and on to the dialogue, including those left by a
        # restart.
        intake = asyncio.create_task(context.intake.run(), name="intake")
        inbox_worker = asyncio.create_task(context.inbox.run(), name="inbox")
        # Follow-ups, reminders and rebooking offers, through the compliance gate.
        outreach_worker = asyncio.create_task(outreach.OutreachWorker(
            context, gate=ComplianceGate.from_file(settings.outreach_rules_file),
            interval=settings.outreach_interval_seconds,
            plan_interval=settings.outreach_plan_interval_seconds).run(), name="outreach")
        # Re-alerts nobody acknowledged, deferred first alerts, email and webhook alerts.
        alerts = EscalationAlerts(sessions=context.sessions, outbox=context.outbox,
                                  settings=settings)
        realerts = asyncio.create_task(
            alerts.run(interval=settings.escalation_sweep_interval_seconds),
            name="escalation alerts")
        # Patients' words past their clinic's retention, here and in Rasa's tracker store.
        retention = asyncio.create_task(RetentionPurge(
            sessions=context.sessions, tracker_store_url=settings.rasa_tracker_store_url).run(
                interval=settings.retention_purge_interval_seconds), name="retention purge")
        try:
            yield
        finally:
            retention.cancel()
            sweeper.cancel()
            undecided.cancel()
            intake.cancel()
            inbox_worker.cancel()
            outreach_worker.cancel()
            realerts.cancel()
            await context.inbox.aclose()
            await alerts.aclose()
            await context.rasa.aclose()
            await context.outbox.aclose()
            context.close()

    app = FastAPI(title="Ringback gateway", lifespan=lifespan)
    app.include_router(voice.router)
    app.include_router(missed_call_hook.router)
    app.include_router(messaging.router)
    app.include_router(messaging_status.router)
    console.install(app, settings, clock=clock)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    return app
