"""Two gateways and two Rasa servers on one PostgreSQL database (bookings and Rasa's tracker
store) and one Redis lock store: fifty patients texting at once, through either gateway, each
get every message read in the order they sent it, and answered once."""

from __future__ import annotations

import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from booking.models import Direction, InboxItem, InboxState, Message
from stack.supervisor import Supervisor, services
from tests.channels.conftest import twilio_post, wait_until
from tests.integration.test_production_config import postgres_url  # noqa: F401 - a fixture
from tests.stack import free_port, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CLINIC_NUMBER = "+441632960001"
PATIENTS = [f"+4477009007{i:02d}" for i in range(50)]
MESSAGES_EACH = 5
QUESTION = "what time do you open?"


def second_gateway_and_rasa(stack, *, model: Path, run_dir: Path) -> tuple[Supervisor, str]:
    """Another gateway and Rasa server beside the stack's, sharing its database, lock store,
    action server and secrets; returns them and the new gateway's URL."""
    gateway_port, rasa_port = free_port(), free_port()
    gateway = f"http://127.0.0.1:{gateway_port}"
    env = {**stack.env, "GATEWAY_PORT": str(gateway_port), "GATEWAY_PUBLIC_URL": gateway,
           "RASA_PORT": str(rasa_port), "RASA_URL": f"http://127.0.0.1:{rasa_port}"}
    settings = type(stack.settings)(**{key.lower(): value for key, value in env.items()
                                       if key.lower() in type(stack.settings).__fields__})
    run_dir.mkdir(parents=True, exist_ok=True)
    wanted = [s for s in services(settings, model=model, run_dir=run_dir,
                                  with_simulator=False) if s.name in ("rasa", "gateway")]
    supervisor = Supervisor(wanted, env=env, log_dir=run_dir / "logs")
    supervisor.start(timeout=240, stop_on_signals=False)
    return supervisor, gateway


def test_fifty_patients_through_two_gateways_and_two_rasas_in_order_once_each(
        trained_model, tmp_path, postgres_url):  # noqa: F811
    stack = start_stack(tmp_path / "first", model=trained_model, database_url=postgres_url,
                        extra_env={"REDIS_URL": "redis://127.0.0.1:6379/0"})
    second = None
    try:
        second, other_gateway = second_gateway_and_rasa(stack, model=trained_model,
                                                         run_dir=tmp_path / "second")
        gateways = [stack.gateway, other_gateway]

        def send(turn: int, index: int, patient: str) -> int:
            url = f"{gateways[(index + turn) % 2]}/twilio/messaging/sms"
            return twilio_post(url, {"MessageSid": f"SM{patient[1:]}x{turn}", "From": patient,
                                     "To": CLINIC_NUMBER, "Body": QUESTION}).status_code

        # Each round reaches the gateways all at once; a patient's next message follows the
        # answer to their previous webhook, as on a phone.
        with ThreadPoolExecutor(max_workers=50) as pool:
            for turn in range(MESSAGES_EACH):
                statuses = list(pool.map(lambda pair, t=turn: send(t, *pair),
                                         enumerate(PATIENTS)))
                assert statuses == [200] * len(PATIENTS)

        engine = create_engine(postgres_url, future=True)
        with Session(engine) as session:
            def all_answered() -> bool:
                states = session.execute(select(InboxItem.state)).scalars().all()
                session.rollback()  # a fresh snapshot on each look
                return (len(states) == len(PATIENTS) * MESSAGES_EACH
                        and set(states) == {InboxState.answered})

            wait_until(all_answered, timeout=300, message="every message answered")
            items = defaultdict(list)
            for item, sender in session.execute(
                    select(InboxItem, Message.from_number)
                    .join(Message, Message.id == InboxItem.message_id).order_by(InboxItem.id)):
                items[sender].append(f"inbox-{item.id}")
            turns = defaultdict(list)
            for sender_id, data in session.execute(text(
                    "SELECT sender_id, data FROM events WHERE type_name = 'user' ORDER BY id")):
                turns[sender_id.split(":", 1)[1]].append(json.loads(data)["message_id"])
            replies = defaultdict(int)
            for (to_number,) in session.execute(select(Message.to_number).where(
                    Message.direction == Direction.outbound,
                    Message.to_number.in_(PATIENTS))):
                replies[to_number] += 1
        engine.dispose()
        for patient in PATIENTS:
            assert len(items[patient]) == MESSAGES_EACH
            assert turns[patient] == items[patient], patient  # read in order, each once
            assert replies[patient] == MESSAGES_EACH, patient  # answered once each
    finally:
        if second is not None:
            second.stop()
        stack.stop()
