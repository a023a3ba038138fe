"""The kinds of work the gateway queues after a webhook has answered, as plain types.

`context.GatewayContext` holds a queue (`batching.Batches`) of each kind, and the handlers
(`follow_up`, `messaging`, `messaging_status`) fill and drain them. The types live here, apart
from both, so the context never imports its handlers and the handlers import the context only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from booking.calls.recovery import MissedCallOutcome
from booking.messaging.outbox import Claim
from booking.models import Channel

# A missed call's text-back, once decided: the outcome and the first message's outbox claim.
Decided = tuple[MissedCallOutcome, Claim | None]


@dataclass(frozen=True)
class Inbound:
    """A patient's (or staff member's) message as Twilio posted it, with when it arrived."""
    channel: Channel
    params: dict[str, str]
    received_at: datetime


@dataclass(frozen=True)
class DeliveryReport:
    message_sid: str
    status: str
    error_code: str | None
    message_id: int | None  # ours, from the StatusCallback URL


class InboxDelivery(Protocol):
    """What the routes and the app need of the inbox worker (`messaging.InboxWorker`)."""

    def wake(self) -> None: ...

    async def run(self) -> None: ...

    async def aclose(self) -> None: ...
