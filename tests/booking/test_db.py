"""Database connections on PostgreSQL: a connection the server closed while it sat idle in the
pool is replaced before anyone uses it, and the pool can be opened ahead of the first burst."""

from __future__ import annotations

import psycopg2
import pytest
from sqlalchemy import text

from booking import db
from tests.booking.test_concurrency import postgres_url  # noqa: F401 - fixture
from tests.postgres import ADMIN

pytestmark = pytest.mark.postgres


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_an_idle_connection_the_server_closed_is_replaced_unnoticed(postgres_url,  # noqa: F811
                                                                    monkeypatch):
    engine = db.make_engine(postgres_url)
    first = backend_pid(engine)
    # What a database restart or a firewall's idle timeout does to a pooled connection.
    admin = psycopg2.connect(**ADMIN)
    admin.autocommit = True
    admin.cursor().execute("SELECT pg_terminate_backend(%s)", (first,))
    admin.close()
    monkeypatch.setattr(db, "IDLE_BEFORE_PING_SECONDS", 0.0)  # it has been idle long enough

    second = backend_pid(engine)

    assert second != first
    engine.dispose()


def test_warm_up_opens_the_pool_before_the_first_request(postgres_url):  # noqa: F811
    engine = db.make_engine(postgres_url)
    db.warm_up(engine)
    assert engine.pool.checkedin() == db.POOL_SIZE
    engine.dispose()
