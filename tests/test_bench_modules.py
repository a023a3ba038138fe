"""Every benchmark `make bench` can name imports and has its `run()`: a renamed helper in one
bench module must not break another unnoticed (benchmarks are not run by `make test`)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench

MODULES = sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                 if not m.name.startswith("_"))


@pytest.mark.parametrize("name", MODULES)
def test_the_benchmark_imports_and_can_run(name):
    assert callable(importlib.import_module(f"bench.{name}").run)
