"""Rasa checks every action server response against its JSON schema: kept, made cheap.

Rasa 3.6 calls `jsonschema.validate(result, schema)` for each custom action it runs, and that
function checks the (large, constant) schema itself before checking the response: profiled,
about a quarter of the Rasa process's CPU per patient message. Even with a validator built
once, checking a response cost about 0.4 ms (11% of the process's CPU, issue 19), most of it
in the schema's `oneOf` of two dozen event kinds, every one of them tried on every event.

`install()` makes Rasa check each response in two steps compiled once (fastjsonschema): the
response and each event's common fields, then each event against the one kind its `event`
names. That is the same check: an event must have an `event` string, and each kind fixes
`event` to its own constant, so no other kind can match it and "exactly one of" is "this
one" (`_kinds` refuses a schema where that does not hold). A response that fails is checked
again by jsonschema against Rasa's own schema, so a bad response gets Rasa's error, word for
word. Rasa's version is pinned (pyproject.toml); the test of this module fails if the method
it replaces changes shape.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import fastjsonschema
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction
from rasa.shared.constants import DOCS_BASE_URL

_Check = Callable[[Any], Any]


@functools.lru_cache(maxsize=1)
def _rasas_validator() -> Any:
    schema = RemoteAction.action_response_format_spec()
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


@functools.lru_cache(maxsize=1)
def _checks() -> tuple[_Check, dict[str, _Check]]:
    """The response's check without the event kinds, and each event kind's own check."""
    schema = RemoteAction.action_response_format_spec()
    event = schema["properties"]["events"]["items"]
    common = {key: value for key, value in event.items() if key != "oneOf"}
    response = {**schema, "properties": {**schema["properties"],
                                         "events": {"type": "array", "items": common}}}
    return (fastjsonschema.compile(response),
            {name: fastjsonschema.compile(kind) for name, kind in _kinds(event).items()})


def _kinds(event: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each event kind's schema by the `event` constant it requires."""
    kinds = {kind["properties"]["event"].get("const"): kind for kind in event["oneOf"]}
    if ("event" not in event.get("required", ()) or None in kinds
            or len(kinds) != len(event["oneOf"])):
        raise RuntimeError("Rasa's action response schema no longer tells event kinds apart "
                           "by their `event` constant: connectors/action_response_check.py "
                           "must be looked at")
    return kinds


def _valid(result: Any) -> bool:
    response, kinds = _checks()
    try:
        response(result)
        for event in result.get("events") or ():
            kinds[event["event"]](event)
    except (fastjsonschema.JsonSchemaException, KeyError):
        return False
    return True


def check_action_response(_action: RemoteAction, result: dict[str, Any]) -> bool:
    """What `RemoteAction._validate_action_result` does, without re-checking the schema."""
    if _valid(result):
        return True
    # The error jsonschema.validate raises: the best match among all the response's errors.
    error = best_match(_rasas_validator().iter_errors(result))
    if error is not None:
        error.message += (". Failed to validate Action server response from API, make sure "
                          "your response from the Action endpoint is valid. For more "
                          f"information about the format visit {DOCS_BASE_URL}/custom-actions")
        raise error
    return True


def install() -> None:
    RemoteAction._validate_action_result = check_action_response
