"""LinearIntentClassifier scores a message as scikit-learn's TF-IDF transform would."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.loading import load_data
from scipy import sparse

from nlu_components.linear_intent import LinearIntentClassifier

TRAINING = Path(__file__).resolve().parents[2] / "data" / "nlu"
# Texts the training data lacks: unknown words, accents, emoji, nothing at all.
ODD_TEXTS = ["", "   ", "zzzz qqqq", "¿Puedo reservar una cita mañana?", "🦷🦷 ouch!!",
             "CAN I BOOK A CLEAN", "appt tmrw pls?"]


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[LinearIntentClassifier, LinearIntentClassifier]:
    """The classifier as trained, and as loaded from what it persisted."""
    storage = LocalModelStorage(tmp_path_factory.mktemp("storage"))
    context = ExecutionContext(GraphSchema({}), "test-model")
    config = {**LinearIntentClassifier.get_default_config(), "C": 20}
    resource = Resource("linear_intent")
    trained = LinearIntentClassifier.create(config, storage, resource, context)
    trained.train(load_data(str(TRAINING)))
    return trained, LinearIntentClassifier.load(config, storage, resource, context)


def scikit_learns_probabilities(classifier: LinearIntentClassifier,
                                texts: list[str]) -> np.ndarray:
    assert classifier._vectorizers is not None and classifier._coef is not None
    features = sparse.hstack([v.transform(texts) for v in classifier._vectorizers]).tocsr()
    scores = features @ classifier._coef.T + classifier._intercept
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_probabilities_are_scikit_learns_for_every_training_text_and_odd_ones(classifiers):
    texts = [m.get("text") for m in load_data(str(TRAINING)).intent_examples] + ODD_TEXTS
    for classifier in classifiers:
        ours = classifier._probabilities(texts)
        theirs = scikit_learns_probabilities(classifier, texts)
        assert np.abs(ours - theirs).max() < 1e-12
        assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).all()
