"""What the gateway's routes share: settings, database sessions, the outbox, the Rasa client."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.orm import sessionmaker

from booking.outbox import Outbox
from booking.rasa_client import RasaClient
from booking.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class GatewayContext:
    settings: Settings
    sessions: sessionmaker
    outbox: Outbox
    rasa: RasaClient
    _background: set[asyncio.Task] = field(default_factory=set)

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


def get_context(request: Request) -> GatewayContext:
    return request.app.state.context
