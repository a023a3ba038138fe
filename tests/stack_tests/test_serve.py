"""`ringback serve`, a container's command: one process from the environment alone, never
without the private side's tokens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from booking.settings import PROJECT_ROOT
from tests.channels.conftest import wait_until
from tests.stack import free_port

RINGBACK = str(Path(sys.executable).parent / "ringback")


def test_serve_refuses_to_start_without_the_tokens():
    env = {**os.environ, "ENVIRONMENT": "development", "RASA_TOKEN": "",
           "ACTION_SERVER_TOKEN": ""}
    result = subprocess.run([RINGBACK, "serve", "gateway"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "RASA_TOKEN and ACTION_SERVER_TOKEN must be set" in result.stderr


def test_serve_actions_runs_the_action_server_where_the_environment_says(tmp_path):
    port = free_port()
    env = {**os.environ, "ENVIRONMENT": "development", "RASA_TOKEN": "r" * 32,
           "ACTION_SERVER_TOKEN": "a" * 32, "ACTION_SERVER_HOST": "127.0.0.1",
           "ACTION_SERVER_PORT": str(port)}
    # Run from elsewhere: the command finds the project itself, as in the image.
    server = subprocess.Popen([RINGBACK, "serve", "actions"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
            except httpx.HTTPError:
                return server.poll() is not None  # ends the wait; the assert below says why
        wait_until(answers, timeout=120, message="the action server answering")
        assert server.poll() is None
        webhook = f"http://127.0.0.1:{port}/webhook"
        assert httpx.post(webhook, json={}).status_code == 401
        assert httpx.post(webhook, json={}, headers={
            "Authorization": f"Bearer {'a' * 32}"}).status_code != 401
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
