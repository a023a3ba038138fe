"""Escalations against a real SQLite file with the example clinics, and real local servers at
the network boundary: the Twilio simulator, an SMTP server, a webhook receiver."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from aiosmtpd.controller import Controller
from sqlalchemy.orm import Session, sessionmaker

from booking.clinics.config import load_clinics
from booking.db import make_engine, session_factory
from booking.messaging.conversations import (
    get_or_create_contact,
    get_or_create_thread,
    record_inbound,
)
from booking.messaging.outbox import Outbox
from booking.models import Base, Channel, Clinic, Thread
from booking.settings import Settings
from simulator.client import SimulatedPhone
from simulator.twilio_fake import FakeConfig, create_app
from tests.stack import free_port

EXAMPLE_FILE = Path(__file__).resolve().parents[2] / "clinics" / "example.yml"
ACCOUNT_SID = "AC" + "7" * 32
AUTH_TOKEN = "escalation-tests-token"
CONSOLE_URL = "https://console.riverside.example"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


# Riverside (Europe/London) is open Mon-Fri 08:00-18:00; 2026-03-03 is a Tuesday (GMT).
RIVERSIDE_OPEN = utc(2026, 3, 3, 10, 0)
RIVERSIDE_CLOSED = utc(2026, 3, 3, 22, 0)


@dataclass
class FakeTwilio:
    url: str
    phone: SimulatedPhone


@pytest.fixture(scope="module")
def twilio_fake() -> Iterator[FakeTwilio]:
    """The Twilio simulator in a thread: Messages API in, a log of what was sent out."""
    port = free_port()
    app = create_app(FakeConfig(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN,
                                gateway_url="http://127.0.0.1:9",
                                auto_status_callbacks=False))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("Twilio simulator did not start")
        time.sleep(0.05)
    fake = FakeTwilio(url=f"http://127.0.0.1:{port}",
                      phone=SimulatedPhone(f"http://127.0.0.1:{port}"))
    yield fake
    fake.phone.close()
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def phones(twilio_fake: FakeTwilio) -> SimulatedPhone:
    """The simulator's log, emptied for this test."""
    httpx.post(f"{twilio_fake.url}/_fake/reset").raise_for_status()
    return twilio_fake.phone


@dataclass
class Mailbox:
    messages: list = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, mailbox
    controller.stop()


@dataclass
class WebhookReceiver:
    url: str
    posts: list[dict] = field(default_factory=list)
    fail_next: int = 0  # answer 500 to this many posts first


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    port = free_port()
    receiver = WebhookReceiver(url=f"http://127.0.0.1:{port}/services/T000/B000/secret")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if receiver.fail_next > 0:
                receiver.fail_next -= 1
                self.send_response(500)
                self.end_headers()
                return
            receiver.posts.append({"path": self.path, "json": json.loads(body),
                                   "content_type": self.headers.get("content-type")})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'escalation.db'}"


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker]:
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def settings(database_url: str, twilio_fake: FakeTwilio) -> Settings:
    return Settings(database_url=database_url, twilio_api_base_url=twilio_fake.url,
                    twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
                    console_public_url=CONSOLE_URL, gateway_public_url="http://127.0.0.1:9")


@pytest.fixture
def outbox(settings: Settings) -> Iterator[Outbox]:
    yield Outbox.from_settings(settings)


@pytest.fixture
def load_example(sessions: sessionmaker, tmp_path: Path) -> Callable[..., dict[str, int]]:
    """Load the example clinics, with `escalation` settings overridden per clinic slug."""

    def load(**escalation: dict) -> dict[str, int]:
        document = yaml.safe_load(EXAMPLE_FILE.read_text())
        for clinic in document["clinics"]:
            overrides = escalation.get(clinic["slug"].replace("-", "_"))
            if overrides:
                clinic.setdefault("settings", {}).setdefault("escalation", {}).update(
                    copy.deepcopy(overrides))
        path = tmp_path / "clinics.yml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        with sessions() as session:
            clinics = load_clinics(session, path)
            session.commit()
            return {clinic.slug: clinic.id for clinic in clinics}

    return load


@pytest.fixture
def clinics(load_example) -> dict[str, int]:
    return load_example()


def start_thread(session: Session, *, clinic_id: int, phone: str, said: list[str],
                 at: datetime) -> Thread:
    """A patient thread whose patient has written these messages."""
    clinic = session.get(Clinic, clinic_id)
    contact = get_or_create_contact(session, clinic=clinic, phone=phone)
    thread = get_or_create_thread(session, clinic=clinic, contact=contact, channel=Channel.sms)
    session.flush()
    for index, body in enumerate(said):
        record_inbound(session, clinic=clinic, thread=thread, channel=Channel.sms,
                       from_number=phone, to_number=clinic.sms_number, body=body,
                       twilio_sid=f"SM{phone[1:]}{index:04d}{at.timestamp():.0f}",
                       received_at=at)
    return thread
