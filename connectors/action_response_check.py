"""Rasa checks every action server response against its JSON schema: kept, made cheap.

Rasa 3.6 calls `jsonschema.validate(result, schema)` for each custom action it runs, and that
function checks the (large, constant) schema itself before checking the response: profiled,
about a quarter of the Rasa process's CPU per patient message, some twenty times what checking
the response alone costs. `install()` makes Rasa check each response against a validator built
once from the same schema, with the same error on a bad response. Rasa's version is pinned
(pyproject.toml); the test of this module fails if the method it replaces changes shape.
"""

from __future__ import annotations

import functools
from typing import Any

from jsonschema import ValidationError
from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction
from rasa.shared.constants import DOCS_BASE_URL


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    schema = RemoteAction.action_response_format_spec()
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def check_action_response(_action: RemoteAction, result: dict[str, Any]) -> bool:
    """What `RemoteAction._validate_action_result` does, without re-checking the schema."""
    try:
        _validator().validate(result)
    except ValidationError as exc:
        exc.message += (". Failed to validate Action server response from API, make sure your "
                        "response from the Action endpoint is valid. For more information "
                        f"about the format visit {DOCS_BASE_URL}/custom-actions")
        raise
    return True


def install() -> None:
    RemoteAction._validate_action_result = check_action_response
