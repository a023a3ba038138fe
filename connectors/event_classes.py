"""Rasa's event class by its type name, found once per name.

Rasa 3.6 finds the class of every event it reads (each event of an action's response, each row
of a tracker read afresh) by listing all of Event's subclasses anew, recursively, checking each
for abstract methods, and taking the first of that name: profiled, about 2% of the Rasa
process's CPU per message (issue 19). `install()` remembers the class found for each name, and
a name no class has goes on to Rasa's answer for it (None for the old "topic", the default
given, or Rasa's error). Rasa's event classes are all defined when its modules are imported,
before any event is read, so the class found first for a name stays the one found.
"""

from __future__ import annotations

import rasa.shared.utils.common
from rasa.shared.core.events import Event

RASAS_OWN = Event.resolve_by_type
_found: dict[str, type[Event]] = {}


def resolve_by_type(type_name: str, default: type[Event] | None = None) -> type[Event] | None:
    """Event.resolve_by_type, each name's class found once."""
    found = _found.get(type_name)
    if found is None:
        found = next((cls for cls in rasa.shared.utils.common.all_subclasses(Event)
                      if cls.type_name == type_name), None)
        if found is None:
            return RASAS_OWN(type_name, default)
        _found[type_name] = found
    return found


def install() -> None:
    Event.resolve_by_type = staticmethod(resolve_by_type)
