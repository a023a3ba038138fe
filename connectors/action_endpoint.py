"""Rasa's calls to the action server over connections kept alive, one pool per event loop.

Rasa 3.6's `EndpointConfig.request` opens a new aiohttp session, so a new TCP connection, for
every action it runs (two to four per patient message): profiled, about 8% of the Rasa
process's CPU per message (issue 19). `install()` gives the agent's action endpoint a
`KeptAliveEndpoint`: Rasa's own request code (headers, token, TLS, errors), with a session that
stays open for the event loop that made it (an aiohttp session belongs to one loop).

A kept connection can go stale: the action server restarted, or closed it after its idle
timeout just as a request set off on it. aiohttp then says ServerDisconnectedError, and that
request is sent once more on a fresh connection, only when its connection was a reused one
(a new connection that drops is the server failing on this request: Rasa's failed action).
A reused connection also drops when the server dies while running the action; the fresh
connection is then refused, or reaches the restarted server, which runs the action as the
gateway's later delivery of the message would have. A connection is not kept idle longer than
the action server keeps it (Sanic: 5 s), so the server closing idle connections rarely races
a request at all. Whatever still fails is Rasa's failed action as before: the channel rewinds
the turn and the gateway delivers the message again.

The request's JSON (the whole tracker, 20 kB and more by a conversation's end) is encoded
with ujson, Rasa's and Sanic's own dependency: 0.1 ms where the standard library took 0.26 ms.

`answered_recently` tells the channel an action call succeeded a moment ago, so its health
check of the action server can be skipped (connectors/gateway_channel.py says why).
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from types import SimpleNamespace
from typing import Any

import aiohttp
import ujson
from rasa.core.agent import Agent
from rasa.core.constants import DEFAULT_REQUEST_TIMEOUT
from rasa.utils.endpoints import EndpointConfig

# Below the action server's own idle timeout (Sanic's KEEP_ALIVE_TIMEOUT, 5 s), so the client
# drops an idle connection before the server does.
IDLE_SECONDS = 4.0
_HEALTH_CHECK = aiohttp.ClientTimeout(total=2)


async def _note_reuse(_session: aiohttp.ClientSession, context: SimpleNamespace,
                      _params: Any) -> None:
    if context.trace_request_ctx is not None:
        context.trace_request_ctx.reused = True


_REUSE_WATCH = aiohttp.TraceConfig()
_REUSE_WATCH.on_connection_reuseconn.append(_note_reuse)


class _Borrowed:
    """The loop's session for one `async with`, left open at its end."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def __aenter__(self) -> aiohttp.ClientSession:
        return self._session

    async def __aexit__(self, *_: Any) -> None:
        return None


class KeptAliveEndpoint(EndpointConfig):
    """The action endpoint, its connections kept alive per event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                   aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary())
        self._answered_at = float("-inf")

    @classmethod
    def of(cls, endpoint: EndpointConfig) -> KeptAliveEndpoint:
        kept = cls(endpoint.url, endpoint.params, endpoint.headers, endpoint.basic_auth,
                   endpoint.token, endpoint.token_name, endpoint.cafile, **endpoint.kwargs)
        kept.type = endpoint.type
        return kept

    def session(self) -> _Borrowed:  # type: ignore[override]
        """What Rasa's `request` opens and closes around each call: the loop's kept session."""
        return _Borrowed(self._loop_session())

    def _loop_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            # The headers, auth and timeout of Rasa's own session for an endpoint.
            auth = (aiohttp.BasicAuth(self.basic_auth["username"], self.basic_auth["password"])
                    if self.basic_auth else None)
            session = aiohttp.ClientSession(
                headers=self.headers, auth=auth,
                timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT),
                connector=aiohttp.TCPConnector(keepalive_timeout=IDLE_SECONDS),
                trace_configs=[_REUSE_WATCH], json_serialize=ujson.dumps)
            self._sessions[loop] = session
        return session

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        connection = SimpleNamespace(reused=False)
        try:
            answer = await super().request(*args, trace_request_ctx=connection, **kwargs)
        except aiohttp.ServerDisconnectedError:
            if not connection.reused:
                raise
            # The kept connection was closed under the request: nothing reached the server.
            answer = await super().request(*args, **kwargs)
        self._answered_at = time.monotonic()
        return answer

    def answered_recently(self, seconds: float) -> bool:
        """Whether a call to the action server succeeded within the last `seconds`."""
        return time.monotonic() - self._answered_at < seconds

    async def answers_health_check(self) -> bool:
        """Whether the action server answers its health check, on a kept connection."""
        health = self.url.rsplit("/", 1)[0] + "/health"
        try:
            async with self._loop_session().get(health, timeout=_HEALTH_CHECK) as answer:
                return answer.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    async def close(self) -> None:
        """Close the running loop's session (its server is stopping)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()


def _with_kept_alive_endpoint(init: Any) -> Any:
    @functools.wraps(init)
    def __init__(agent: Agent, *args: Any, **kwargs: Any) -> None:
        init(agent, *args, **kwargs)
        if agent.action_endpoint is not None and not isinstance(agent.action_endpoint,
                                                                KeptAliveEndpoint):
            agent.action_endpoint = KeptAliveEndpoint.of(agent.action_endpoint)

    __init__.kept_alive = True  # type: ignore[attr-defined]
    return __init__


def install() -> None:
    """The agent's action endpoint (what its processor runs actions with) kept alive."""
    if not getattr(Agent.__init__, "kept_alive", False):
        Agent.__init__ = _with_kept_alive_endpoint(Agent.__init__)
