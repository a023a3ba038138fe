"""One signal to the supervisor stops every child, and a child dying stops the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.stack import free_port

SUPERVISED = textwrap.dedent("""
    import sys
    from pathlib import Path
    from stack.supervisor import Service, Supervisor

    ports = sys.argv[1:]
    children = [Service(f"web {port}", [sys.executable, "-m", "http.server", port,
                                        "--bind", "127.0.0.1"],
                        f"http://127.0.0.1:{port}/") for port in ports]
    supervisor = Supervisor(children, env=None, log_dir=Path(sys.argv[0]).parent / "logs")
    supervisor.start(timeout=30)
    print(" ".join(str(child.process.pid) for child in children), flush=True)
    sys.exit(supervisor.wait())
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def start_supervisor(tmp_path) -> tuple[subprocess.Popen, list[int]]:
    script = tmp_path / "supervised.py"
    script.write_text(SUPERVISED)
    process = subprocess.Popen(
        [sys.executable, str(script), str(free_port()), str(free_port())],
        stdout=subprocess.PIPE, text=True,
        # Started the way a shell starts a background job: SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    children = [int(pid) for pid in process.stdout.readline().split()]
    assert len(children) == 2 and all(alive(pid) for pid in children)
    return process, children


def wait_gone(pids: list[int], timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_every_child(tmp_path, signum):
    process, children = start_supervisor(tmp_path)
    process.send_signal(signum)
    assert process.wait(timeout=30) == 0
    assert wait_gone(children) == []


def test_a_dying_child_stops_the_rest(tmp_path):
    process, children = start_supervisor(tmp_path)
    os.kill(children[0], signal.SIGKILL)
    assert process.wait(timeout=30) == 1
    assert wait_gone(children) == []


SLOW_TO_START = textwrap.dedent("""
    import sys
    from pathlib import Path
    from stack.supervisor import Service, Supervisor

    pid_file, port = sys.argv[1:]
    # A child that records itself and never answers its health check: start-up never ends.
    child = Service("slow", [sys.executable, "-c",
                             f"import os, time; open({pid_file!r}, 'w').write(str(os.getpid()));"
                             " time.sleep(120)"],
                    f"http://127.0.0.1:{port}/")
    supervisor = Supervisor([child], env=None, log_dir=Path(pid_file).parent / "logs")
    sys.exit(0 if not supervisor.start(timeout=100) else 3)
""")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_starting_stops_every_child_and_exits_cleanly(tmp_path, signum):
    script, pid_file = tmp_path / "slow.py", tmp_path / "child.pid"
    script.write_text(SLOW_TO_START)
    process = subprocess.Popen(
        [sys.executable, str(script), str(pid_file), str(free_port())],
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    process.send_signal(signum)
    assert process.wait(timeout=30) == 0
    assert "Traceback" not in process.stderr.read()
    assert wait_gone([child]) == []
