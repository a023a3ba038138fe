"""The staff console: escalation queue, live thread view, take over / reply / hand back, the
clinic's dashboard (figures from `reports/`), and for a clinic's admins its audit trail and its
people's log-ins (`people`). A person works at one clinic at a time (`auth`).

It is mounted in the gateway and shares its context (`gateway.context`), and works through
`escalation/`, `messaging/` and `reports/`; it must not import `dialogue/`, `calls/`, nor Rasa.

`install(app, settings)` adds it to the gateway: routes, static files, sessions kept on the
server (`sessions`), security headers and the sign-in throttle (`throttle`). `clock` is the
time sessions, the throttle and invite links read: tests drive it instead of waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from booking.console.auth import LoginRequired
from booking.console.sessions import (
    Lifetimes,
    ServerSessionMiddleware,
    SessionStore,
    is_poll,
)
from booking.console.throttle import SignInThrottle
from booking.models import utcnow
from booking.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREFIX = "/console"
SECURITY_HEADERS = {
    # Scripts and styles only from our own static files: no inline script can run.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _wants_fragment(request: Request) -> bool:
    return (is_poll(request.url.path)
            or "application/json" in request.headers.get("accept", ""))


def install(app: FastAPI, settings: Settings,
            clock: Callable[[], datetime] = utcnow) -> None:
    from booking.console import appointments, people
    from booking.console.routes import render, router

    app.state.console_clock = clock
    app.state.console_throttle = SignInThrottle(
        secret=settings.session_secret, free_failures=settings.console_login_attempts,
        clock=clock)
    store = SessionStore(secret=settings.session_secret, clock=clock, lifetimes=Lifetimes(
        idle=timedelta(minutes=settings.console_idle_minutes),
        absolute=timedelta(hours=settings.console_session_hours)))
    app.include_router(router)
    app.include_router(appointments.router)
    app.include_router(people.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.add_middleware(ConsoleOnlyMiddleware, store=store, https_only=settings.is_production)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _: LoginRequired) -> Response:
        if _wants_fragment(request) or request.method != "GET":
            return JSONResponse({"detail": "sign in again"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?next={_quote(target)}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def console_errors(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith(PREFIX) or _wants_fragment(request):
            return await http_exception_handler(request, exc)
        return render(request, "error.html", None, status_code=exc.status_code,
                      status=exc.status_code, detail=exc.detail)


class ConsoleOnlyMiddleware:
    """The console's session and security headers, applied to /console paths only (the session
    not to its static files).

    Plain ASGI rather than `@app.middleware("http")`: Twilio's webhooks pass straight through
    without a cookie to parse or a response to re-stream, which kept a burst of missed calls
    waiting (see bench/missed_calls.py).
    """

    def __init__(self, app: ASGIApp, *, store: SessionStore, https_only: bool) -> None:
        self.app = app
        self.console = ServerSessionMiddleware(self._with_headers, store=store,
                                               https_only=https_only)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
        elif scope["path"].startswith(f"{PREFIX}/static"):
            await self._with_headers(scope, receive, send)
        else:
            await self.console(scope, receive, send)

    async def _with_headers(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Transcripts are health data: never kept in a shared browser's cache.
        no_store = not scope["path"].startswith(f"{PREFIX}/static")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if no_store:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _quote(path: str) -> str:
    return quote(path, safe="/")
