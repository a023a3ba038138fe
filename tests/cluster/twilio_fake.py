"""Twilio's Messages API at the network boundary, as far as the outbox uses it: creating a
message, and listing them (the outbox asks before re-sending one in doubt). Thread-safe: the
cluster's gateways call it while the test reads what arrived."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from email.utils import format_datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MESSAGES_PATH = "/2010-04-01/Accounts/{account}/Messages.json"


class TwilioFake:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        # Recipient -> the SIDs of the messages Twilio took for them, in that order.
        self._sids: dict[str, list[str]] = defaultdict(list)
        self._rows: list[dict] = []

    def app(self) -> Starlette:
        return Starlette(routes=[Route(MESSAGES_PATH, self._create, methods=["POST"]),
                                 Route(MESSAGES_PATH, self._list, methods=["GET"])])

    async def _create(self, request: Request) -> JSONResponse:
        form = await request.form()
        to = str(form.get("To", ""))
        row = {"sid": f"SM{uuid.uuid4().hex}", "to": to, "from": str(form.get("From", "")),
               "status": "queued",
               "date_created": format_datetime(datetime.now(timezone.utc), usegmt=True)}
        with self._lock:
            self._sids[to.removeprefix("whatsapp:")].append(row["sid"])
            self._rows.append(row)
            self._lock.notify_all()
        return JSONResponse(row, status_code=201)

    async def _list(self, request: Request) -> JSONResponse:
        to, from_ = request.query_params.get("To"), request.query_params.get("From")
        with self._lock:
            rows = [row for row in self._rows
                    if (to is None or row["to"] == to) and (from_ is None or row["from"] == from_)]
        return JSONResponse({"messages": rows, "next_page_uri": None})

    def sids(self, number: str) -> list[str]:
        with self._lock:
            return list(self._sids[number])

    def count(self, number: str) -> int:
        with self._lock:
            return len(self._sids[number])

    def total(self) -> int:
        with self._lock:
            return len(self._rows)

    def wait_for(self, number: str, count: int, *, timeout: float) -> None:
        """Until `count` messages to `number` have arrived; TimeoutError after `timeout`."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._sids[number]) >= count, timeout):
                raise TimeoutError(f"{number}: {len(self._sids[number])} of {count} messages")

    def wait_for_total(self, count: int, *, timeout: float) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._rows) >= count, timeout):
                raise TimeoutError(f"{len(self._rows)} of {count} messages in all")
