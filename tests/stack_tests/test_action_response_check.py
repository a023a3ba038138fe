"""Rasa still checks every action server response, against the same schema, with the same
error, once the cheaper check is installed in its process."""

from __future__ import annotations

import inspect

import jsonschema
import pytest
import rasa.core.actions.action
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction

import connectors.gateway_channel  # noqa: F401 - installs the check, as in Rasa's process
from connectors.action_response_check import _valid, check_action_response

GOOD = {"events": [{"event": "slot", "name": "step", "value": "pick", "timestamp": None},
                   {"event": "bot", "text": "Thursday 10:00 or Friday 11:00?", "data": {},
                    "metadata": {}}],
        "responses": [{"text": "Thursday 10:00 or Friday 11:00?"}]}
# Responses of other shapes, each event kind of ours among them.
ALSO_GOOD = [
    {},
    {"events": [], "responses": []},
    {"events": [{"event": "followup", "name": "action_offer_slots", "timestamp": 1.5},
                {"event": "active_loop", "name": None},
                {"event": "reset_slots"},
                {"event": "user", "text": "hi", "parse_data": {"intent": {"name": "greet"},
                                                                "entities": []}},
                {"event": "action", "name": "action_listen", "confidence": 1}]},
]
BAD = [
    {"events": "not a list"},
    {"events": [{"event": "slot", "name": 42}]},  # a slot's name must be a string
    {"responses": [["not", "an", "object"]]},
    {"events": [{"event": "no_such_kind"}]},
    {"events": [{"name": "step", "value": 1}]},  # no `event`
    {"events": [{"event": 7}]},
    {"events": [{"event": "bot", "timestamp": True}]},  # a boolean is not a number
    {"events": [{"event": "slot", "name": "step"}]},  # a slot event needs its value
    None,  # an action server answering without JSON
]


def remote_action() -> RemoteAction:
    return RemoteAction("action_book", action_endpoint=None)


def test_rasa_runs_the_cheaper_check():
    assert RemoteAction._validate_action_result is check_action_response


def test_the_method_it_replaces_still_has_the_shape_it_had():
    """A Rasa upgrade that changes how it checks responses must be looked at, not patched over."""
    rasa_source = inspect.getsource(rasa.core.actions.action)
    assert "def _validate_action_result(self, result: Dict[Text, Any]) -> bool:" in rasa_source
    assert "validate(result, self.action_response_format_spec())" in rasa_source
    assert list(inspect.signature(check_action_response).parameters) == ["_action", "result"]


@pytest.mark.parametrize("result", [GOOD, *ALSO_GOOD])
def test_a_good_response_passes(result):
    assert remote_action()._validate_action_result(result) is True


@pytest.mark.parametrize("result", [GOOD, *ALSO_GOOD, *BAD])
def test_the_quick_check_agrees_with_rasas_schema(result):
    try:
        jsonschema.validate(result, RemoteAction.action_response_format_spec())
        rasa_accepts = True
    except ValidationError:
        rasa_accepts = False
    assert _valid(result) is rasa_accepts


@pytest.mark.parametrize("result", BAD)
def test_a_bad_response_is_refused_as_rasa_would(result):
    with pytest.raises(ValidationError) as ours:
        remote_action()._validate_action_result(result)
    with pytest.raises(ValidationError) as rasas:
        jsonschema.validate(result, RemoteAction.action_response_format_spec())
    assert ours.value.message.startswith(rasas.value.message)
    assert "Failed to validate Action server response" in ours.value.message
