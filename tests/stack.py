"""The real stack for integration tests: Twilio simulator, Rasa, action server and gateway.

Each stack gets its own SQLite database, its own free ports and its own log directory, and is
started by the same supervisor as `make run`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from booking.settings import PROJECT_ROOT, Settings
from simulator.client import SimulatedPhone
from stack.local_services import free_port, free_ports_in_a_row
from stack.supervisor import Supervisor, services, with_backend_tokens

MODEL = PROJECT_ROOT / "models" / "ringback.tar.gz"
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "1" * 32
HMAC_SECRET = "test-hmac-secret"


@contextlib.contextmanager
def served_in_thread(app, port: int, *, name: str, lifespan: str = "auto",
                     timeout: float = 30) -> Iterator[None]:
    """Serve an ASGI app on 127.0.0.1:`port` from a thread of this process, started before the
    block and stopped after it."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                          log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)


def train_model() -> Path:
    """Train unless Rasa's fingerprint says data/, domain.yml and config.yml are unchanged."""
    subprocess.run(
        [str(Path(sys.executable).parent / "rasa"), "train", "--fixed-model-name", "ringback",
         "--out", "models"],
        cwd=PROJECT_ROOT, check=True, stdout=subprocess.DEVNULL,
    )
    return MODEL


@dataclass
class RunningStack:
    settings: Settings
    env: dict[str, str]
    supervisor: Supervisor
    phone: SimulatedPhone
    run_dir: Path

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def gateway(self) -> str:
        return self.settings.gateway_public_url

    @property
    def rasa(self) -> str:
        return self.settings.rasa_url

    def rasa_api(self, path: str) -> str:
        """A URL of Rasa's HTTP API, with the token it demands."""
        return f"{self.rasa}{path}?token={self.env['RASA_TOKEN']}"

    @property
    def simulator(self) -> str:
        return self.settings.twilio_api_base_url

    def stop(self) -> None:
        self.phone.close()
        self.supervisor.stop()


def stack_environment(run_dir: Path, *, database_url: str | None = None,
                      extra: dict[str, str] | None = None) -> dict[str, str]:
    ports = {name: free_port() for name in ("gateway", "actions", "fake")}
    ports["rasa"] = free_ports_in_a_row(int({**os.environ, **(extra or {})}.get(
        "RASA_PROCESSES", "1")))
    return {
        **os.environ,
        "ENVIRONMENT": "development",
        "DATABASE_URL": database_url or f"sqlite:///{run_dir / 'ringback.db'}",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": f"http://127.0.0.1:{ports['fake']}",
        "TWILIO_FAKE_PORT": str(ports["fake"]),
        "GATEWAY_PORT": str(ports["gateway"]),
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
        "CONSOLE_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
        "RASA_PORT": str(ports["rasa"]),
        "RASA_URL": f"http://127.0.0.1:{ports['rasa']}",
        "ACTION_SERVER_PORT": str(ports["actions"]),
        "ACTION_SERVER_URL": f"http://127.0.0.1:{ports['actions']}/webhook",
        "MISSED_CALL_HMAC_SECRET": HMAC_SECRET,
        "SESSION_SECRET": "test-session-secret",
        # The suite's clinics take hundreds of calls within the hour: the caps are tested on
        # clinics and gateways of their own (tests/channels/test_fraud_limits.py).
        "TEXT_BACK_CLINIC_HOURLY_CAP": "100000",
        "TEXT_BACK_GLOBAL_HOURLY_CAP": "100000",
        # Follow-ups, reminders and rebooking offers planned and run within a second or two.
        "OUTREACH_INTERVAL_SECONDS": "0.5",
        "OUTREACH_PLAN_INTERVAL_SECONDS": "1",
        "PYTHONPATH": str(PROJECT_ROOT),
        **(extra or {}),
    }


def start_stack(run_dir: Path, *, model: Path, database_url: str | None = None,
                extra_env: dict[str, str] | None = None) -> RunningStack:
    run_dir.mkdir(parents=True, exist_ok=True)
    settings, env = with_backend_tokens(
        stack_environment(run_dir, database_url=database_url, extra=extra_env))
    ringback = str(Path(sys.executable).parent / "ringback")
    for command in (["migrate"], ["load-clinics"]):
        subprocess.run([ringback, *command], cwd=PROJECT_ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    supervisor = Supervisor(services(settings, model=model, run_dir=run_dir,
                                     with_simulator=True),
                            env=env, log_dir=run_dir / "logs")
    supervisor.start(stop_on_signals=False)
    return RunningStack(settings=settings, env=env, supervisor=supervisor,
                        phone=SimulatedPhone(env["TWILIO_API_BASE_URL"]), run_dir=run_dir)
