"""The reports run on SQLite and on PostgreSQL: every test here runs on both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from booking.db import make_engine
from booking.migrate import upgrade
from tests.postgres import throwaway_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'reports.db'}"
        return
    with throwaway_database("ringback_reports") as url:
        yield url


@pytest.fixture
def session(database_url) -> Iterator[Session]:
    upgrade(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        yield session
    engine.dispose()
