"""A PostgreSQL server and a Redis server of our own, in a directory of our own, on ports of our
own: for `make cluster` when none is configured, and for the fault tests, which stop and break
them (never the machine's).

PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import redis

_EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _listening_ports() -> range:
    """Ports for our servers: below the kernel's ephemeral range. A port the kernel hands out
    (bind to 0) can be taken by any outgoing connection in the seconds before the server that
    was picked to listen on it starts (Rasa takes tens of seconds), which a busy machine did:
    "address already in use". No outgoing connection ever takes a port below the range."""
    try:
        ephemeral_low = int(_EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768  # Linux's default
    return range(max(1024, ephemeral_low - 12000), ephemeral_low)


def free_ports_in_a_row(count: int) -> int:
    """The first of `count` consecutive ports free now (several Rasa processes listen on
    RASA_PORT and the ports after it)."""
    ports = _listening_ports()
    for _ in range(200):
        first = random.randrange(ports.start, ports.stop - count + 1)
        try:
            with contextlib.ExitStack() as held:
                for port in range(first, first + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports in {ports}")


def free_port() -> int:
    return free_ports_in_a_row(1)


def _postgres_bin() -> Path:
    """Debian's newest PostgreSQL server binaries (initdb and pg_ctl are not on PATH there)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda path: int(Path(path).parts[-3]))
    if not found:
        raise RuntimeError("no PostgreSQL server here (Debian: apt-get install postgresql)")
    return Path(found[-1]).parent


def _as_server_user() -> dict:
    """Popen arguments running a command as the server user: ourselves, or `postgres` as root."""
    return {"user": "postgres"} if os.geteuid() == 0 else {}


@contextlib.contextmanager
def postgres_scratch_dir() -> Iterator[Path]:
    """A directory for a throw-away server's data, removed afterwards. Under /tmp and open to
    traverse: as root the server runs as `postgres`, who cannot enter root's private folders
    (var/, pytest's temporary directories)."""
    with tempfile.TemporaryDirectory(prefix="ringback-pg-") as scratch:
        Path(scratch).chmod(0o755)
        yield Path(scratch)


@dataclass
class OwnPostgres:
    data_dir: Path
    port: int
    database: str = "ringback"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{self.database}"

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run([str(_postgres_bin() / "pg_ctl"), "-D", str(self.data_dir), *args],
                       check=check, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd="/",
                       **_as_server_user())

    def start(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                user = pwd.getpwnam("postgres")
                os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            subprocess.run([str(_postgres_bin() / "initdb"), "-D", str(self.data_dir),
                            "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                           check=True, stdout=subprocess.DEVNULL, cwd="/", **_as_server_user())
        # Its socket in its own directory: /var/run/postgresql belongs to the machine's server.
        self._pg_ctl("-w", "-l", str(self.data_dir / "server.log"), "-o",
                     f"-p {self.port} -c listen_addresses=127.0.0.1 "
                     f"-c unix_socket_directories={self.data_dir} -c max_connections=200",
                     "start")
        self._create_database()

    def _create_database(self) -> None:
        admin = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                 dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{self.database}"')
        admin.close()

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop", check=False)

    @contextlib.contextmanager
    def refusing_connections(self) -> Iterator[None]:
        """The database down for the block: every connection refused, then back with its
        data (a crash-like immediate stop, as when its host goes away)."""
        self._pg_ctl("-w", "-m", "immediate", "stop")
        try:
            yield
        finally:
            self.start()


@dataclass
class OwnRedis:
    directory: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 30) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("no redis-server here (Debian: apt-get install redis-server)")
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def restart(self) -> None:
        """Everything it held (Rasa's conversation locks) is gone afterwards."""
        self.stop()
        self.start()
