"""One node using every core: two gateway processes and two Rasa processes on the embedded
SQLite default (no Redis). Each conversation lives in one Rasa process, missed call and
messages alike, and every patient gets their text-back and one answer per message, in order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from booking.messaging.rasa_client import RasaClient
from tests.channels.conftest import wait_until
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
            # As a patient's typing time would: the dialogue hears of the call (after the
            # text-back is out) before their first reply.
            wait_until(lambda: user_texts(stack, route.base_for(f"riverside:{patient}"),
                                          f"riverside:{patient}"),
                       message=f"the missed call of {patient} in its Rasa process")
            for turn, question in enumerate(QUESTIONS, start=2):
                stack.phone.text(sender=patient, clinic_number=CLINIC_NUMBER, body=question)
                stack.phone.wait_for(patient, count=turn)

        with ThreadPoolExecutor(max_workers=len(everyone)) as pool:
            list(pool.map(converse, everyone))

        for url, chosen in patients.items():
            other = next(u for u in urls if u != url)
            for patient in chosen:
                sender_id = f"riverside:{patient}"
                told = user_texts(stack, url, sender_id)
                # The missed call (an external event) and both messages, in this process only.
                assert told[0].startswith("EXTERNAL"), (patient, told)
                assert told[1:] == list(QUESTIONS), (patient, told)
                assert user_texts(stack, other, sender_id) == [], patient
                assert len(stack.phone.sent_to(patient)) == 1 + len(QUESTIONS), patient
    finally:
        stack.stop()
