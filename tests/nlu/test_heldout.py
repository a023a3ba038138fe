"""The trained NLU pipeline on the held-in test set (tests/nlu/heldout.yml, never trained on).

Trains config.yml's pipeline on data/nlu (or reuses the model cached for exactly these inputs,
see nlu_components/nlu_model.py) and checks macro-F1 >= 0.90 and urgent recall 1.00. An
`nlu_fallback` prediction counts as a miss: the patient would get a clarifying question.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from rasa.shared.nlu.training_data.loading import load_data

from nlu_components.evaluation import (
    classified_intents,
    misses,
    overlap_with_training,
    predict,
    score,
)
from nlu_components.nlu_model import PROJECT_ROOT, nlu_model

HELDOUT = Path(__file__).resolve().parent / "heldout.yml"
TRAINING = PROJECT_ROOT / "data" / "nlu"
MIN_MACRO_F1 = 0.90


def test_heldout_messages_are_not_in_the_training_data():
    assert overlap_with_training(HELDOUT, TRAINING) == []


def test_heldout_covers_every_intent_in_the_domain():
    expected = classified_intents(PROJECT_ROOT / "domain.yml")
    assert {m.get("intent") for m in load_data(str(HELDOUT)).intent_examples} == expected


@pytest.fixture(scope="module")
def predictions():
    return predict(nlu_model().path, HELDOUT, synonyms_from=TRAINING)


def test_macro_f1_on_heldout(predictions):
    scores = score(predictions).per_intent
    macro = sum(s["f1"] for s in scores.values()) / len(scores)
    table = "\n".join(f"  {name:14s} P {s['precision']:.2f} R {s['recall']:.2f} "
                      f"F1 {s['f1']:.2f} ({s['support']})" for name, s in scores.items())
    print(f"\nheld-in macro F1 {macro:.3f}\n{table}\nmisses:\n{misses(predictions)}")
    assert macro >= MIN_MACRO_F1, f"macro F1 {macro:.3f}\n{table}\n{misses(predictions)}"


def test_every_urgent_heldout_message_is_urgent(predictions):
    missed = misses(predictions, "urgent")
    assert not missed, f"urgent messages not classified urgent:\n{missed}"


def test_routine_heldout_messages_are_not_urgent(predictions):
    false_urgent = [p for p in predictions if p.predicted == "urgent" and p.intent != "urgent"]
    # Every false alarm costs a clinician's attention; allow at most one in the whole set.
    assert len(false_urgent) <= 1, "\n".join(f"  {p.intent}: {p.text}" for p in false_urgent)


def test_service_entity_on_heldout(predictions):
    expected = found = correct = 0
    for p in predictions:
        want, got = Counter(p.services), Counter(p.predicted_services)
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
