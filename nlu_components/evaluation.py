"""Score a trained NLU model on a labelled test set the way a patient meets it.

Used by the held-in and unseen-phrasing tests (tests/nlu/) and by `make nlu-report`. A message
counts as right only when the final intent (after the FallbackClassifier and the red-flag safety
net) is the labelled one: an `nlu_fallback` is a miss, because the patient gets a clarifying
question instead of an answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml
from rasa.shared.nlu.training_data.loading import load_data

URGENT = "urgent"


@dataclass(frozen=True)
class Prediction:
    text: str
    intent: str
    predicted: str
    confidence: float
    services: tuple[str, ...]
    predicted_services: tuple[str, ...]


@dataclass(frozen=True)
class Scores:
    messages: int
    accuracy: float
    urgent_recall: float
    false_urgent: int
    per_intent: dict[str, dict[str, float]]


def plain(text: str) -> str:
    """A message as compared for overlap: lower case, letters, digits and spaces only."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w ]", "", text.lower())).strip()


def classified_intents(domain_file: Path) -> set[str]:
    """The domain's intents that the classifier predicts: not those set by an external event
    (EXTERNAL_missed_call, EXTERNAL_reminder, ...) or by a component (other_language)."""
    from nlu_components.other_language import OTHER_LANGUAGE_INTENT

    domain = yaml.safe_load(domain_file.read_text())
    intents = {i if isinstance(i, str) else next(iter(i)) for i in domain["intents"]}
    return {intent for intent in intents
            if not intent.startswith("EXTERNAL_") and intent != OTHER_LANGUAGE_INTENT}


def overlap_with_training(test_set: Path, training: Path) -> list[str]:
    """Messages of `test_set` that also appear (as plain text) in the training data."""
    trained = {plain(m.get("text")) for m in load_data(str(training)).intent_examples}
    return [m.get("text") for m in load_data(str(test_set)).intent_examples
            if plain(m.get("text")) in trained]


def predict(model_path: Path, test_set: Path, synonyms_from: Path) -> list[Prediction]:
    """Parse every message of `test_set` with the model at `model_path`."""
    import structlog
    from rasa.core.agent import Agent

    # Rasa logs every parse (with its text) at debug level through structlog; a report of a few
    # hundred messages should show the scores, not each message twice.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    agent = Agent.load(str(model_path))
    synonyms = load_data(str(synonyms_from)).entity_synonyms

    async def parse_all() -> list[Prediction]:
        results = []
        for example in load_data(str(test_set)).intent_examples:
            parsed = await agent.parse_message(example.get("text"))
            results.append(Prediction(
                text=example.get("text"), intent=example.get("intent"),
                predicted=parsed["intent"]["name"],
                confidence=float(parsed["intent"]["confidence"]),
                services=tuple(synonyms.get(str(e["value"]).lower(), e["value"])
                               for e in example.get("entities") or []
                               if e["entity"] == "service"),
                # One per span: the CRF and the lookup-table extractor may both find it.
                predicted_services=tuple({(e["start"], e["end"]): e["value"]
                                          for e in parsed.get("entities") or []
                                          if e["entity"] == "service"}.values()),
            ))
        return results

    return asyncio.run(parse_all())


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


def score(predictions: list[Prediction]) -> Scores:
    urgent = [p for p in predictions if p.intent == URGENT]
    return Scores(
        messages=len(predictions),
        accuracy=sum(p.intent == p.predicted for p in predictions) / len(predictions),
        urgent_recall=(sum(p.predicted == URGENT for p in urgent) / len(urgent)
                       if urgent else 1.0),
        false_urgent=sum(p.predicted == URGENT and p.intent != URGENT for p in predictions),
        per_intent=per_intent_scores([(p.intent, p.predicted) for p in predictions]),
    )


def misses(predictions: list[Prediction], intent: str | None = None) -> str:
    """One line per wrong prediction (of `intent` only, when given)."""
    return "\n".join(f"  {p.intent} -> {p.predicted} ({p.confidence:.2f}): {p.text}"
                     for p in predictions
                     if p.intent != p.predicted and intent in (None, p.intent))


def table(scores: Scores) -> str:
    """Per-intent precision / recall / F1 in Markdown, with the headline figures under it."""
    lines = ["| intent | precision | recall | F1 | support |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | "
              f"{row['support']} |" for name, row in scores.per_intent.items()]
    return ("\n".join(lines) + f"\n\naccuracy {scores.accuracy:.3f} · urgent recall "
            f"{scores.urgent_recall:.3f} · false urgent {scores.false_urgent} "
            f"({scores.messages} messages)\n")
