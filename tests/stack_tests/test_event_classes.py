"""Each event's class, found once per type name, is the one Rasa's own lookup finds."""

from __future__ import annotations

import inspect

import pytest
import rasa.shared.utils.common
from rasa.shared.core.events import Event, SlotSet

from connectors import event_classes

NAMES = sorted({cls.type_name for cls in rasa.shared.utils.common.all_subclasses(Event)})


def test_every_event_name_resolves_to_rasas_class_twice_over():
    for _ in range(2):
        for name in NAMES:
            assert event_classes.resolve_by_type(name) is event_classes.RASAS_OWN(name)


def test_a_name_no_class_has_gets_rasas_answer():
    assert event_classes.resolve_by_type("topic") is None
    assert event_classes.resolve_by_type("no such event", SlotSet) is SlotSet
    with pytest.raises(ValueError, match="Unknown event name 'no such event'"):
        event_classes.resolve_by_type("no such event")


def test_installed_in_rasas_process_over_the_method_of_rasas_version():
    import connectors.gateway_channel  # noqa: F401 - installs it, as in Rasa's process

    assert inspect.getattr_static(Event, "resolve_by_type").__func__ is (
        event_classes.resolve_by_type)
    assert Event.from_parameters({"event": "slot", "name": "wish", "value": 1}) == SlotSet(
        "wish", 1)
    source = inspect.getsource(event_classes.RASAS_OWN)
    assert "for cls in rasa.shared.utils.common.all_subclasses(Event):" in source
    assert "if cls.type_name == type_name:" in source
