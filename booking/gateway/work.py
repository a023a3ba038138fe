"""The kinds of work the gateway queues after a webhook has answered, as plain types.

`context.GatewayContext` holds a queue (`booking.batching.Batches`) of each kind, and the handlers
(`follow_up`, `messaging`, `messaging_status`) fill and drain them. The types live here, apart
from both, so the context never imports its handlers and the handlers import the context only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from booking.calls.recovery import MissedCallOutcome
from booking.messaging.outbox import Claim

# A missed call's text-back, once decided: the outcome and the first message's outbox claim.
Decided = tuple[MissedCallOutcome, Claim | None]


@dataclass(frozen=True)
class DeliveryReport:
    message_sid: str
    status: str
    error_code: str | None
    message_id: int | None  # ours, from the StatusCallback URL


class Wakeable(Protocol):
    """A worker that runs at each tick and at once when told there is work (`messaging.Intake`)."""

    def wake(self) -> None: ...

    async def run(self) -> None: ...


class InboxDelivery(Wakeable, Protocol):
    """What the routes and the app need of the inbox worker (`messaging.InboxWorker`)."""

    async def aclose(self) -> None: ...
