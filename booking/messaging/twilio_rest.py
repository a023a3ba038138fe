"""Async client for the Twilio REST calls Ringback makes: create a Message, and list Messages.

Listing is only used to settle a send whose outcome is unknown (the request left, no answer came
back), so a retry does not text the patient twice.

aiohttp rather than httpx: with fifty sends in flight httpx's connection pool spends
milliseconds of CPU per request (encode/httpx#3215), which showed up as text-backs waiting on
each other in bench/missed_calls.py. aiohttp is already installed for Rasa.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import aiohttp

# Twilio answers 429 when rate-limited and 5xx when it is having a bad day; both are worth a retry.
RETRYABLE_STATUS = {429, 500, 502, 503, 504}
# A gateway error in front of Twilio may hide a request Twilio did process.
IN_DOUBT_STATUS = {500, 502, 504}
# Twilio's error for a recipient who replied STOP to this sender (its own opt-out list).
UNSUBSCRIBED_RECIPIENT = "21610"
MAX_LIST_PAGES = 5


class TwilioSendError(Exception):
    def __init__(self, message: str, *, retryable: bool, code: str | None = None,
                 in_doubt: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        # True when Twilio may have created the message even though we got no answer.
        self.in_doubt = in_doubt


@dataclass(frozen=True)
class OutgoingMessage:
    to: str
    from_: str
    body: str = ""
    content_sid: str | None = None
    content_variables: str | None = None  # JSON text, as the Content API expects
    status_callback: str | None = None

    def form(self) -> dict[str, str]:
        fields = {"To": self.to, "From": self.from_}
        if self.content_sid:
            fields["ContentSid"] = self.content_sid
            if self.content_variables:
                fields["ContentVariables"] = self.content_variables
        else:
            fields["Body"] = self.body
        if self.status_callback:
            fields["StatusCallback"] = self.status_callback
        return fields


@dataclass(frozen=True)
class SentMessage:
    """A message as Twilio's list shows it."""

    sid: str
    to: str
    from_: str
    created_at: datetime | None


class TwilioMessagesClient:
    def __init__(self, *, base_url: str, account_sid: str, auth_token: str, timeout: float = 5.0):
        self._base = base_url.rstrip("/")
        self._url = f"{self._base}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = aiohttp.BasicAuth(account_sid, auth_token)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the event loop that runs it.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auth=self._auth, timeout=self._timeout,
                                                  raise_for_status=False)
        return self._session

    async def send(self, message: OutgoingMessage) -> str:
        """Create the message at Twilio and return its SID."""
        try:
            async with self._client().post(self._url, data=message.form()) as response:
                status, body = response.status, await response.read()
        except aiohttp.ClientConnectorError as exc:
            # No connection was made: certainly not sent.
            raise TwilioSendError(f"Twilio unreachable: {exc!r}", retryable=True) from exc
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise TwilioSendError(f"no answer from Twilio: {exc!r}", retryable=True,
                                  in_doubt=True) from exc
        if status in (200, 201):
            return json.loads(body)["sid"]
        code = _error_code(body)
        raise TwilioSendError(
            f"Twilio refused the message: HTTP {status}, code {code}",
            retryable=status in RETRYABLE_STATUS,
            in_doubt=status in IN_DOUBT_STATUS,
            code=code,
        )

    async def sent_since(self, *, to: str, from_: str, since: datetime) -> list[SentMessage]:
        """Messages from `from_` to `to` created at or after `since` (UTC), oldest first."""
        params: dict[str, str] | None = {
            "To": to, "From": from_,
            "DateSent>": since.astimezone(timezone.utc).strftime("%Y-%m-%d"), "PageSize": "50"}
        found: list[SentMessage] = []
        url: str | None = self._url
        for _ in range(MAX_LIST_PAGES):
            if url is None:
                break
            try:
                async with self._client().get(url, params=params) as response:
                    status, body = response.status, await response.read()
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                raise TwilioSendError(f"could not list messages: {exc!r}",
                                      retryable=True, in_doubt=True) from exc
            if status != 200:
                raise TwilioSendError(f"could not list messages: HTTP {status}",
                                      retryable=True, in_doubt=True)
            page = json.loads(body)
            for row in page.get("messages", []):
                created = _parse_date(row.get("date_created"))
                if created is None or created >= since.replace(microsecond=0):
                    found.append(SentMessage(sid=row["sid"], to=row.get("to", ""),
                                             from_=row.get("from", ""), created_at=created))
            next_uri = page.get("next_page_uri")
            url, params = (f"{self._base}{next_uri}" if next_uri else None), None
        found.sort(key=lambda m: m.created_at or since)
        return found

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(timezone.utc)
    except (TypeError, ValueError):
        return None


def _error_code(body: bytes) -> str | None:
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None
    return str(code) if code is not None else None
