"""The trained NLU pipeline on the held-in test set (tests/nlu/heldout.yml, never trained on).

Trains config.yml's pipeline on data/nlu (or reuses the model cached for exactly these inputs,
see nlu_components/nlu_model.py) and checks macro-F1 >= 0.90 and urgent recall 1.00. An
`nlu_fallback` prediction counts as a miss: the patient would get a clarifying question.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from rasa.shared.nlu.training_data.loading import load_data

from nlu_components.nlu_model import PROJECT_ROOT, nlu_model

HELDOUT = Path(__file__).resolve().parent / "heldout.yml"
MIN_MACRO_F1 = 0.90


def _plain(text: str) -> str:
    return re.sub(r"[^\w ]", "", text.lower()).strip()


def per_intent_scores(pairs: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 per true intent, from (true, predicted) pairs."""
    true_count = Counter(t for t, _ in pairs)
    predicted_count = Counter(p for _, p in pairs)
    hits = Counter(t for t, p in pairs if t == p)
    scores = {}
    for intent in sorted(true_count):
        precision = hits[intent] / predicted_count[intent] if predicted_count[intent] else 0.0
        recall = hits[intent] / true_count[intent]
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[intent] = {"precision": precision, "recall": recall, "f1": f1,
                          "support": true_count[intent]}
    return scores


def test_heldout_messages_are_not_in_the_training_data():
    training = {_plain(m.get("text")) for m in
                load_data(str(PROJECT_ROOT / "data" / "nlu")).intent_examples}
    heldout = load_data(str(HELDOUT)).intent_examples
    overlap = [m.get("text") for m in heldout if _plain(m.get("text")) in training]
    assert overlap == []


def test_heldout_covers_every_intent_in_the_domain():
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text())
    expected = {i if isinstance(i, str) else next(iter(i)) for i in domain["intents"]}
    expected -= {"EXTERNAL_missed_call"}
    assert {m.get("intent") for m in load_data(str(HELDOUT)).intent_examples} == expected


@pytest.fixture(scope="module")
def predictions() -> list[dict]:
    from rasa.core.agent import Agent

    agent = Agent.load(str(nlu_model().path))
    synonyms = load_data(str(PROJECT_ROOT / "data" / "nlu")).entity_synonyms

    async def parse_all() -> list[dict]:
        results = []
        for example in load_data(str(HELDOUT)).intent_examples:
            parsed = await agent.parse_message(example.get("text"))
            expected = [synonyms.get(str(e["value"]).lower(), e["value"])
                        for e in example.get("entities") or [] if e["entity"] == "service"]
            results.append({
                "text": example.get("text"), "intent": example.get("intent"),
                "predicted": parsed["intent"]["name"],
                "confidence": parsed["intent"]["confidence"],
                "red_flag": parsed.get("red_flag"),
                "services": expected,
                "predicted_services": [e["value"] for e in parsed.get("entities") or []
                                       if e["entity"] == "service"],
            })
        return results

    return asyncio.run(parse_all())


def _misses(predictions: list[dict], intent: str | None = None) -> str:
    return "\n".join(f"  {p['intent']} -> {p['predicted']} ({p['confidence']:.2f}): {p['text']}"
                     for p in predictions
                     if p["intent"] != p["predicted"] and intent in (None, p["intent"]))


def test_macro_f1_on_heldout(predictions):
    scores = per_intent_scores([(p["intent"], p["predicted"]) for p in predictions])
    macro = sum(s["f1"] for s in scores.values()) / len(scores)
    table = "\n".join(f"  {name:14s} P {s['precision']:.2f} R {s['recall']:.2f} "
                      f"F1 {s['f1']:.2f} ({s['support']})" for name, s in scores.items())
    print(f"\nheld-in macro F1 {macro:.3f}\n{table}\nmisses:\n{_misses(predictions)}")
    assert macro >= MIN_MACRO_F1, f"macro F1 {macro:.3f}\n{table}\n{_misses(predictions)}"


def test_every_urgent_heldout_message_is_urgent(predictions):
    missed = _misses(predictions, "urgent")
    assert not missed, f"urgent messages not classified urgent:\n{missed}"


def test_routine_heldout_messages_are_not_urgent(predictions):
    false_urgent = [p for p in predictions
                    if p["predicted"] == "urgent" and p["intent"] != "urgent"]
    # Every false alarm costs a clinician's attention; allow at most one in the whole set.
    assert len(false_urgent) <= 1, "\n".join(f"  {p['intent']}: {p['text']}"
                                             for p in false_urgent)


def test_service_entity_on_heldout(predictions):
    expected = found = correct = 0
    for p in predictions:
        want, got = Counter(p["services"]), Counter(p["predicted_services"])
        expected += sum(want.values())
        found += sum(got.values())
        correct += sum((want & got).values())
    precision = correct / found if found else 0.0
    recall = correct / expected if expected else 0.0
    print(f"\nheld-in service entity: precision {precision:.3f} recall {recall:.3f}")
    assert expected > 20
    assert recall >= 0.80 and precision >= 0.80, (precision, recall)


def test_trained_model_carries_its_red_flags_to_another_directory(tmp_path):
    """A model loaded from elsewhere (no data/red_flags.yml there) still flags emergencies."""
    script = (
        "import asyncio, json, sys\n"
        "from rasa.core.agent import Agent\n"
        "agent = Agent.load(sys.argv[1])\n"
        "parsed = asyncio.run(agent.parse_message('my lip went white after filler'))\n"
        "print(json.dumps({'intent': parsed['intent'], 'red_flag': parsed.get('red_flag')}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RASA_TELEMETRY_ENABLED": "false",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script, str(nlu_model().path)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, check=True)
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["intent"] == {"name": "urgent", "confidence": 1.0}
    assert parsed["red_flag"]["rule"] == "vascular_occlusion_after_filler"
