"""Start the Rasa server, the action server, the gateway and (by default) the Twilio simulator.

One supervisor owns every child: it waits for each health check before calling the stack
ready, and one Ctrl-C (or one child dying) stops them all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from sqlalchemy.engine import make_url

from booking.settings import PROJECT_ROOT, Environment, Settings

# The shared secrets of the private side: the gateway's for Rasa's API and channel, Rasa's for
# the action server.
BACKEND_TOKENS = ("rasa_token", "action_server_token")


@dataclass
class Service:
    name: str
    command: list[str]
    health_url: str
    # What this child's environment has besides the run's (its own port, in a cluster).
    env: dict[str, str] = field(default_factory=dict, repr=False)
    process: subprocess.Popen | None = field(default=None, repr=False)


# Files created by Ringback's processes: readable and writable by their own user only.
PRIVATE_UMASK = 0o077


def with_backend_tokens(env: Mapping[str, str]) -> tuple[Settings, dict[str, str]]:
    """The settings of one run and the environment of its children, both carrying RASA_TOKEN and
    ACTION_SERVER_TOKEN, so the gateway, Rasa and the action server agree on them.

    Configured tokens (in `env` or in .env) are kept; production refuses to start without
    them. Missing ones (development, `make run`, tests) become a fresh random token for this run,
    known to nobody outside it.
    """
    fields = {key.lower(): value for key, value in env.items()
              if key.lower() in Settings.__fields__}
    # Read what is configured, as the children will, before production's check for the tokens.
    configured = Settings(**{**fields, "environment": Environment.development})
    tokens = {name: getattr(configured, name) or secrets.token_urlsafe(32)
              for name in BACKEND_TOKENS}
    return (Settings(**{**fields, **tokens}),
            {**env, **{name.upper(): token for name, token in tokens.items()}})


def rasa_endpoints(settings: Settings, run_dir: Path) -> Path:
    """endpoints.yml for this run's Rasa processes: the action server with its token, the SQL
    tracker store (every process shares it; the gateway sends each conversation to one process
    always), and the Redis lock store if there is one.

    It holds secrets (the token, database and Redis passwords), so only our user may read it.
    """
    endpoints: dict = {"action_endpoint": {
        "url": settings.action_server_url,
        "headers": {"Authorization": f"Bearer {settings.action_server_token}"},
        # No action reads the domain Rasa would send with every call (2.5 kB to encode and
        # decode each time); one that needs it says `send_domain: true` in domain.yml.
        "enable_selective_domain": True}}
    # The same place the retention purge and `ringback patient` look (Settings).
    url = make_url(settings.rasa_tracker_store_url)
    # Rasa's SQL store, bounded and never replaced by memory (connectors/tracker_store.py).
    store = "connectors.tracker_store.BoundedSQLTrackerStore"
    if url.drivername.startswith("sqlite"):
        endpoints["tracker_store"] = {"type": store, "dialect": "sqlite", "db": url.database}
    else:
        endpoints["tracker_store"] = {
            "type": store, "dialect": "postgresql", "url": url.host, "port": url.port or 5432,
            "username": url.username, "password": url.password, "db": url.database,
            # sslmode and friends: the tracker store keeps the booking database's TLS.
            "query": dict(url.query),
        }
    if settings.redis_url:
        url = make_url(settings.redis_url)
        endpoints["lock_store"] = {"type": "redis", "url": url.host, "port": url.port or 6379,
                                   "db": int(url.database or 0),
                                   "username": url.username or None, "password": url.password,
                                   "use_ssl": url.drivername == "rediss"}
    path = run_dir / "endpoints.yml"
    # Created afresh with 0600: a file left by an earlier run may be readable by others, and
    # opening it would keep its mode.
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        yaml.safe_dump(endpoints, file)
    return path


def services(settings: Settings, *, model: Path, run_dir: Path, with_simulator: bool
             ) -> list[Service]:
    """The children of one run. `settings` must carry the backend tokens (with_backend_tokens):
    Rasa and the action server never run without them."""
    missing = [name.upper() for name in BACKEND_TOKENS if not getattr(settings, name)]
    if missing:
        raise ValueError(f"{' and '.join(missing)} missing: see with_backend_tokens")
    endpoints = rasa_endpoints(settings, run_dir)
    rasas = [
        Service("rasa" if index == 0 else f"rasa {index + 1}",
                [str(Path(sys.executable).parent / "rasa"), "run", "--enable-api",
                 "--interface", settings.rasa_host, "--port", str(settings.rasa_port + index),
                 # One argument: a token may start with "-" (token_urlsafe's alphabet has it),
                 # which as a separate word Rasa's parser reads as an option and refuses.
                 f"--auth-token={settings.rasa_token}", "--model", str(model),
                 "--credentials", str(PROJECT_ROOT / "credentials.yml"),
                 "--endpoints", str(endpoints)],
                # Ready: model loaded, tracker store answering (connectors/gateway_channel.py).
                f"http://{settings.rasa_host}:{settings.rasa_port + index}/webhooks/ringback/")
        for index in range(settings.rasa_processes)]
    started = [
        Service("action server", [sys.executable, "-m", "stack.action_server"],
                f"http://{settings.action_server_host}:{settings.action_server_port}/health"),
        *rasas,
        Service("gateway",
                [sys.executable, "-m", "uvicorn", "booking.gateway.app:create_app", "--factory",
                 "--host", settings.gateway_host, "--port", str(settings.gateway_port),
                 "--no-access-log", "--workers", str(settings.gateway_processes)],
                f"http://127.0.0.1:{settings.gateway_port}/health"),
    ]
    if with_simulator:
        started.insert(0, Service(
            "twilio simulator",
            [sys.executable, "-m", "stack.cli", "simulator", "--port",
             str(settings.twilio_fake_port)],
            f"http://127.0.0.1:{settings.twilio_fake_port}/_fake/messages?number=none"))
    return started


class Supervisor:
    def __init__(self, services: list[Service], *, env: dict[str, str] | None, log_dir: Path):
        """`env`: the children's environment; None is this process's own."""
        self.services = services
        self._env = env
        self._log_dir = log_dir
        # Set by SIGINT/SIGTERM. A flag rather than an exception: a signal can arrive at any
        # moment (while starting, while printing, between start and wait), and an exception
        # raised there escapes whatever try block happens to be missing.
        self._stop_requested = threading.Event()

    def start(self, *, timeout: float = 300.0, stop_on_signals: bool = True) -> bool:
        """Start every child and wait until all are healthy; False if a signal came first
        (then everything started is stopped again).

        `stop_on_signals=False` leaves SIGINT/SIGTERM to the caller (a test run keeps its own
        Ctrl-C).
        """
        # Set explicitly: a shell that starts us in the background ignores SIGINT, and a
        # SIGTERM (a service manager stopping us) must not leave the children running.
        if stop_on_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, self._request_stop)
        try:
            started = self._start(timeout)
        except BaseException:
            self.stop()
            raise
        if not started:
            self.stop()
        return started

    def _request_stop(self, signum: int, frame) -> None:
        self._stop_requested.set()

    def _start(self, timeout: float) -> bool:
        self._log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._log_dir.chmod(0o700)
        for service in self.services:
            if self._stop_requested.is_set():
                return False
            self._launch(service)
        deadline = time.monotonic() + timeout
        return all(self._wait_healthy(service, deadline) for service in self.services)

    def _launch(self, service: Service) -> None:
        path = self._log_dir / f"{service.name.replace(' ', '_')}.log"
        log = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        path.chmod(0o600)  # a log left by an older run keeps the mode it was made with
        # Whatever a child creates (SQLite files and their journals, Rasa's tracker store)
        # is its user's alone: they hold patients' words.
        with log:
            service.process = subprocess.Popen(
                service.command, cwd=PROJECT_ROOT,
                env={**(os.environ if self._env is None else self._env), **service.env},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                umask=PRIVATE_UMASK,
            )

    def kill(self, service: Service, signum: int = signal.SIGKILL) -> None:
        """Signal a child and everything it started (uvicorn's and Sanic's workers); wait.
        One that has not stopped 30 s after a SIGTERM is killed."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.process.pid, signum)
        try:
            service.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait(timeout=30)

    def restart(self, service: Service, *, timeout: float = 300.0) -> None:
        """Start a child that stopped (or stop it first) and wait until it is healthy."""
        if service.process is not None and service.process.poll() is None:
            self.kill(service, signal.SIGTERM)
        self._launch(service)
        self._wait_healthy(service, time.monotonic() + timeout)

    def _wait_healthy(self, service: Service, deadline: float) -> bool:
        """True once healthy, False if a stop was requested meanwhile."""
        while time.monotonic() < deadline:
            if self._stop_requested.is_set():
                return False
            if service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited with {service.process.returncode}; "
                                   f"see {self._log_dir}")
            try:
                if httpx.get(service.health_url, timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            self._stop_requested.wait(0.5)
        raise TimeoutError(f"{service.name} did not become healthy; see {self._log_dir}")

    def keep_running(self) -> int:
        """Restart any child that dies, until we are asked to stop (0); then stop everything.
        For a cluster, where the others carry the load while one comes back."""
        try:
            while not self._stop_requested.is_set():
                for service in self.services:
                    if service.process.poll() is not None:
                        print(f"{service.name} stopped (exit {service.process.returncode}); "
                              "restarting it", file=sys.stderr)
                        self._launch(service)
                self._stop_requested.wait(0.5)
            return 0
        finally:
            self.stop()

    def wait(self) -> int:
        """Block until a child dies (1) or we are asked to stop (0); then stop everything."""
        try:
            while not self._stop_requested.is_set():
                for service in self.services:
                    if service.process.poll() is not None:
                        print(f"{service.name} stopped (exit {service.process.returncode}); "
                              "stopping the rest", file=sys.stderr)
                        return 1
                self._stop_requested.wait(0.5)
            return 0
        finally:
            self.stop()

    def stop(self) -> None:
        for service in self.services:
            if service.process and service.process.poll() is None:
                os.killpg(service.process.pid, signal.SIGTERM)
        for service in self.services:
            if service.process:
                try:
                    service.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(service.process.pid, signal.SIGKILL)
