"""The compliance gate alone: how long 10,000 decisions take, the share of the reminder burst
(`make bench`: 10,000 reminders due at once across 200 clinics) that the gate itself costs.

Each decision is for a different patient (a number never seen, so phonenumbers parses it) of
one of 200 clinics, half in New York, half in London, with three messages already sent, at a
moment that is evening in New York (so US numbers are deferred and caps are counted).
`repeat_numbers` decides the same 10,000 again: numbers already parsed, as when one patient's
follow-ups and reminders come round.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from booking.outreach.gate import ComplianceGate, SentBefore

DECISIONS = 10_000
CLINICS = 200
NOW = datetime(2026, 12, 8, 1, 30, tzinfo=timezone.utc)  # 20:30 in New York


def _requests() -> list[dict]:
    history = [SentBefore(NOW - timedelta(hours=hours), "appointment:1") for hours in (5, 30, 60)]
    requests = []
    for index in range(DECISIONS):
        clinic = index % CLINICS
        us = clinic % 2 == 0
        requests.append({
            "phone": f"+1305{2000000 + index:07d}" if us else f"+447911{100000 + index:06d}",
            "clinic_country": "US" if us else "GB",
            "clinic_timezone": "America/New_York" if us else "Europe/London",
            "clinic_name": f"Clinic {clinic}",
            "clinic_rules": {} if us else {"caps": {"per_24h": 2}},
            "body": f"Clinic {clinic}: see you tomorrow at 10:00. Reply STOP to opt out.",
            "subject": "appointment:1", "now": NOW, "history": history, "expires_at": None})
    return requests


def _seconds(gate: ComplianceGate, requests: list[dict]) -> float:
    started = time.perf_counter()
    for request in requests:
        gate.decide(**request)
    return time.perf_counter() - started


def run() -> dict:
    gate = ComplianceGate.from_file()
    requests = _requests()
    first = _seconds(gate, requests)
    again = _seconds(gate, requests)
    return {"decisions": DECISIONS, "clinics": CLINICS,
            "new_numbers_seconds": round(first, 2),
            "new_numbers_us_each": round(first / DECISIONS * 1e6),
            "repeat_numbers_seconds": round(again, 2),
            "repeat_numbers_us_each": round(again / DECISIONS * 1e6)}
