"""The few calls Ringback makes to the Rasa server's HTTP API."""

from __future__ import annotations

from urllib.parse import quote

import httpx

OUTPUT_CHANNEL_FOR = {"sms": "twilio_sms", "whatsapp": "twilio_whatsapp"}


class RasaClient:
    def __init__(self, *, base_url: str, timeout: float = 30.0):
        self._base = base_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout)

    def _conversation(self, sender_id: str) -> str:
        # Rasa's routes do not unquote the id: "%3A%2B" would name another conversation than
        # the one the Twilio channel keeps under "riverside:+44...", so ':' and '+' stay as is.
        return f"{self._base}/conversations/{quote(sender_id, safe=':+')}"

    async def trigger_intent(self, *, sender_id: str, intent: str, channel: str,
                             entities: dict | None = None) -> None:
        response = await self._client.post(
            f"{self._conversation(sender_id)}/trigger_intent",
            params={"output_channel": OUTPUT_CHANNEL_FOR[channel]},
            json={"name": intent, "entities": entities or {}},
        )
        response.raise_for_status()

    async def append_event(self, *, sender_id: str, event: dict | list[dict]) -> None:
        response = await self._client.post(f"{self._conversation(sender_id)}/tracker/events",
                                           json=event)
        response.raise_for_status()

    async def pause(self, *, sender_id: str) -> None:
        """Staff took the thread: Rasa keeps logging the patient's messages but stops replying."""
        await self.append_event(sender_id=sender_id, event={"event": "pause"})

    async def resume(self, *, sender_id: str) -> None:
        """The bot answers again. The action_listen closes the turn the pause left open (a
        pausing action such as action_escalate ends without one); without it the next message
        is read as part of that old turn and the bot only listens."""
        await self.append_event(sender_id=sender_id, event=[
            {"event": "resume"}, {"event": "action", "name": "action_listen"}])

    async def is_ready(self) -> bool:
        try:
            response = await self._client.get(f"{self._base}/status")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()
