"""A message written wholly in Spanish: the intent `other_language`, not a clarify loop.

The model is trained on English. A patient may still drop a Spanish word into an English
thread ("si", "gracias", "I need a cita"): the classifier learns those. A message that is
Spanish throughout ("hola, quiero una cita para mañana") would otherwise come out as a weak
guess or `nlu_fallback`, and the patient would be asked, in English, to rephrase. This
component, after the FallbackClassifier and before the red-flag safety net (which still wins),
sets `other_language` with `language: "es"` in the parse output; the clinic's configuration
decides the reply (actions/conversation.py).

The test is a word count, not a language model: short texts defeat statistical language
identification, and a few hundred common Spanish words decide a patient's message well.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

OTHER_LANGUAGE_INTENT = "other_language"
LANGUAGE_KEY = "language"

# Common Spanish words (accents dropped), the ones a patient texting a clinic uses.
_SPANISH_WORDS = """
a al algo alguien aqui ahora asi ayer ayuda ayudar bien buen buena buenas bueno buenos
cada cancelar cita citas clinica como con consulta cual cuando cuanto cuanta cuesta de del
dentista dia dias doctor doctora donde dolor duele el ella ellos en entre es esa ese esta
estan estar este esto estoy favor gracias hablar hablo hacer hay hola hora horario horas hoy
la las le lo los luego lunes manana martes mas me mejor mi mis miercoles muela mucho muchas
muchos muy necesito ninguna no noches nos nuestra nuestro o otra otro para pero poco poder
por porque precio puede pueden puedo que quiero quisiera sabado se semana senor senora si
sin sobre son soy su sus tambien tarde tardes tengo tiene tienen todo todos trabajo tu un
una uno usted ustedes va viernes vez y ya yo jueves domingo cambiar reservar pedir hijo hija
esposo esposa dientes diente limpieza revision urgente espanol ingles entiendo habla hablan
podria gustaria llamar llame llamen necesita pregunta abierto abren cierran cerrado mal
"""
SPANISH_WORDS = frozenset(_SPANISH_WORDS.split())
# Spanish words English speakers use too, and words English and Spanish share: alone they do
# not make a message Spanish ("si", "gracias", "no", "a", "me").
_SHARED_OR_BORROWED = """
a no me si gracias muchas hola adios cita por favor ok vale doctor dentista
buenos buenas dias tardes noches senor senora son sin hay mal
"""
SHARED_OR_BORROWED = frozenset(_SHARED_OR_BORROWED.split())
MIN_SPANISH_ONLY_WORDS = 2
_WORD = re.compile(r"[a-z]+")


def _words(text: str) -> list[str]:
    plain = unicodedata.normalize("NFKD", text.lower())
    return _WORD.findall("".join(c for c in plain if not unicodedata.combining(c)))


def is_spanish(text: str) -> bool:
    """True when every word is Spanish and at least two are not also English or borrowed."""
    words = _words(text)
    if not words or any(word not in SPANISH_WORDS for word in words):
        return False
    return sum(word not in SHARED_OR_BORROWED for word in words) >= MIN_SPANISH_ONLY_WORDS


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False
)
class OtherLanguage(GraphComponent, IntentClassifier):
    """Sets intent `other_language` (and `language: "es"`) for a message wholly in Spanish."""

    @classmethod
    def required_components(cls) -> list[type]:
        return []

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> OtherLanguage:
        return cls()

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            if not is_spanish(message.get(TEXT) or ""):
                continue
            intent = {"name": OTHER_LANGUAGE_INTENT, "confidence": 1.0}
            ranking = [intent] + [entry for entry in message.get(INTENT_RANKING_KEY) or []
                                  if entry.get("name") != OTHER_LANGUAGE_INTENT]
            message.set(INTENT, intent, add_to_output=True)
            message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
            message.set(LANGUAGE_KEY, "es", add_to_output=True)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data
