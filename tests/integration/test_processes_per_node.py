"""One node using every core: two gateway processes and two Rasa processes on the embedded
SQLite default (no Redis, one shared tracker store). Each conversation goes to one Rasa process,
missed call and messages alike, and every patient gets their text-back and one answer per
message, read in order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from booking.messaging.rasa_client import RasaClient
from tests.stack import start_stack

pytestmark = pytest.mark.integration

CLINIC_NUMBER = "+441632960001"
QUESTIONS = ("what time do you open?", "do you have parking?")


def user_texts(stack, rasa_url: str, sender_id: str) -> list[str]:
    response = httpx.get(f"{rasa_url}/conversations/{sender_id}/tracker",
                         params={"token": stack.env["RASA_TOKEN"]}, timeout=30)
    response.raise_for_status()
    return [event.get("text") for event in response.json().get("events") or []
            if event["event"] == "user"]


def test_two_gateways_and_two_rasas_share_one_node_each_conversation_in_one_rasa(
        trained_model, tmp_path):
    stack = start_stack(tmp_path, model=trained_model,
                        extra_env={"RASA_PROCESSES": "2", "GATEWAY_PROCESSES": "2"})
    try:
        assert [s.name for s in stack.supervisor.services if s.name.startswith("rasa")] == [
            "rasa", "rasa 2"]
        urls = stack.settings.rasa_urls
        route = RasaClient(base_urls=urls, token=None)
        patients: dict[str, list[str]] = {url: [] for url in urls}
        for n in range(100):  # three patients for each Rasa process
            patient = f"+4477009008{n:02d}"
            chosen = patients[route.base_for(f"riverside:{patient}")]
            if len(chosen) < 3:
                chosen.append(patient)
        everyone = [p for chosen in patients.values() for p in chosen]
        assert len(everyone) == 6

        def converse(patient: str) -> None:
            stack.phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
            stack.phone.wait_for(patient, count=1)
            # They reply at once: the dialogue must still hear of the call first.
            for turn, question in enumerate(QUESTIONS, start=2):
                stack.phone.text(sender=patient, clinic_number=CLINIC_NUMBER, body=question)
                stack.phone.wait_for(patient, count=turn)

        with ThreadPoolExecutor(max_workers=len(everyone)) as pool:
            list(pool.map(converse, everyone))

        for url, chosen in patients.items():
            for patient in chosen:
                told = user_texts(stack, url, f"riverside:{patient}")
                # The missed call (an external event), then both messages, each once.
                assert told[0].startswith("EXTERNAL"), (patient, told)
                assert told[1:] == list(QUESTIONS), (patient, told)
                assert len(stack.phone.sent_to(patient)) == 1 + len(QUESTIONS), patient
    finally:
        stack.stop()


def test_a_conversation_always_goes_to_the_same_rasa_process_and_all_are_used():
    urls = ["http://127.0.0.1:5005", "http://127.0.0.1:5006", "http://127.0.0.1:5007"]
    route = RasaClient(base_urls=urls, token=None)
    senders = [f"riverside:+4477009009{n:02d}" for n in range(60)]
    chosen = [route.base_for(sender) for sender in senders]
    assert chosen == [RasaClient(base_urls=urls, token=None).base_for(s) for s in senders]
    assert set(chosen) == set(urls)
