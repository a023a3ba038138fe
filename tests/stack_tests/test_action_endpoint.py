"""Rasa runs actions over one kept-alive connection, and a stale one loses no turn: an action
server that restarted, or dropped a kept connection as a request set off on it, is asked again
on a fresh connection; a request dropped on a fresh connection is Rasa's failed action."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator

import pytest
import rasa.utils.endpoints
from aiohttp import web
from rasa.core.actions.action import RemoteAction
from rasa.core.agent import Agent
from rasa.core.channels.channel import CollectingOutputChannel
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import SlotSet, UserUttered
from rasa.shared.core.slots import AnySlot
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

from connectors import gateway_channel  # installs the endpoint, as in Rasa's process
from connectors.action_endpoint import KeptAliveEndpoint
from tests.stack import free_port

TOKEN_HEADER = {"Authorization": "Bearer action-secret"}


class ActionServerStandIn:
    """An action server that answers every action with one text, and can drop the connection a
    request came on instead (as a server closing an idle connection, or dying, would)."""

    def __init__(self) -> None:
        self.port = free_port()
        # One entry per request: the client's end of its connection.
        self.connections: list[tuple[str, int]] = []
        self.bodies: list[dict] = []
        self.drop_next = 0
        self._runner: web.AppRunner | None = None

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        assert request.headers.get("Authorization") == TOKEN_HEADER["Authorization"]
        self.connections.append(request.transport.get_extra_info("peername"))
        self.bodies.append(await request.json())
        if self.drop_next:
            self.drop_next -= 1
            request.transport.close()
            return web.Response()  # never sent: the connection is gone
        return web.json_response({"events": [], "responses": [{"text": "Tuesday at 10?"}]})

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhook", self._webhook)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"


@pytest.fixture
async def action_server() -> AsyncIterator[ActionServerStandIn]:
    server = ActionServerStandIn()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def endpoint(action_server: ActionServerStandIn) -> AsyncIterator[KeptAliveEndpoint]:
    agent = Agent(action_endpoint=EndpointConfig(action_server.url, headers=TOKEN_HEADER))
    assert isinstance(agent.action_endpoint, KeptAliveEndpoint)
    yield agent.action_endpoint
    await agent.action_endpoint.close()


async def run_action(endpoint: EndpointConfig,
                     tracker: DialogueStateTracker | None = None) -> list:
    tracker = tracker or DialogueStateTracker.from_events("+447700900997", [], slots=[])
    return await RemoteAction("action_offer_slots", endpoint).run(
        CollectingOutputChannel(), TemplatedNaturalLanguageGenerator({}), tracker,
        Domain.empty())


def test_the_request_it_borrows_a_session_for_still_has_the_shape_it_had():
    """Rasa's request opens `self.session()` and closes it after each call: a Rasa upgrade
    that changes that must be looked at, not patched over."""
    source = inspect.getsource(rasa.utils.endpoints.EndpointConfig.request)
    assert "async with self.session() as session:" in source
    assert "**kwargs," in source


async def test_actions_run_over_one_kept_connection(action_server, endpoint):
    for _ in range(3):
        events = await run_action(endpoint)
        assert [event.text for event in events] == ["Tuesday at 10?"]
    assert len(set(action_server.connections)) == 1
    assert endpoint.answered_recently(5.0)


async def test_the_action_server_reads_the_request_rasa_wrote(action_server, endpoint):
    """The request is encoded with ujson: what the action server reads is what Rasa's json
    encoding would have said, words in any script, emoji and slashes included."""
    tracker = DialogueStateTracker.from_events("+447700900997", [
        UserUttered("¿mañana a las 10/11? 🦷 \"ok\" </b>", timestamp=1000.25,
                    parse_data={"intent": {"name": "inform", "confidence": 0.1 + 0.2}}),
        SlotSet("wish", {"days": ["jeudi"], "after": 17.5, "none": None}, timestamp=1001.0)],
        slots=[AnySlot("wish", mappings=[])])
    await run_action(endpoint, tracker)

    body = RemoteAction("action_offer_slots", endpoint)._action_call_format(
        tracker, Domain.empty())
    assert action_server.bodies == [json.loads(json.dumps(body))]


async def test_an_action_server_that_restarted_loses_no_turn(action_server, endpoint):
    await run_action(endpoint)
    await action_server.stop()
    await action_server.start()
    assert [event.text for event in await run_action(endpoint)] == ["Tuesday at 10?"]


async def test_a_kept_connection_dropped_under_a_request_is_asked_again_once(action_server,
                                                                             endpoint):
    await run_action(endpoint)
    action_server.drop_next = 1
    assert [event.text for event in await run_action(endpoint)] == ["Tuesday at 10?"]
    first, dropped, fresh = action_server.connections
    assert first == dropped != fresh


async def test_a_fresh_connection_dropped_is_a_failed_action_not_asked_again(action_server,
                                                                              endpoint):
    action_server.drop_next = 1
    with pytest.raises(RasaException, match="action_offer_slots"):
        await run_action(endpoint)
    assert len(action_server.connections) == 1


async def test_the_health_check_goes_over_the_kept_session(action_server, endpoint):
    assert await endpoint.answers_health_check()
    await action_server.stop()
    assert not await endpoint.answers_health_check()
    await action_server.start()  # for the fixture to stop


async def test_the_channel_skips_its_check_just_after_an_action_answered(action_server,
                                                                          monkeypatch):
    """A failing action rewinds the turn all the same (connectors/gateway_channel.py)."""
    monkeypatch.setattr(gateway_channel, "RECENT_ANSWER_SECONDS", 600)  # a slow machine too
    agent = Agent(action_endpoint=EndpointConfig(action_server.url, headers=TOKEN_HEADER))
    try:
        await action_server.stop()
        assert not await gateway_channel._action_server_up(agent)
        await action_server.start()
        await run_action(agent.action_endpoint)
        await action_server.stop()
        assert await gateway_channel._action_server_up(agent)
    finally:
        await action_server.start()  # for the fixture to stop
        await agent.action_endpoint.close()
