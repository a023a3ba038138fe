"""Drive the Twilio simulator from Python: ring the clinic, text it, read what came back."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


class SimulatedPhone:
    def __init__(self, simulator_url: str, *, timeout: float = 30.0):
        self._http = httpx.Client(base_url=simulator_url, timeout=timeout)

    def ring(self, *, caller: str, clinic_number: str, outcome: str = "no-answer",
             **options) -> dict:
        """Call the clinic; `outcome` is the DialCallStatus Twilio reports for the front desk.

        Options: `screen_accepted` (the desk pressed 1 at the whisper), `caller_hangs_up`
        (no Dial outcome, only the call's status callback), `status_callback` (default on).
        """
        response = self._http.post("/_fake/calls", json={"caller": caller, "to": clinic_number,
                                                         "outcome": outcome, **options})
        response.raise_for_status()
        return response.json()

    def text(self, *, sender: str, clinic_number: str, body: str, channel: str = "sms",
             **extra) -> dict:
        response = self._http.post("/_fake/inbound", json={
            "from_": sender, "to": clinic_number, "body": body, "channel": channel, **extra})
        response.raise_for_status()
        return response.json()

    def messages(self, number: str, *, direction: str | None = None) -> list[dict]:
        params = {"number": number}
        if direction:
            params["direction"] = direction
        response = self._http.get("/_fake/messages", params=params)
        response.raise_for_status()
        return response.json()

    def sent_to(self, number: str) -> list[dict]:
        """Messages Ringback sent to this number, oldest first."""
        return self.messages(number, direction="outbound-api")

    def wait_for(self, number: str, *, count: int, timeout: float = 60.0,
                 where: Callable[[dict], bool] = lambda message: True) -> list[dict]:
        """Wait until Ringback has sent at least `count` matching messages to this number."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.sent_to(number) if where(m)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} messages to {number} after "
                                   f"{timeout}s: {[m['body'] for m in found]}")
            time.sleep(0.1)

    def reply_and_wait(self, *, sender: str, clinic_number: str, body: str,
                       channel: str = "sms", timeout: float = 30.0) -> str:
        """Text the clinic and return the text of the next message Ringback sends back."""
        before = len(self.sent_to(sender))
        self.text(sender=sender, clinic_number=clinic_number, body=body, channel=channel)
        return self.wait_for(sender, count=before + 1, timeout=timeout)[before]["body"]

    def control(self, **settings) -> None:
        """fail_next/fail_status, delay_seconds, hang_after_create/hang_seconds,
        status_callbacks; no arguments puts everything back to normal."""
        self._http.post("/_fake/control", json=settings).raise_for_status()

    def whatsapp_undeliverable(self, number: str, error_code: int = 63016) -> None:
        self._http.post("/_fake/whatsapp-undeliverable",
                        json={"number": number, "error_code": error_code}).raise_for_status()

    def whatsapp_deliverable(self, number: str) -> None:
        self._http.post("/_fake/whatsapp-deliverable",
                        json={"number": number}).raise_for_status()

    def close(self) -> None:
        self._http.close()
