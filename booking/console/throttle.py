"""Sign-in throttling shared by every gateway process: failures are counted in the database.

Every attempt is counted as a failure first, in the same transaction that then reads the counts
(the rows stay locked until it commits), so fifteen wrong passwords sent at once are fifteen
failures and only the first few reach the password check. A right password takes its own count
back. Past the free failures, each further attempt must wait a delay that doubles (30 s, 1 min,
2 min ... up to 15 min) after the previous one; the sign-in form says how long.

What is counted, and whom it slows down:
- per client address, all usernames together (one address spraying many accounts), with a
  higher allowance, since colleagues share an office address;
- per username, all addresses together (many addresses guessing one account), but only for
  addresses that have themselves failed for that username: a stranger's guesses never lock out
  the real user, who signs in from an address with no failures with the right password.
  The price: a botnet gets one guess per address per username before the delay applies.

Counts are forgotten an hour after their last failure.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from booking.models import SignInFailures

FIRST_DELAY_SECONDS = 30
MAX_DELAY_SECONDS = 15 * 60
FORGET_AFTER = timedelta(hours=1)
# Colleagues share an office address: it may fail more often than one username.
ADDRESS_ALLOWANCE_FACTOR = 5


def delay_seconds(failures: int, *, free: int) -> float:
    """How long the attempt after `failures` failures must wait after the last of them."""
    if failures < free:
        return 0.0
    return float(min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** min(failures - free, 16)))


@dataclass(frozen=True)
class Attempt:
    username_key: str
    address_key: str
    pair_key: str
    allowed: bool
    retry_after: int  # whole seconds before the next attempt may check a password


class SignInThrottle:
    def __init__(self, *, secret: str, free_failures: int, clock: Callable[[], datetime]):
        self._secret = secret.encode()
        self.free = free_failures
        self.address_free = free_failures * ADDRESS_ALLOWANCE_FACTOR
        self.clock = clock

    def _key(self, kind: str, value: str) -> str:
        return hmac.new(self._secret, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()

    def attempt(self, sessions: sessionmaker, *, username: str, address: str) -> Attempt:
        """Count this attempt as a failure, then say whether it may check the password."""
        name = username.strip().lower()
        keys = {"user": self._key("user", name), "address": self._key("address", address),
                "pair": self._key("pair", f"{name}\0{address}")}
        now = self.clock()
        with sessions() as session, session.begin():
            for key in sorted(keys.values()):  # one lock order: two attempts cannot deadlock
                session.execute(_count_failure(session, key, now))
            rows = {row.key: row for row in session.execute(
                select(SignInFailures).where(SignInFailures.key.in_(keys.values()))).scalars()}
        user, by_address, pair = rows[keys["user"]], rows[keys["address"]], rows[keys["pair"]]
        # This address has failed for this username before: the username's count slows it.
        checks = [(by_address, self.address_free)]
        if pair.failures > 1:
            checks.append((user, self.free))
        wait = max(self._still_to_wait(row, free, now) for row, free in checks)
        next_wait = max(delay_seconds(row.failures, free=free)
                        for row, free in [*checks, (user, self.free)])
        return Attempt(username_key=keys["user"], address_key=keys["address"],
                       pair_key=keys["pair"], allowed=wait <= 0,
                       retry_after=math.ceil(next_wait) if wait > 0 else 0)

    @staticmethod
    def _still_to_wait(row: SignInFailures, free: int, now: datetime) -> float:
        before = row.failures - 1  # the failures before this attempt
        delay = delay_seconds(before, free=free)
        if delay <= 0 or row.previous_failure_at is None:
            return 0.0
        return delay - (now - row.previous_failure_at).total_seconds()

    def succeeded(self, sessions: sessionmaker, attempt: Attempt) -> None:
        """The password was right: the attempt was no failure, and its address is trusted
        for this username again."""
        now = self.clock()
        with sessions() as session, session.begin():
            session.execute(delete(SignInFailures)
                            .where(SignInFailures.key == attempt.pair_key))
            session.execute(
                update(SignInFailures)
                .where(SignInFailures.key.in_([attempt.username_key, attempt.address_key]),
                       SignInFailures.failures > 0)
                .values(failures=SignInFailures.failures - 1))
        with sessions() as session, session.begin():
            session.execute(delete(SignInFailures)
                            .where(SignInFailures.last_failure_at <= now - FORGET_AFTER))


def _count_failure(session: Session, key: str, now: datetime):
    """One more failure for `key`, or the first of a new count when the last is forgotten."""
    table = SignInFailures.__table__
    build = {"postgresql": postgresql_insert,
             "sqlite": sqlite_insert}[session.get_bind().dialect.name]
    forgotten = table.c.last_failure_at <= now - FORGET_AFTER
    return build(table).values(
        key=key, failures=1, last_failure_at=now, previous_failure_at=None,
    ).on_conflict_do_update(index_elements=["key"], set_={
        "failures": case((forgotten, 1), else_=table.c.failures + 1),
        "previous_failure_at": case((forgotten, None), else_=table.c.last_failure_at),
        "last_failure_at": now,
    })
