"""NLU parse latency: p50/p95 milliseconds per message through the trained pipeline, in-process.

Uses the NLU-only model for the current config and data (nlu_components/nlu_model.py; trained
first if none is cached, and its training time is reported). Target: p95 < 50 ms.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time

MESSAGES = [
    "yes",
    "yes please book me in for a cleaning",
    "none of those work",
    "the second one",
    "half 2 on thursday",
    "it's Sarah Jones",
    "how much is lip filler?",
    "what time do you close on saturday",
    "do you take Bupa",
    "can I move my appointment to next week",
    "cancel my appointment please",
    "stop texting me",
    "can someone call me back",
    "I think I've been charged twice",
    "does lip filler hurt?",
    "my lip has gone white and swollen after the filler this morning",
    "the bleeding won't stop after my extraction",
    "my son knocked his front tooth out",
    "toothache is killing me, need to be seen today",
    "thanks, see you then",
]
WARMUP_ROUNDS = 1
ROUNDS = 10


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run() -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    logging.disable(logging.WARNING)
    import structlog
    from rasa.core.agent import Agent

    from nlu_components.nlu_model import nlu_model

    model = nlu_model()
    # Rasa's processor logs every parse at debug level through structlog; keep the bench quiet.
    saved_structlog = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = time.perf_counter()
    agent = Agent.load(str(model.path))
    load_seconds = time.perf_counter() - started
    processor = agent.processor

    async def measure() -> list[float]:
        timings = []
        for round_number in range(WARMUP_ROUNDS + ROUNDS):
            for text in MESSAGES:
                began = time.perf_counter()
                await processor.parse_message(_message(text))
                if round_number >= WARMUP_ROUNDS:
                    timings.append((time.perf_counter() - began) * 1000)
        return timings

    try:
        timings = asyncio.run(measure())
    finally:
        structlog.configure(**saved_structlog)
    return {
        "messages": len(timings),
        "parse_p50_ms": round(statistics.median(timings), 1),
        "parse_p95_ms": round(_percentile(timings, 0.95), 1),
        "parse_max_ms": round(max(timings), 1),
        "model_load_s": round(load_seconds, 1),
        "nlu_train_s": model.train_seconds,
        "nlu_trained_now": model.trained_now,
    }


def _message(text: str):
    from rasa.core.channels.channel import UserMessage

    return UserMessage(text=text)


if __name__ == "__main__":
    print(run())
