"""Rasa sends the action server the domain only for actions that ask for it (`send_domain` in
domain.yml), and none of ours reads it: an action that starts to must ask for it."""

from __future__ import annotations

import ast
from pathlib import Path

from rasa.core.actions.action import RemoteAction
from rasa.shared.core.domain import Domain
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import read_endpoint_config

from booking.settings import Settings
from stack.supervisor import rasa_endpoints

ROOT = Path(__file__).resolve().parents[2]


def domain_readers() -> list[str]:
    """Each action's `run` (in actions/) that reads its `domain` argument."""
    readers = []
    for path in sorted((ROOT / "actions").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "run"
                    and any(arg.arg == "domain" for arg in node.args.args)
                    and any(isinstance(name, ast.Name) and name.id == "domain"
                            and isinstance(name.ctx, ast.Load)
                            for statement in node.body for name in ast.walk(statement))):
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return readers


def test_no_action_reads_the_domain():
    """One that comes to read it gets {} from rasa_sdk: mark it `send_domain: true` in
    domain.yml and let this test say which."""
    assert domain_readers() == []


def test_rasa_sends_the_domain_only_to_actions_that_ask(tmp_path):
    settings = Settings(rasa_token="rasa-secret", action_server_token="actions-secret")
    endpoint = read_endpoint_config(str(rasa_endpoints(settings, tmp_path)), "action_endpoint")
    domain = Domain.load(ROOT / "domain.yml")
    tracker = DialogueStateTracker.from_events("+447700900997", [], slots=domain.slots)
    for name in domain.user_actions:
        call = RemoteAction(name, endpoint)._action_call_format(tracker, domain)
        assert ("domain" in call) == domain.does_custom_action_explicitly_need_domain(name)
