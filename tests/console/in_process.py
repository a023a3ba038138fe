"""The gateway app served from a thread of the test process, on a database of the test's own
(SQLite or PostgreSQL), with a clock the test drives: console tests of sessions, sign-in and
log-ins that need no Rasa. The `console` fixture (conftest.py) gives one per test."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from booking.db import get_engine
from booking.gateway.app import create_app
from booking.settings import Settings
from tests.stack import free_port, served_in_thread

USERNAME, PASSWORD = "riverside-admin", "riverside-demo"
# Two client addresses on this machine: the whole of 127.0.0.0/8 is loopback.
OWN_ADDRESS, STRANGER_ADDRESS = "127.0.0.1", "127.0.0.2"


def csrf_of(html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)


class Clock:
    """The time the console reads; a test moves it."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Console:
    url: str
    database_url: str
    clock: Clock

    def client(self, address: str = OWN_ADDRESS) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            transport=httpx.HTTPTransport(local_address=address))

    def rows(self, model) -> list:
        with Session(get_engine(self.database_url)) as session:
            return list(session.execute(select(model)).scalars())


@contextlib.contextmanager
def gateway(database_url: str, clock: Clock) -> Iterator[str]:
    """One gateway process's app, served from a thread; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(database_url=database_url, gateway_public_url=url,
                        console_public_url=url, session_secret="console-tests-session-secret",
                        twilio_api_base_url="http://127.0.0.1:9", rasa_url="http://127.0.0.1:9")
    with served_in_thread(create_app(settings, clock=clock), port, name="the gateway"):
        yield url


def try_sign_in(http: httpx.Client, username: str = USERNAME,
                password: str = PASSWORD) -> httpx.Response:
    token = csrf_of(http.get("/console/login").text)
    return http.post("/console/login", data={"username": username, "password": password,
                                             "csrf_token": token})


def signed_in(console: Console, address: str = OWN_ADDRESS) -> httpx.Client:
    http = console.client(address)
    assert try_sign_in(http).status_code == 303
    return http


def page(http: httpx.Client) -> int:
    """A real action: opening the queue (200 signed in, 303 to the sign-in form if not)."""
    return http.get("/console/escalations").status_code


def poll(http: httpx.Client) -> int:
    """What the open queue page fetches every few seconds by itself."""
    return http.get("/console/escalations/rows").status_code

