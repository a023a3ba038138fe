"""What the gateway's routes share: settings, database sessions, the outbox, the Rasa client,
and the threads and limits for the work done after a webhook has answered."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy.orm import sessionmaker

from booking.batching import Batches
from booking.calls.recovery import CallReport, RecordedCall
from booking.gateway.work import Decided, DeliveryReport, InboxDelivery, Wakeable
from booking.messaging.arrivals import NewArrival
from booking.messaging.outbox import Outbox
from booking.messaging.rasa_client import RasaClient
from booking.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Work after the answer (deciding text-backs, the outbox) has threads of its own, so a burst of
# it never queues in front of the next webhook's database work (the default executor).
BACKGROUND_THREADS = 4


def background_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=BACKGROUND_THREADS, thread_name_prefix="background")


@dataclass
class GatewayContext:
    settings: Settings
    sessions: sessionmaker
    outbox: Outbox
    rasa: RasaClient
    executor: ThreadPoolExecutor = field(default_factory=background_executor)
    # Set by the app once the context exists, as they need it: see app.build_context.
    missed_calls: Batches[CallReport, RecordedCall] = field(init=False)
    delivery_reports: Batches[DeliveryReport, None] = field(init=False)
    text_backs: Batches[int, Decided | None] = field(init=False)
    inbound: Batches[NewArrival, None] = field(init=False)
    intake: Wakeable = field(init=False)
    inbox: InboxDelivery = field(init=False)
    # Number -> (expiry, look-up of its clinic) for the webhooks; see
    # clinic_numbers.clinic_for_number.
    clinic_cache: dict[str, tuple[float, asyncio.Future]] = field(default_factory=dict)
    _background: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._webhooks_in_flight = 0
        self._no_webhooks = asyncio.Event()
        self._no_webhooks.set()

    @contextlib.contextmanager
    def webhook(self) -> Iterator[None]:
        """Marks a webhook Twilio is waiting on; follow-up work gives way to it."""
        self._webhooks_in_flight += 1
        self._no_webhooks.clear()
        try:
            yield
        finally:
            self._webhooks_in_flight -= 1
            if not self._webhooks_in_flight:
                self._no_webhooks.set()

    async def give_way_to_webhooks(self, *, at_most: float = 0.5) -> None:
        """Wait (briefly) while webhooks are being answered: Twilio is waiting on those."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._no_webhooks.wait(), at_most)

    async def in_background(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking work on the background threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args))

    def spawn(self, coro, *, name: str) -> None:
        """Run work after the response has gone; keep a reference so it is not collected."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task %s failed", task.get_name(),
                         exc_info=task.exception())

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


async def get_context(request: Request) -> GatewayContext:
    # async: FastAPI runs a plain `def` dependency on a worker thread, on every request.
    return request.app.state.context
