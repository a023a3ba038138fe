"""The RedFlagSafetyNet Rasa component: forcing urgent, marking the parse, persisting rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu_components.red_flags import RedFlagSafetyNet

RULES_FILE = Path(__file__).resolve().parents[2] / "data" / "red_flags.yml"
EMERGENCY = "my lip has gone white and swollen after the filler"


@pytest.fixture
def storage(tmp_path: Path) -> LocalModelStorage:
    (tmp_path / "storage").mkdir()
    return LocalModelStorage(tmp_path / "storage")


@pytest.fixture
def context() -> ExecutionContext:
    return ExecutionContext(GraphSchema({}), "test-model")


def trained(storage, context, rules_file: Path = RULES_FILE, **config) -> Resource:
    resource = Resource("red_flags")
    component = RedFlagSafetyNet.create(
        {**RedFlagSafetyNet.get_default_config(), "rules_file": str(rules_file), **config},
        storage, resource, context)
    return component.train(TrainingData())


def loaded(storage, context, resource, **config) -> RedFlagSafetyNet:
    return RedFlagSafetyNet.load(
        {**RedFlagSafetyNet.get_default_config(), **config}, storage, resource, context)


def classified(text: str, ranking: list[tuple[str, float]]) -> Message:
    message = Message(data={"text": text})
    entries = [{"name": name, "confidence": confidence} for name, confidence in ranking]
    message.set("intent", dict(entries[0]), add_to_output=True)
    message.set("intent_ranking", entries, add_to_output=True)
    return message


def after_fallback(text: str, ranking: list[tuple[str, float]]) -> Message:
    """What FallbackClassifier leaves behind: nlu_fallback on top of the classifier's ranking."""
    message = classified(text, ranking)
    fallback = {"name": "nlu_fallback", "confidence": 0.4}
    message.set("intent", dict(fallback), add_to_output=True)
    message.set("intent_ranking", [fallback, *message.get("intent_ranking")], add_to_output=True)
    return message


def test_a_red_flag_forces_urgent_and_marks_the_parse(storage, context):
    component = loaded(storage, context, trained(storage, context))
    message = classified(EMERGENCY, [("book", 0.7), ("urgent", 0.2), ("inform", 0.1)])
    component.process([message])
    output = message.as_dict(only_output_properties=True)
    assert output["intent"] == {"name": "urgent", "confidence": 1.0}
    assert [e["name"] for e in output["intent_ranking"]] == ["urgent", "book", "inform"]
    assert output["intent_ranking"][0]["confidence"] == 1.0
    assert output["red_flag"]["rule"] == "vascular_occlusion_after_filler"
    assert "vascular occlusion" in output["red_flag"]["description"]
    assert set(output["red_flag"]) == {"rule", "description"}


def test_a_red_flag_overrides_nlu_fallback(storage, context):
    component = loaded(storage, context, trained(storage, context))
    message = after_fallback("help I cant breathe", [("greet", 0.3), ("human", 0.25)])
    component.process([message])
    assert message.get("intent") == {"name": "urgent", "confidence": 1.0}
    assert "nlu_fallback" not in [e["name"] for e in message.get("intent_ranking")]
    assert message.get("red_flag")["rule"] == "breathing_or_throat_trouble"


def test_no_red_flag_leaves_the_prediction_alone(storage, context):
    component = loaded(storage, context, trained(storage, context))
    message = classified("does lip filler hurt?", [("out_of_scope", 0.9), ("urgent", 0.05)])
    component.process([message])
    output = message.as_dict(only_output_properties=True)
    assert output["intent"] == {"name": "out_of_scope", "confidence": 0.9}
    assert "red_flag" not in output


def test_urgent_wins_over_fallback_without_a_rule(storage, context):
    component = loaded(storage, context, trained(storage, context))
    message = after_fallback("something feels really wrong", [("urgent", 0.35), ("human", 0.3)])
    component.process([message])
    assert message.get("intent") == {"name": "urgent", "confidence": 0.35}
    assert message.get("intent_ranking")[0]["name"] == "urgent"
    assert message.get("red_flag") is None


def test_a_weak_urgent_guess_stays_a_fallback(storage, context):
    component = loaded(storage, context, trained(storage, context))
    message = after_fallback("I left my umbrella at yours", [("urgent", 0.22), ("human", 0.2)])
    component.process([message])
    assert message.get("intent")["name"] == "nlu_fallback"


def test_fallback_over_other_intents_is_kept(storage, context):
    component = loaded(storage, context, trained(storage, context))
    message = after_fallback("hmm", [("greet", 0.35), ("urgent", 0.3)])
    component.process([message])
    assert message.get("intent")["name"] == "nlu_fallback"


def test_urgent_over_fallback_can_be_switched_off(storage, context):
    resource = trained(storage, context)
    component = loaded(storage, context, resource, urgent_wins_fallback=False)
    message = after_fallback("something feels really wrong", [("urgent", 0.35), ("human", 0.3)])
    component.process([message])
    assert message.get("intent")["name"] == "nlu_fallback"


def test_rules_travel_inside_the_model(storage, context, tmp_path, monkeypatch):
    rules = tmp_path / "rules.yml"
    shutil.copy(RULES_FILE, rules)
    resource = trained(storage, context, rules_file=rules)
    rules.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the default relative rules path does not exist here
    component = loaded(storage, context, resource)
    message = classified(EMERGENCY, [("book", 0.9)])
    component.process([message])
    assert message.get("red_flag")["rule"] == "vascular_occlusion_after_filler"


def test_a_model_without_persisted_rules_reads_the_file(storage, context):
    component = loaded(storage, context, Resource("never_trained"), rules_file=str(RULES_FILE))
    message = classified(EMERGENCY, [("book", 0.9)])
    component.process([message])
    assert message.get("intent")["name"] == "urgent"


def test_changing_the_rule_file_changes_the_fingerprint(tmp_path):
    rules = tmp_path / "rules.yml"
    shutil.copy(RULES_FILE, rules)
    before = RedFlagSafetyNet.fingerprint_addon({"rules_file": str(rules)})
    rules.write_text(rules.read_text().replace("vascular_occlusion_after_filler",
                                               "vascular_occlusion"))
    after = RedFlagSafetyNet.fingerprint_addon({"rules_file": str(rules)})
    assert before and after and before != after


def test_messages_without_text_are_left_alone(storage, context):
    component = loaded(storage, context, trained(storage, context))
    message = Message(data={})
    assert component.process([message]) == [message]
    assert message.get("red_flag") is None
