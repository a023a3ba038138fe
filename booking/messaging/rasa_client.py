"""The few calls Ringback makes to the Rasa server's HTTP API.

aiohttp, like the Twilio client: every missed call ends with a call to Rasa, and in a burst
httpx's pool cost milliseconds of CPU per request (encode/httpx#3215).

With several Rasa processes, each conversation always goes to the same one (a stable hash of
its sender id): every event of a patient's conversation, the missed call, their messages, a
reminder, staff's pause, is handled by one process, whose own lock serialises them; with
PostgreSQL and Redis any process could take any conversation, this only keeps caches warm.

When that process cannot be reached (refused, or no connection within `CONNECT_SECONDS`), the
call goes to the next one in the ring: every process reads the one shared tracker store, and
Rasa's Redis lock store keeps one message at a time per conversation across processes. A
process that was reached but failed (an error status, a timeout after connecting) is not
asked again elsewhere: the inbox retries the message later, under the same message id, and the
channel recognises a message its tracker already holds (connectors/gateway_channel.py).
"""

from __future__ import annotations

import asyncio
import json
import zlib
from urllib.parse import quote

import aiohttp
from yarl import URL

# The Rasa channel the gateway hands patient messages to (connectors/gateway_channel.py).
GATEWAY_CHANNEL_PATH = "/webhooks/ringback/webhook"
# Where the same channel takes external events (the missed call), refused while actions fail.
GATEWAY_EVENT_PATH = "/webhooks/ringback/event"


# A dead process refuses at once on one host; across hosts a dead one may not answer at all.
CONNECT_SECONDS = 2.0


class RasaUnavailable(Exception):
    """Rasa did not answer, or answered with an error."""


class RasaUnreachable(RasaUnavailable):
    """No connection to that Rasa process: the message never reached it."""


class RasaClient:
    def __init__(self, *, base_urls: list[str], token: str | None, timeout: float = 30.0):
        if not base_urls:
            raise ValueError("no Rasa process to talk to")
        self._bases = [url.rstrip("/") for url in base_urls]
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_SECONDS)
        self._session: aiohttp.ClientSession | None = None

    def base_for(self, sender_id: str) -> str:
        """The Rasa process that keeps this conversation while it is up."""
        return self._bases_for(sender_id)[0]

    def _bases_for(self, sender_id: str) -> list[str]:
        """The conversation's own process first, then the others in ring order."""
        first = zlib.crc32(sender_id.encode()) % len(self._bases)
        return self._bases[first:] + self._bases[:first]

    @staticmethod
    def _conversation_path(sender_id: str) -> str:
        # Rasa's routes do not unquote the id: "%3A%2B" would name another conversation than
        # the one the Twilio channel keeps under "riverside:+44...", so ':' and '+' stay as is.
        return f"/conversations/{quote(sender_id, safe=':+')}"

    async def _request(self, method: str, url: str, **kwargs) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            # Made on first use: an aiohttp session belongs to the event loop that runs it.
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        # Rasa's HTTP API takes its token as a query parameter; our channel as a header.
        target = URL(url, encoded=True)  # the id in it is quoted already: keep it as it is
        if self._token:
            target = target.update_query(token=self._token)
            kwargs.setdefault("headers", {})["Authorization"] = f"Bearer {self._token}"
        try:
            async with self._session.request(method, target, **kwargs) as response:
                return response.status, await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError) as exc:
            # ServerTimeoutError here is sock_connect's: the read has no timeout of its own.
            raise RasaUnreachable(f"{method} {url}: {exc!r}") from exc
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise RasaUnavailable(f"{method} {url}: {exc!r}") from exc

    async def _post(self, sender_id: str, path: str, **kwargs) -> bytes:
        """POST to the conversation's process, or the next reachable one."""
        unreachable: RasaUnreachable | None = None
        for base in self._bases_for(sender_id):
            try:
                status, body = await self._request("POST", base + path, **kwargs)
            except RasaUnreachable as exc:
                unreachable = exc
                continue
            if status >= 400:
                raise RasaUnavailable(f"POST {base}{path}: HTTP {status}")
            return body
        raise unreachable

    async def handle_message(self, *, sender_id: str, text: str, message_id: str,
                             metadata: dict) -> list[str]:
        """The dialogue reads one patient message; its replies, in order. RasaUnavailable
        when Rasa, or an action the message needed, failed: nothing was answered."""
        body = await self._post(sender_id, GATEWAY_CHANNEL_PATH, json={
            "sender": sender_id, "text": text, "message_id": message_id, "metadata": metadata})
        try:
            replies = json.loads(body)["replies"]
        except (ValueError, KeyError, TypeError) as exc:
            # Not the body itself: it holds what the bot told a patient.
            raise RasaUnavailable(f"unreadable answer from Rasa ({len(body)} bytes)") from exc
        return [str(reply) for reply in replies]

    async def trigger_intent(self, *, sender_id: str, intent: str,
                             entities: dict | None = None) -> None:
        """An external event for the dialogue's context. Its actions must not speak: what the
        patient reads after a missed call is the gateway's text-back, and anything said here
        would be dropped."""
        await self._post(sender_id, GATEWAY_EVENT_PATH, json={
            "sender": sender_id, "intent": intent, "entities": entities or {}})

    async def append_event(self, *, sender_id: str, event: dict | list[dict]) -> None:
        await self._post(sender_id, f"{self._conversation_path(sender_id)}/tracker/events",
                         json=event)

    async def pause(self, *, sender_id: str) -> None:
        """Staff took the thread: Rasa keeps logging the patient's messages but stops replying."""
        await self.append_event(sender_id=sender_id, event={"event": "pause"})

    async def resume(self, *, sender_id: str) -> None:
        """The bot answers again. The action_listen closes the turn the pause left open (a
        pausing action such as action_escalate ends without one); without it the next message
        is read as part of that old turn and the bot only listens."""
        await self.append_event(sender_id=sender_id, event=[
            {"event": "resume"}, {"event": "action", "name": "action_listen"}])

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
