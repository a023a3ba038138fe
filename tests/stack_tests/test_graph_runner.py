"""The trained model's predict graph, run in order instead of through dask, gives the same
parse of every message and the same next-action prediction for every tracker."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import rasa.core.processor
from rasa.core.channels.channel import UserMessage
from rasa.engine import loader
from rasa.engine.exceptions import GraphRunError
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import ActionExecuted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

import connectors.gateway_channel  # noqa: F401 - installs the runner, as in Rasa's process
from connectors.graph_runner import InOrderGraphRunner

MESSAGES = [
    "yes please", "can I book a cleaning next week", "Thursday at 10 works", "the second one",
    "how much is teeth whitening", "no thanks", "I want to talk to a person",
    "my face is swollen and I can't breathe", "cancel my appointment", "STOPPP lol",
    "what time do you open on Saturday", "",
]


@pytest.fixture(scope="module")
def runners(trained_model: Path, tmp_path_factory: pytest.TempPathFactory):
    loaded = [loader.load_predict_graph_runner(tmp_path_factory.mktemp(kind.__name__),
                                               trained_model, LocalModelStorage, kind)
              for kind in (DaskGraphRunner, InOrderGraphRunner)]
    (metadata, dask), (_, in_order) = loaded
    return metadata, dask, in_order


def test_the_processor_loads_its_model_with_the_in_order_runner():
    assert rasa.core.processor.DaskGraphRunner is InOrderGraphRunner
    # A Rasa upgrade that loads its model another way must be looked at, not patched over.
    load_model = inspect.getsource(rasa.core.processor.MessageProcessor._load_model)
    assert "DaskGraphRunner,\n" in load_model


def _parse(runner, metadata, text: str, tracker: DialogueStateTracker) -> dict:
    results = runner.run(inputs={"__message__": [UserMessage(text, sender_id=tracker.sender_id)],
                                 "__tracker__": tracker},
                         targets=[metadata.nlu_target])
    return results[metadata.nlu_target][0].as_dict(only_output_properties=True)


def test_same_parse_and_predictions_as_dask(runners):
    metadata, dask, in_order = runners
    tracker = DialogueStateTracker.from_events(
        "+447700900999", [ActionExecuted(ACTION_LISTEN_NAME)], slots=metadata.domain.slots)
    for text in MESSAGES:
        parsed = _parse(dask, metadata, text, tracker)
        assert _parse(in_order, metadata, text, tracker) == parsed
        tracker.update(UserUttered(text, parsed["intent"], parsed.get("entities", []), parsed))
        # A few actions after each message, as the processor predicts them until it listens.
        for _ in range(3):
            expected = dask.run(inputs={"__tracker__": tracker},
                                targets=[metadata.core_target])[metadata.core_target]
            got = in_order.run(inputs={"__tracker__": tracker},
                               targets=[metadata.core_target])[metadata.core_target]
            assert got == expected
            action = metadata.domain.action_names_or_texts[expected.max_confidence_index]
            tracker.update(ActionExecuted(action, policy=expected.policy_name,
                                          confidence=expected.max_confidence))
            if action == ACTION_LISTEN_NAME:
                break
    assert len(tracker.events) > 3 * len(MESSAGES)


def test_every_target_runs_without_targets_named(runners):
    metadata, dask, in_order = runners
    tracker = DialogueStateTracker.from_events(
        "+447700900998", [ActionExecuted(ACTION_LISTEN_NAME)])
    inputs = {"__message__": [UserMessage("hi", sender_id=tracker.sender_id)],
              "__tracker__": tracker}
    assert in_order.run(inputs=dict(inputs)).keys() == dask.run(inputs=dict(inputs)).keys()


def test_an_input_named_like_a_node_is_refused_as_dask_refuses_it(runners):
    metadata, dask, in_order = runners
    for runner in (dask, in_order):
        with pytest.raises(GraphRunError, match="clashes with a node name"):
            runner.run(inputs={"__tracker__": metadata.core_target},
                       targets=[metadata.core_target])
