"""Fixtures shared across rooms: the trained model and one running stack per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import RunningStack, start_stack, train_model


@pytest.fixture(scope="session")
def trained_model() -> Path:
    return train_model()


@pytest.fixture(scope="session")
def stack(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("stack"), model=trained_model)
    yield running
    running.stop()
