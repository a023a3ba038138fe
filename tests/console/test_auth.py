"""Password fingerprints and the sign-in delay's growth, without a server (the throttle itself
is tested against the real app and database in test_sessions.py)."""

from __future__ import annotations

from booking.console.auth import fingerprint
from booking.console.throttle import MAX_DELAY_SECONDS, delay_seconds


def test_the_delay_starts_after_the_free_failures_doubles_and_stops_growing():
    assert [delay_seconds(n, free=5) for n in range(5)] == [0.0] * 5
    assert [delay_seconds(n, free=5) for n in range(5, 10)] == [30, 60, 120, 240, 480]
    assert delay_seconds(11, free=5) == delay_seconds(10_000, free=5) == MAX_DELAY_SECONDS


def test_session_fingerprint_changes_with_the_password_hash():
    assert fingerprint("$argon2id$one") != fingerprint("$argon2id$two")
    assert len(fingerprint("$argon2id$one")) == 16
