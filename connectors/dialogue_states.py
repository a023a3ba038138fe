"""Rasa's dialogue states of a tracker, carried on from the last prediction instead of replayed.

Every policy featurizes the conversation for every prediction: Rasa 3.6's
`Domain.states_for_tracker_history` replays the tracker's events from the first into a fresh
copy and takes a state before each action. A patient message runs two predictions and the
policies ask three to five times, so the whole session was replayed that often: profiled,
about 70% of a prediction and a fifth of the Rasa process's CPU per message (issue 19).

`install()` keeps, per tracker and per way of asking (the policies ask two ways), the replay
where it stopped: the copy, the states taken and the loop's two variables. The next question
about the same tracker feeds in only the events added since, which is what the full replay
would do with them when they are events Rasa's `applied_events` keeps as they come: anything
but a restart, a session start, a revert or a loop (a loop's name changes how earlier actions
are applied). Such an event, a tracker whose seen events are no longer its first ones, or a new
tracker, and the replay starts again from the tracker's applied events, as Rasa's does.

The policies change the states they are given (Rasa's featurizer drops the text or the intent
of the user's part in place), so each answer is a fresh copy of the kept states, sharing
between them what Rasa's own answer shares. The loop's body is Rasa's, line for line
(`_ReplayedStates._take`); Rasa's version is pinned and the test of this module compares the
answers with Rasa's own replay for every prefix of every conversation it plays.
"""

from __future__ import annotations

import weakref
from typing import Any, cast

import rasa.shared.core.constants as core_constants
from rasa.shared.core.domain import Domain, State, SubState
from rasa.shared.core.events import (
    ActionExecuted,
    ActionReverted,
    ActiveLoop,
    Event,
    Restarted,
    SessionStarted,
    UserUtteranceReverted,
)
from rasa.shared.core.trackers import DialogueStateTracker

# What install() replaces (the test of this module compares the answers with it).
RASAS_OWN = Domain.states_for_tracker_history
# Events Rasa's applied_events does not simply keep in order: after one, replay afresh.
_REPLAYED_AFRESH = (Restarted, SessionStarted, ActionReverted, UserUtteranceReverted, ActiveLoop)

_Asked = tuple[bool, bool, Any]  # omit_unset_slots, ignore_rule_only_turns, rule_only_data


class _ReplayedStates:
    """Rasa's states_for_tracker_history for one tracker and one way of asking, paused after
    the events taken so far."""

    def __init__(self, domain: Domain, tracker: DialogueStateTracker, omit_unset_slots: bool,
                 ignore_rule_only_turns: bool, rule_only_data: dict[str, Any] | None) -> None:
        self._domain = domain
        self._omit_unset_slots = omit_unset_slots
        self._ignore_rule_only_turns = ignore_rule_only_turns
        self._rule_only_data = rule_only_data
        self._replayed = tracker.init_copy()
        self._states: list[State] = []
        self._last_ml_action_sub_state: SubState | None = None
        self._turn_was_hidden = False
        self._seen = len(tracker.events)
        self._last_seen = tracker.events[-1] if tracker.events else None
        for event in tracker.applied_events():
            self._apply(event)
        # A loop's name anywhere changes how its actions are applied: always replay afresh.
        self._goes_on = not any(isinstance(event, ActiveLoop) for event in tracker.events)

    def went_on_with(self, domain: Domain, tracker: DialogueStateTracker) -> bool:
        """Take in the events added to `tracker` since; False if only a fresh replay can."""
        events = tracker.events
        if (not self._goes_on or domain is not self._domain or len(events) < self._seen
                or (self._seen and events[self._seen - 1] is not self._last_seen)):
            return False
        added = list(events)[self._seen:]
        if any(isinstance(event, _REPLAYED_AFRESH) for event in added):
            return False
        for event in added:
            self._apply(event)
        self._seen = len(events)
        self._last_seen = events[-1] if events else None
        return True

    def states(self) -> list[State]:
        """The states of every turn so far and the current one, as Rasa's replay answers."""
        kept = (self._last_ml_action_sub_state, self._turn_was_hidden)
        states = list(self._states)
        self._take(self._replayed, False, states)  # Rasa's last `yield tracker, False`
        self._last_ml_action_sub_state, self._turn_was_hidden = kept
        copies: dict[int, SubState] = {}
        return [{kind: copies.setdefault(id(sub_state), dict(sub_state))  # type: ignore[misc]
                 for kind, sub_state in state.items()}
                for state in states]

    def _apply(self, event: Event) -> None:
        # generate_all_prior_trackers: the tracker as it was before each action.
        if isinstance(event, ActionExecuted):
            self._take(self._replayed, event.hide_rule_turn, self._states)
        self._replayed.update(event)

    def _take(self, tr: DialogueStateTracker, hide_rule_turn: bool, states: list[State]
              ) -> None:
        """The body of Rasa 3.6's loop in Domain.states_for_tracker_history."""
        domain = self._domain
        if self._ignore_rule_only_turns:
            if not self._turn_was_hidden:
                self._last_ml_action_sub_state = domain._get_prev_action_sub_state(tr)
            if not tr.followup_action and tr.latest_action_name != tr.active_loop_name:
                self._turn_was_hidden = hide_rule_turn
            if self._turn_was_hidden:
                return
        state = domain.get_active_state(tr, omit_unset_slots=self._omit_unset_slots)
        if self._ignore_rule_only_turns:
            domain._remove_rule_only_features(state, self._rule_only_data)
            if states:
                domain._substitute_rule_only_user_input(state, states[-1])
            if self._last_ml_action_sub_state:
                state[core_constants.PREVIOUS_ACTION] = cast(
                    SubState, self._last_ml_action_sub_state)
        states.append(domain._clean_state(state))


# The replays of each tracker alive, by way of asking.
_replays: dict[int, dict[_Asked, _ReplayedStates]] = {}


def _replays_of(tracker: DialogueStateTracker) -> dict[_Asked, _ReplayedStates]:
    replays = _replays.get(id(tracker))
    if replays is None:
        replays = _replays[id(tracker)] = {}
        weakref.finalize(tracker, _replays.pop, id(tracker), None)
    return replays


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((key, _frozen(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(_frozen(item) for item in value)
    return value


def states_for_tracker_history(domain: Domain, tracker: DialogueStateTracker,
                               omit_unset_slots: bool = False,
                               ignore_rule_only_turns: bool = False,
                               rule_only_data: dict[str, Any] | None = None) -> list[State]:
    """Domain.states_for_tracker_history, carried on from the tracker's last replay."""
    replays = _replays_of(tracker)
    asked = (omit_unset_slots, ignore_rule_only_turns, _frozen(rule_only_data))
    replay = replays.get(asked)
    if replay is None or not replay.went_on_with(domain, tracker):
        replay = replays[asked] = _ReplayedStates(domain, tracker, omit_unset_slots,
                                                  ignore_rule_only_turns, rule_only_data)
    return replay.states()


def install() -> None:
    Domain.states_for_tracker_history = states_for_tracker_history
