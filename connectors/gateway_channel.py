"""How Rasa receives patient messages: from the gateway only, and answers in the response.

The gateway's inbox posts one message at a time per patient to `/webhooks/ringback/webhook`
with the shared secret (`RASA_TOKEN`); Rasa's channel webhooks are outside its `--auth-token`,
so this channel checks the secret itself. The replies come back in the response, for the
gateway to store with the message's completion, so a message is answered once or not at all.

Rasa 3.6 logs an action that failed (the action server down, a crash in an action) and
carries on as if it had run, so a message is not handed to the dialogue while the action
server is down: the answer is 503 and the gateway delivers it again later. An action failing
mid-turn all the same is a 503 too, with the turn rewound (a `rewind` event).

A message is read once, even when it comes twice: the gateway sends each inbox item under its
own message id, and delivers it again when it got no answer (this Rasa process was killed after
saving the turn, the connection broke, the gateway itself died). Under the conversation's lock
(Redis across processes) the channel first looks for that id in the tracker; a turn already
taken is answered with the replies it gave then, never read again.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import (
    ActionExecuted,
    BotUttered,
    UserUtteranceReverted,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from booking.messaging.inbox import patient_text
from booking.settings import get_settings
from connectors import (
    action_endpoint,
    action_response_check,
    event_classes,
    graph_runner,
    tracker_store,
)
from connectors.action_endpoint import KeptAliveEndpoint
from connectors.tracker_store import TrackerStoreUnavailable

if TYPE_CHECKING:
    from rasa.core.agent import Agent

logger = logging.getLogger(__name__)
# This module is what Rasa's process imports of ours at start (credentials.yml names it).
action_endpoint.install()
action_response_check.install()
event_classes.install()
graph_runner.install()
tracker_store.install()

# The words Rasa's processor logs when it swallows an action's failure (rasa 3.6).
_ACTION_FAILED = "Encountered an exception while running action"
_failed_actions: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "failed_actions", default=None)


class _ActionFailureWatch(logging.Handler):
    """Notes, for the message being handled in this task, that an action failed."""

    def emit(self, record: logging.LogRecord) -> None:
        failures = _failed_actions.get()
        if failures is not None and record.getMessage().startswith(_ACTION_FAILED):
            failures.append(record.getMessage())


logging.getLogger("rasa.core.processor").addHandler(_ActionFailureWatch(logging.ERROR))


def _authorised(request: Request) -> bool:
    expected = get_settings().rasa_token
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    # No configured secret refuses everything: the channel is never open by mistake.
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def reply_texts(messages: list[dict[str, Any]]) -> list[str]:
    """What the patient reads of each bot message: text, numbered buttons, image links."""
    texts = []
    for message in messages:
        parts = [message.get("text") or ""]
        buttons = message.get("buttons") or []
        parts += [f"{index}. {button.get('title', '')}"
                  for index, button in enumerate(buttons, start=1)]
        if message.get("image"):
            parts.append(str(message["image"]))
        text = "\n".join(part for part in parts if part)
        if text:
            texts.append(text)
    return texts


# An action call that succeeded this recently stands in for the health check. Skipping the
# check is safe: should the action server have died since, the turn's first action fails, the
# failure watch sees it, the turn is rewound and the answer is a 503 all the same (and a turn
# that runs no action did not need the server). Under load that is almost every message.
RECENT_ANSWER_SECONDS = 1.0


async def _action_server_up(agent: Agent) -> bool:
    """Whether the action server answers (it sits beside Rasa: a few ms), on a connection kept
    alive (connectors/action_endpoint.py)."""
    endpoint = agent.action_endpoint
    if not isinstance(endpoint, KeptAliveEndpoint):
        return False  # Rasa's process always has one (endpoints.yml): without it, no action runs
    return (endpoint.answered_recently(RECENT_ANSWER_SECONDS)
            or await endpoint.answers_health_check())


class WholeMessages(CollectingOutputChannel):
    """Collects each bot message as one text: Rasa's collector splits at blank lines, and an
    answer with the booking question after it is one SMS, as the actions wrote it."""

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self._persist_message(self._message(recipient_id, text=text.strip()))


class GatewayInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "ringback"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        # The secret comes from the environment (booking.settings), never credentials.yml.
        return cls()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        hook = Blueprint("ringback_webhook", __name__)

        # The readiness check of a Rasa process (open, like Rasa's own "/"): a model loaded
        # and its tracker store answering.
        @hook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            agent = getattr(request.app.ctx, "agent", None)
            if agent is None or not agent.is_ready():
                return response.json({"status": "loading"}, status=503)
            if not await asyncio.to_thread(agent.tracker_store.reachable):
                return response.json({"status": "tracker store unreachable"}, status=503)
            return response.json({"status": "ok"})

        @hook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if not _authorised(request):
                return response.json({"error": "unauthorised"}, status=401)
            payload = request.json if isinstance(request.json, dict) else {}
            sender, text = payload.get("sender"), payload.get("text")
            if not isinstance(sender, str) or not isinstance(text, str) or not sender:
                return response.json({"error": "sender and text are required"}, status=400)
            if patient_text(text) != text:
                return response.json({"error": "text must not start with a command"},
                                     status=400)
            agent = request.app.ctx.agent
            if not await _action_server_up(agent):
                return response.json({"error": "the action server is not answering"},
                                     status=503)
            if not agent.is_ready():
                return response.json({"error": "no model loaded"}, status=503)
            collector = WholeMessages()
            message = UserMessage(
                text, collector, sender, input_channel=self.name(),
                message_id=payload.get("message_id"), metadata=payload.get("metadata") or {})

            async def read() -> HTTPResponse:
                # What Rasa's own channel handler does (agent.handle_message), after a look for
                # an earlier reading inside the same lock, so two deliveries cannot both read it.
                if message.message_id:
                    tracker = await agent.tracker_store.look(sender)
                    earlier = tracker and replies_given(tracker, message.message_id)
                    if earlier is not None:
                        return response.json({"replies": reply_texts(earlier)})
                await agent.processor.handle_message(message)
                return response.json({"replies": reply_texts(collector.messages)})

            return await _one_turn(agent, sender, read)

        @hook.route("/event", methods=["POST"])
        async def receive_event(request: Request) -> HTTPResponse:
            """An external event (the missed call) for the dialogue's context: Rasa's own
            trigger_intent, but like a message refused while the action server is down and
            rewound when an action fails, so the gateway delivers it again."""
            if not _authorised(request):
                return response.json({"error": "unauthorised"}, status=401)
            payload = request.json if isinstance(request.json, dict) else {}
            sender, intent = payload.get("sender"), payload.get("intent")
            agent = request.app.ctx.agent
            if not isinstance(sender, str) or not sender or intent not in (
                    agent.domain.intents if agent.is_ready() else ()):
                return response.json({"error": "sender and a known intent are required"},
                                     status=400)
            if not await _action_server_up(agent):
                return response.json({"error": "the action server is not answering"},
                                     status=503)

            async def tell() -> HTTPResponse:
                tracker = await agent.processor.fetch_tracker_and_update_session(sender)
                await agent.trigger_intent(intent_name=intent,
                                           entities=payload.get("entities") or [],
                                           output_channel=CollectingOutputChannel(),
                                           tracker=tracker)
                return response.json({"done": True})

            return await _one_turn(agent, sender, tell)

        @hook.listener("after_server_stop")
        async def close_action_server_connections(app: Any, _loop: Any) -> None:
            endpoint = getattr(getattr(app.ctx, "agent", None), "action_endpoint", None)
            if isinstance(endpoint, KeptAliveEndpoint):
                await endpoint.close()

        return hook


async def _one_turn(agent: Agent, sender: str,
                    take: Callable[[], Awaitable[HTTPResponse]]) -> HTTPResponse:
    """One turn of a conversation, under its lock: `take` takes it and says the answer. A turn
    whose action failed is rewound, and a tracker store that does not answer leaves nothing
    behind: either is a 503, and the gateway delivers the message or event again later."""
    failures = _watch_action_failures()
    try:
        async with agent.lock_store.lock(sender):
            with tracker_store.one_turn():
                answer = await take()
            if failures:
                await _rewind(agent, sender)
    except TrackerStoreUnavailable as exc:
        logger.warning("turn not taken: %s", exc)
        return response.json({"error": "the tracker store is not answering"}, status=503)
    if failures:
        return response.json({"error": "an action failed", "detail": failures[:3]},
                             status=503)
    return answer


def _watch_action_failures() -> list[str]:
    """The list the failure watch fills for the request being handled in this task."""
    failures: list[str] = []
    _failed_actions.set(failures)
    return failures


def replies_given(tracker: DialogueStateTracker, message_id: str) -> list[dict] | None:
    """The bot messages that answered the message `message_id`, as the collector held them;
    None if the tracker has no such message, or its turn was rewound."""
    events = list(tracker.events)
    start = next((index for index in range(len(events) - 1, -1, -1)
                  if isinstance(events[index], UserUttered)
                  and events[index].message_id == message_id), None)
    if start is None:
        return None
    replies = []
    for event in events[start + 1:]:
        if isinstance(event, UserUtteranceReverted):
            return None
        if isinstance(event, UserUttered):
            break
        if isinstance(event, BotUttered):
            replies.append({**event.data, "text": (event.text or "").strip()})
    return replies


async def _rewind(agent: Agent, sender: str) -> None:
    """Undo the failed turn in the tracker, so the message is read afresh when it comes back.

    The rewind also undoes the action_listen before the message (rasa's applied_events), so a
    new one closes the turn again: without it the message coming back is read as part of the
    old turn and the bot only listens (the fault tests caught it after an action server
    restart)."""
    tracker = await agent.tracker_store.retrieve(sender)
    if tracker is not None:
        tracker.update(UserUtteranceReverted())
        tracker.update(ActionExecuted(ACTION_LISTEN_NAME))
        await agent.tracker_store.save(tracker)
