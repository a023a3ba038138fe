"""Console sessions kept on the server: the cookie carries a random token and nothing else.

The row (`ConsoleSession`) holds a keyed hash of the token, who signed in, and the little the
pages keep between requests (the CSRF token, a flash message, the password's fingerprint).
Routes read and write it as `request.session`, a plain dict, as with starlette's signed cookie;
this middleware loads it before the route and stores it after:

- signing in or out, or switching clinic (the dict's `staff_id`, the membership in use,
  changes) deletes the old row and, when signed in, issues a new token (no session fixation);
  deleting the row is what ends a session, so a copied cookie is refused after sign-out, and
  after a password reset or a disabled log-in (`clinics.accounts`);
- a session ends after `idle` without a real action and after `absolute` in any case. The
  pages' background polls (`is_poll`) read through the session but do not count as activity,
  so a tab left open ends like any other. A poll costs one indexed read and writes nothing; a
  real action writes its time at most once a minute (`TOUCH_EVERY`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import sessionmaker
from starlette.datastructures import MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from booking.models import ConsoleSession

COOKIE = "ringback_console"
POLL_SUFFIXES = ("/updates", "/rows")

Clock = Callable[[], datetime]


def is_poll(path: str) -> bool:
    """The queue's and the thread's live-update fetches, made by the page, not by a person."""
    return path.endswith(POLL_SUFFIXES)


@dataclass(frozen=True)
class Lifetimes:
    idle: timedelta
    absolute: timedelta


# A real action records itself at most this often: most page views then write nothing, and the
# idle timeout is kept to within a minute.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass
class _Loaded:
    row_id: int | None
    data: dict
    last_active_at: datetime | None = None


class SessionStore:
    """Reads and writes session rows; `clock` is the only time it knows (tests drive it)."""

    def __init__(self, *, secret: str, lifetimes: Lifetimes, clock: Clock) -> None:
        self._key = secret.encode()
        self.lifetimes = lifetimes
        self.clock = clock

    def token_hash(self, token: str) -> str:
        # Keyed, so a copy of the table alone cannot even confirm a stolen cookie.
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    def load(self, sessions: sessionmaker, token: str | None) -> _Loaded:
        if not token or len(token) > 100:
            return _Loaded(None, {})
        now = self.clock()
        with sessions() as session:
            row = session.execute(select(ConsoleSession).where(
                ConsoleSession.token_hash == self.token_hash(token))).scalar_one_or_none()
            if row is None or self._expired(row, now):
                return _Loaded(None, {})
            return _Loaded(row.id, dict(row.data or {}), row.last_active_at)

    def _expired(self, row: ConsoleSession, now: datetime) -> bool:
        return (now - row.last_active_at >= self.lifetimes.idle
                or now - row.created_at >= self.lifetimes.absolute)

    def save(self, sessions: sessionmaker, loaded: _Loaded, data: dict, *,
             active: bool) -> str | None:
        """Store the request's session; returns a new cookie token, "" to clear the cookie,
        or None to leave the cookie as it is."""
        now = self.clock()
        signed_in_changed = loaded.data.get("staff_id") != data.get("staff_id")
        ends = loaded.row_id is not None and (signed_in_changed or not data)
        if loaded.row_id is not None and not ends:
            changes = {"data": dict(data)} if data != loaded.data else {}
            if active and now - loaded.last_active_at >= TOUCH_EVERY:
                changes["last_active_at"] = now
            if not changes:
                return None
            with sessions() as session, session.begin():
                updated = session.execute(update(ConsoleSession).where(
                    ConsoleSession.id == loaded.row_id).values(**changes)).rowcount
            # No row: signed out elsewhere meanwhile, and stays signed out.
            return None if updated else ""
        with sessions() as session, session.begin():
            if ends:
                session.execute(delete(ConsoleSession).where(ConsoleSession.id == loaded.row_id))
            if not data:
                return "" if ends else None
            self._purge_expired(session, now)
            token = secrets.token_urlsafe(32)
            staff_id = data.get("staff_id")
            session.add(ConsoleSession(
                token_hash=self.token_hash(token),
                staff_id=staff_id if isinstance(staff_id, int) else None,
                data=dict(data), created_at=now, last_active_at=now))
            return token

    def _purge_expired(self, session, now: datetime) -> None:
        session.execute(delete(ConsoleSession).where(or_(
            ConsoleSession.last_active_at <= now - self.lifetimes.idle,
            ConsoleSession.created_at <= now - self.lifetimes.absolute)))


class ServerSessionMiddleware:
    """`request.session` backed by `SessionStore`; the database comes from the gateway's
    context, which exists once the app has started."""

    def __init__(self, app: ASGIApp, *, store: SessionStore, https_only: bool) -> None:
        self.app = app
        self.store = store
        self.secure = "; secure" if https_only else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sessions = scope["app"].state.context.sessions
        loaded = await asyncio.to_thread(self.store.load, sessions, _token_of(scope))
        scope["session"] = dict(loaded.data)
        active = not is_poll(scope["path"])

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                token = await asyncio.to_thread(self.store.save, sessions, loaded,
                                                scope["session"], active=active)
                if token is not None:
                    MutableHeaders(scope=message).append("set-cookie", self._cookie(token))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _cookie(self, token: str) -> str:
        if not token:
            return (f"{COOKIE}=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly; "
                    f"samesite=lax{self.secure}")
        max_age = int(self.store.lifetimes.absolute.total_seconds())
        return f"{COOKIE}={token}; path=/; Max-Age={max_age}; httponly; samesite=lax{self.secure}"


def _token_of(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"cookie":
            return cookie_parser(value.decode("latin-1")).get(COOKIE)
    return None
