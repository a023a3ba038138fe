"""The few calls Ringback makes to the Rasa server's HTTP API.

aiohttp, like the Twilio client: every missed call ends with a call to Rasa, and in a burst
httpx's pool cost milliseconds of CPU per request (encode/httpx#3215).
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import aiohttp
from yarl import URL

OUTPUT_CHANNEL_FOR = {"sms": "twilio_sms", "whatsapp": "twilio_whatsapp"}


class RasaUnavailable(Exception):
    """Rasa did not answer, or answered with an error."""


class RasaClient:
    def __init__(self, *, base_url: str, timeout: float = 30.0):
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _conversation(self, sender_id: str) -> str:
        # Rasa's routes do not unquote the id: "%3A%2B" would name another conversation than
        # the one the Twilio channel keeps under "riverside:+44...", so ':' and '+' stay as is.
        return f"{self._base}/conversations/{quote(sender_id, safe=':+')}"

    async def _request(self, method: str, url: str, **kwargs) -> int:
        if self._session is None or self._session.closed:
            # Made on first use: an aiohttp session belongs to the event loop that runs it.
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            # encoded=True: the id above is quoted already, and must reach Rasa as it is.
            async with self._session.request(method, URL(url, encoded=True),
                                             **kwargs) as response:
                await response.read()
                return response.status
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise RasaUnavailable(f"{method} {url}: {exc!r}") from exc

    async def _post(self, url: str, **kwargs) -> None:
        status = await self._request("POST", url, **kwargs)
        if status >= 400:
            raise RasaUnavailable(f"POST {url}: HTTP {status}")

    async def trigger_intent(self, *, sender_id: str, intent: str, channel: str,
                             entities: dict | None = None) -> None:
        await self._post(
            f"{self._conversation(sender_id)}/trigger_intent"
            f"?output_channel={OUTPUT_CHANNEL_FOR[channel]}",
            json={"name": intent, "entities": entities or {}},
        )

    async def append_event(self, *, sender_id: str, event: dict | list[dict]) -> None:
        await self._post(f"{self._conversation(sender_id)}/tracker/events", json=event)

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
