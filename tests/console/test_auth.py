"""Sign-in throttling and password checks, without a server."""

from __future__ import annotations

from booking.console.auth import LoginThrottle, fingerprint


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_blocks_a_username_after_the_limit_until_the_window_passes():
    clock = Clock()
    throttle = LoginThrottle(limit=3, window_seconds=900, clock=clock)
    for _ in range(3):
        assert not throttle.blocked(username="Front-Desk", address="10.0.0.1")
        throttle.failed(username="front-desk", address="10.0.0.1")
    assert throttle.blocked(username="FRONT-DESK", address="10.0.0.9")
    assert not throttle.blocked(username="someone-else", address="10.0.0.1")
    clock.now += 901
    assert not throttle.blocked(username="front-desk", address="10.0.0.1")


def test_one_address_guessing_many_usernames_is_blocked_too():
    throttle = LoginThrottle(limit=2, window_seconds=900, clock=Clock())
    for index in range(10):
        throttle.failed(username=f"user-{index}", address="203.0.113.5")
    assert throttle.blocked(username="user-new", address="203.0.113.5")
    assert not throttle.blocked(username="user-new", address="198.51.100.7")


def test_success_clears_the_usernames_failures():
    throttle = LoginThrottle(limit=2, window_seconds=900, clock=Clock())
    throttle.failed(username="a", address="x")
    throttle.succeeded(username="a")
    throttle.failed(username="a", address="y")
    assert not throttle.blocked(username="a", address="z")


def test_session_fingerprint_changes_with_the_password_hash():
    assert fingerprint("$argon2id$one") != fingerprint("$argon2id$two")
    assert len(fingerprint("$argon2id$one")) == 16
