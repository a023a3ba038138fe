"""Async client for the one Twilio REST call Ringback makes: create a Message."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

# Twilio answers 429 when rate-limited and 5xx when it is having a bad day; both are worth a retry.
RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class TwilioSendError(Exception):
    def __init__(self, message: str, *, retryable: bool, code: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.code = code


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


class TwilioMessagesClient:
    def __init__(self, *, base_url: str, account_sid: str, auth_token: str, timeout: float = 5.0):
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._client = httpx.AsyncClient(auth=(account_sid, auth_token), timeout=timeout)

    async def send(self, message: OutgoingMessage) -> str:
        """Create the message at Twilio and return its SID."""
        try:
            response = await self._client.post(self._url, data=message.form())
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TwilioSendError(f"Twilio unreachable: {exc!r}", retryable=True) from exc
        if response.status_code in (200, 201):
            return response.json()["sid"]
        code = _error_code(response)
        raise TwilioSendError(
            f"Twilio refused the message: HTTP {response.status_code}, code {code}",
            retryable=response.status_code in RETRYABLE_STATUS,
            code=code,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_code(response: httpx.Response) -> str | None:
    try:
        code = response.json().get("code")
    except ValueError:
        return None
    return str(code) if code is not None else None
