"""Adapters are found through entry points; a third party installs one without core changes."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from booking.scheduling.base import AdapterConfigError, SchedulingAdapter
from booking.scheduling.builtin import BuiltinAdapter
from booking.scheduling.caldav_adapter import CalDAVAdapter
from booking.scheduling.registry import (
    AdapterCache,
    UnknownAdapter,
    adapter_class,
    available_adapters,
    get_adapter,
    validate_adapter_config,
)


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch):
    """A tiny distribution on sys.path, declaring adapters the way a pip package would."""
    (tmp_path / "acme_calendar.py").write_text(textwrap.dedent('''
        from booking.scheduling.builtin import BuiltinAdapter

        class AcmeAdapter(BuiltinAdapter):
            slug = "acme"
            title = "Acme PMS"

        class NotAnAdapter:
            pass
    '''))
    dist = tmp_path / "acme_calendar-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-calendar\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""
        [ringback.scheduling]
        acme = acme_calendar:AcmeAdapter
        broken = acme_calendar_missing_module:Adapter
        wrong = acme_calendar:NotAnAdapter
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("acme_calendar", None)


def test_builtin_and_caldav_are_registered():
    assert {"builtin", "caldav"} <= set(available_adapters())
    assert adapter_class("builtin") is BuiltinAdapter
    assert adapter_class("caldav") is CalDAVAdapter


def test_an_unknown_adapter_fails_fast_naming_what_is_installed():
    with pytest.raises(UnknownAdapter, match=r"'boulevard'.*installed: .*builtin.*caldav"):
        adapter_class("boulevard")


def test_a_third_party_adapter_is_discovered_and_built_per_clinic(installed_plugin,
                                                                   example_clinics, sessions):
    clinic = example_clinics["riverside"]
    clinic.scheduling_adapter = "acme"
    adapter = get_adapter(clinic, sessions)
    assert type(adapter).__name__ == "AcmeAdapter" and isinstance(adapter, SchedulingAdapter)
    assert adapter.clinic_id == clinic.id


def test_import_errors_are_not_swallowed(installed_plugin):
    with pytest.raises(ModuleNotFoundError, match="acme_calendar_missing_module"):
        adapter_class("broken")
    with pytest.raises(TypeError, match="SchedulingAdapter"):
        adapter_class("wrong")


def test_adapter_configs_are_checked_before_anything_connects():
    validate_adapter_config("builtin", {})
    with pytest.raises(AdapterConfigError, match="url"):
        validate_adapter_config("caldav", {"calendars": {"dr-a": "/a/"}})
    with pytest.raises(AdapterConfigError, match="unknown CalDAV setting"):
        validate_adapter_config("caldav", {"url": "http://x/", "calendar": "/a/", "pasword": 1})
    validate_adapter_config("caldav", {"url": "https://dav.example/", "calendar": "/a/"})


def test_the_cache_builds_one_adapter_per_clinic(example_clinics, sessions):
    cache = AdapterCache(sessions)
    riverside, northside = example_clinics["riverside"], example_clinics["northside"]
    first = cache.for_clinic(riverside)
    assert cache.for_clinic(riverside) is first
    assert cache.for_clinic(northside) is not first
    assert first.clinic_id == riverside.id
    cache.close()
