"""The dialogue states carried on from a tracker's last replay are Rasa's own replay's, for
every prefix of conversations made of the project's stories and rules, with rewinds, reverted
actions, new sessions and a loop among them, and with the policies' ways of asking."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActionReverted,
    ActiveLoop,
    Event,
    SessionStarted,
    SlotSet,
    UserUtteranceReverted,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader

from connectors import dialogue_states

ROOT = Path(__file__).resolve().parents[2]
STORY_FILES = [*sorted((ROOT / "data" / "stories").glob("*.yml")),
               *sorted((ROOT / "data" / "rules").glob("*.yml")),
               ROOT / "tests" / "test_stories.yml"]
RASAS = dialogue_states.RASAS_OWN
WAYS_OF_ASKING = [
    {},  # RulePolicy
    {"ignore_rule_only_turns": True,  # MemoizationPolicy
     "rule_only_data": {"rule_only_slots": [], "rule_only_loops": []}},
    {"ignore_rule_only_turns": True, "omit_unset_slots": True,
     "rule_only_data": {"rule_only_slots": ["awaiting"], "rule_only_loops": []}},
]


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(ROOT / "domain.yml")


def session_start() -> list[Event]:
    return [ActionExecuted(ACTION_SESSION_START_NAME), SessionStarted(),
            ActionExecuted(ACTION_LISTEN_NAME)]


def conversations(domain: Domain) -> list[list[Event]]:
    """Each story and rule file's steps one after the other, as one conversation, with what
    the channel and Rasa do besides: a rewound turn, a reverted action, a rule's hidden turn,
    a new session; and one conversation with a loop."""
    played = []
    for path in STORY_FILES:
        events = session_start()
        for index, step in enumerate(YAMLStoryReader(domain).read_from_file(path)):
            events += [event for event in step.events
                       if isinstance(event, (UserUttered, ActionExecuted, SlotSet))]
            if index % 5 == 1:
                events += [UserUtteranceReverted(), ActionExecuted(ACTION_LISTEN_NAME)]
            elif index % 5 == 2:
                events += [ActionExecuted("action_clarify", hide_rule_turn=True),
                           ActionReverted()]
            elif index % 5 == 3:
                events += [ActionExecuted("action_answer_faq", hide_rule_turn=True),
                           ActionExecuted(ACTION_LISTEN_NAME, hide_rule_turn=True)]
            elif index % 5 == 4:
                events += session_start()
        played.append(events)
    loop = [ActiveLoop("booking_form"), ActionExecuted("booking_form")]
    played.append([*played[0][:12], *loop, *played[0][12:20], ActionExecuted("booking_form"),
                   *played[0][20:30], *loop, ActionExecuted("booking_form"), ActiveLoop(None),
                   *played[0][30:]])
    return played


def aliasing(states: list[dict]) -> list[dict]:
    """Which parts of the states are one object (the featurizer changes them in place)."""
    first_seen: dict[int, int] = {}
    return [{kind: first_seen.setdefault(id(part), len(first_seen))
             for kind, part in state.items()} for state in states]


def test_every_prefix_of_every_conversation_has_rasas_states(domain):
    compared = 0
    for events in conversations(domain):
        tracker = DialogueStateTracker("someone", domain.slots)
        for event in events:
            tracker.update(event)
            for asked in WAYS_OF_ASKING:
                ours = dialogue_states.states_for_tracker_history(domain, tracker, **asked)
                rasas = RASAS(domain, tracker, **asked)
                assert ours == rasas
                assert aliasing(ours) == aliasing(rasas)
                compared += 1
    assert compared > 1000


def test_changing_an_answer_leaves_the_next_one_as_it_was(domain):
    tracker = DialogueStateTracker("someone", domain.slots)
    for event in conversations(domain)[0][:20]:
        tracker.update(event)
    for state in dialogue_states.states_for_tracker_history(domain, tracker):
        for part in state.values():
            part.clear()
    assert dialogue_states.states_for_tracker_history(domain, tracker) == RASAS(domain, tracker)


def test_installed_in_rasas_process_over_the_method_of_rasas_version():
    import connectors.gateway_channel  # noqa: F401 - installs it, as in Rasa's process

    assert Domain.states_for_tracker_history is dialogue_states.states_for_tracker_history
    # The loop copied into _ReplayedStates._take is Rasa 3.6's: a change must be looked at.
    assert "last_ml_action_sub_state = self._get_prev_action_sub_state(tr)" in (
        inspect.getsource(RASAS))
    assert "for tr, hide_rule_turn in tracker.generate_all_prior_trackers():" in (
        inspect.getsource(RASAS))
