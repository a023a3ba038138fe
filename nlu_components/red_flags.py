"""The emergency safety net: a Rasa NLU component that forces `urgent` when a red flag fires.

It runs after the intent classifier and the FallbackClassifier (config.yml), so it also
overrides `nlu_fallback`. When a rule from `data/red_flags.yml` fires, the message's intent
becomes `urgent` with confidence 1.0, `urgent` goes to the top of `intent_ranking`, and the parse
output gets `red_flag: {"rule": ..., "description": ...}` (in /model/parse and in the tracker's
latest_message). The rule set is copied into the model at training time, so a model loaded
from any working directory carries the rules it was trained with.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.constants import DEFAULT_NLU_FALLBACK_INTENT_NAME
from rasa.shared.nlu.constants import (
    INTENT,
    INTENT_NAME_KEY,
    INTENT_RANKING_KEY,
    PREDICTED_CONFIDENCE_KEY,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu_components.red_flag_rules import Firing, RedFlagRules, RuleFileError

logger = logging.getLogger(__name__)

RED_FLAG_KEY = "red_flag"
RULES_FILE_KEY = "rules_file"
URGENT_INTENT_KEY = "urgent_intent"
URGENT_WINS_FALLBACK_KEY = "urgent_wins_fallback"
URGENT_FALLBACK_MIN_CONFIDENCE_KEY = "urgent_fallback_min_confidence"
PERSISTED_RULES = "red_flags.json"


def _resolve(path: str) -> Path:
    return Path(path).expanduser()


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True
)
class RedFlagSafetyNet(GraphComponent, IntentClassifier):
    """Forces intent `urgent` and records the rule when a high-precision red flag fires."""

    @classmethod
    def required_components(cls) -> list[type]:
        # It reads the classifier's output, but only at inference: the training graph gives it
        # the featurised data, so Rasa's check must not demand a classifier upstream there.
        return []

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            # The trainer-extendable rule file, relative to the working directory at training.
            RULES_FILE_KEY: "data/red_flags.yml",
            # The intent a firing rule forces.
            URGENT_INTENT_KEY: "urgent",
            # When the FallbackClassifier replaced a prediction whose top intent was urgent,
            # keep urgent: a clarifying question is the wrong answer to a possible emergency.
            URGENT_WINS_FALLBACK_KEY: True,
            # ... but only if the classifier gave urgent at least this much. Below it, "urgent"
            # on top is mostly a guess about an odd message, and a false alarm costs a
            # clinician's attention (docs/nlu.md).
            URGENT_FALLBACK_MIN_CONFIDENCE_KEY: 0.3,
        }

    def __init__(self, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
                 rules: RedFlagRules | None = None) -> None:
        self._config = {**self.get_default_config(), **config}
        self._model_storage = model_storage
        self._resource = resource
        self._rules = rules

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> RedFlagSafetyNet:
        return cls(config, model_storage, resource)

    @classmethod
    def load(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> RedFlagSafetyNet:
        try:
            with model_storage.read_from(resource) as directory:
                spec = json.loads((directory / PERSISTED_RULES).read_text(encoding="utf-8"))
            return cls(config, model_storage, resource, RedFlagRules(spec))
        except (ValueError, FileNotFoundError) as error:
            # A model without persisted rules (never trained with them): read the file instead,
            # loudly, because the safety net must not silently disappear.
            merged = {**cls.get_default_config(), **config}
            logger.warning("Red-flag rules not found in the model (%s); reading %s instead.",
                           error, merged[RULES_FILE_KEY])
            return cls(config, model_storage, resource,
                       RedFlagRules.from_file(_resolve(merged[RULES_FILE_KEY])))

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> str | None:
        """Retrain (not reuse a cached model) when the rule file changes."""
        path = _resolve({**cls.get_default_config(), **config}[RULES_FILE_KEY])
        try:
            return RedFlagRules.from_file(path).fingerprint
        except (OSError, RuleFileError):
            return f"unreadable:{path}"

    @property
    def rules(self) -> RedFlagRules:
        if self._rules is None:
            self._rules = RedFlagRules.from_file(_resolve(self._config[RULES_FILE_KEY]))
        return self._rules

    def train(self, training_data: TrainingData) -> Resource:
        """Read and check the rule file, then store the rule set inside the model."""
        path = _resolve(self._config[RULES_FILE_KEY])
        self._rules = RedFlagRules.from_file(path)
        urgent = self._config[URGENT_INTENT_KEY]
        if training_data.intents and urgent not in training_data.intents:
            logger.warning("The red-flag intent %r has no training examples.", urgent)
        for problem in self._rules.self_check():
            logger.warning("Red-flag rule check (%s): %s", path, problem)
        with self._model_storage.write_to(self._resource) as directory:
            (directory / PERSISTED_RULES).write_text(
                json.dumps(self._rules.spec, sort_keys=True), encoding="utf-8")
        return self._resource

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Nothing to add to the training data: the rules do not change what others learn."""
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            firing = self.rules.first_match(message.get(TEXT) or "")
            if firing is not None:
                self._force_urgent(message, firing)
            elif self._config[URGENT_WINS_FALLBACK_KEY]:
                self._keep_urgent_over_fallback(message)
        return messages

    def _force_urgent(self, message: Message, firing: Firing) -> None:
        urgent = self._config[URGENT_INTENT_KEY]
        forced = {INTENT_NAME_KEY: urgent, PREDICTED_CONFIDENCE_KEY: 1.0}
        ranking = [entry for entry in message.get(INTENT_RANKING_KEY) or []
                   if entry.get(INTENT_NAME_KEY) not in (urgent, DEFAULT_NLU_FALLBACK_INTENT_NAME)]
        message.set(INTENT, forced, add_to_output=True)
        message.set(INTENT_RANKING_KEY, [dict(forced), *ranking], add_to_output=True)
        message.set(RED_FLAG_KEY, firing.as_output(), add_to_output=True)
        logger.info("Red flag %s fired: intent forced to %s.", firing.rule, urgent)

    def _keep_urgent_over_fallback(self, message: Message) -> None:
        urgent = self._config[URGENT_INTENT_KEY]
        intent = message.get(INTENT) or {}
        ranking = message.get(INTENT_RANKING_KEY) or []
        if intent.get(INTENT_NAME_KEY) != DEFAULT_NLU_FALLBACK_INTENT_NAME or len(ranking) < 2:
            return
        best = ranking[1] if ranking[0].get(INTENT_NAME_KEY) == DEFAULT_NLU_FALLBACK_INTENT_NAME \
            else ranking[0]
        if best.get(INTENT_NAME_KEY) != urgent or (
                best.get(PREDICTED_CONFIDENCE_KEY, 0.0)
                < self._config[URGENT_FALLBACK_MIN_CONFIDENCE_KEY]):
            return
        message.set(INTENT, dict(best), add_to_output=True)
        message.set(INTENT_RANKING_KEY,
                    [e for e in ranking if e.get(INTENT_NAME_KEY) !=
                     DEFAULT_NLU_FALLBACK_INTENT_NAME],
                    add_to_output=True)
