"""A throw-away PostgreSQL database on the local server (127.0.0.1:5432, trust), for tests and
benchmarks that must run on PostgreSQL too."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg2

ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}


@contextlib.contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """Create a database named `prefix` plus a random tail, yield its URL, drop it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(**ADMIN)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
