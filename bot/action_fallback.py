"""When the action server is away, the customer still hears from us, and can still reach a person.

Rasa logs a custom action that could not reach the action server and goes on
without its events, so a customer whose order lookup hit a dead action server
got silence. Installed by ``bot.server``, this wraps ``RemoteAction.run``:
when the action server does not answer (refused, reset, timed out, 5xx) the
customer gets an apology with a "talk to a person" button, in their language
(``utter_actions_unavailable``). The handoff is itself an action-server
action, so ``action_handoff`` and the core fallback (which hands off) then
run here, in the Rasa process, with the same code (actions/handoff.py): the
request reaches the queue while the action server is down. A form's
validation action gets the apology and its candidate slots cleared, so the
form asks again instead of taking values nobody checked.

A hung action server (accepting, never answering) counts as away too: Rasa
waits 5 minutes for an answer, holding the conversation's lock all that time,
so the wrapper gives up after ``ACTION_TIMEOUT_SECONDS`` (20 s by default).
An action that finishes on the action server after that still does its work;
the customer has been told something went wrong and can ask again (resends
are idempotent, see actions/cards.py).

ActionExecutionRejection (a form rejecting its turn) is Rasa's own signal and
passes through untouched.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, List

import aiohttp
from rasa.core.actions.action import ActionExecutionRejection, RemoteAction, create_bot_utterance
from rasa.shared.core.events import Event, SlotSet, deserialise_events
from rasa.shared.core.trackers import DialogueStateTracker, EventVerbosity
from rasa.shared.exceptions import RasaException

logger = logging.getLogger(__name__)

APOLOGY = "utter_actions_unavailable"
# these hand off; running them here keeps the way to a person open
HANDOFF_ACTIONS = frozenset({"action_handoff", "action_default_fallback"})
_INSTALLED = "_cs_action_fallback"
# seconds a remote action may take (None: Rasa's own 5 minutes); set by install()
_limit: float | None = None


def action_server_away(error: BaseException) -> bool:
    """True when the error says the action server did not answer (not: the action said no)."""
    if isinstance(error, ActionExecutionRejection):
        return False
    if isinstance(error, (asyncio.TimeoutError, aiohttp.ClientError)):
        return True
    if isinstance(error, RasaException):
        cause = error.__cause__ or error.__context__
        return isinstance(cause, (asyncio.TimeoutError, aiohttp.ClientError))
    return False


def _trailing_slots(tracker: DialogueStateTracker) -> list[str]:
    """Slots a form's validation was asked to check: the SlotSet events at the end of its tracker."""
    names: list[str] = []
    for event in reversed(tracker.events):
        if not isinstance(event, SlotSet):
            break
        if event.key != "requested_slot":
            names.append(event.key)
    return names


async def _apology(nlg: Any, tracker: DialogueStateTracker, output_channel: Any) -> List[Event]:
    generated = await nlg.generate(APOLOGY, tracker, output_channel.name())
    return [create_bot_utterance(generated)] if generated else []


async def _hand_off_here(
    action: RemoteAction, output_channel: Any, nlg: Any, tracker: DialogueStateTracker
) -> List[Event]:
    from rasa_sdk import Tracker
    from rasa_sdk.executor import CollectingDispatcher

    from actions.handoff import ActionHandoff
    from handoff.records import Reason

    dispatcher = CollectingDispatcher()
    sdk_tracker = Tracker.from_dict(tracker.current_state(EventVerbosity.ALL))
    events = await ActionHandoff().hand_off(dispatcher, sdk_tracker, reason=Reason.ACTION_FAILURE)
    messages = await action._utter_responses(dispatcher.messages, output_channel, nlg, tracker)
    return list(messages) + deserialise_events(events)


async def when_away(
    action: RemoteAction, output_channel: Any, nlg: Any, tracker: DialogueStateTracker
) -> List[Event]:
    """What a turn does instead of silence when ``action`` could not reach the action server."""
    name = action.name()
    if name in HANDOFF_ACTIONS:
        try:
            return await _hand_off_here(action, output_channel, nlg, tracker)
        except Exception:  # Redis away too: the apology is all we can give
            logger.exception("conversation %s: handoff in the Rasa process failed", tracker.sender_id)
    events = await _apology(nlg, tracker, output_channel)
    if name.startswith("validate_"):
        events += [SlotSet(slot, None) for slot in _trailing_slots(tracker)]
    return events


def install(timeout: float | None = None) -> None:
    """Wrap RemoteAction.run once per process; ``timeout`` (s) defaults to ACTION_TIMEOUT_SECONDS.

    Installing again only changes the limit (tests set a short one and put it back).
    """
    global _limit
    if timeout is None:
        from common.settings import Settings

        timeout = Settings.from_env().action_timeout_seconds
    _limit = timeout if timeout > 0 else None
    if getattr(RemoteAction.run, _INSTALLED, False):
        return
    original = RemoteAction.run

    async def run(
        self: RemoteAction, output_channel: Any, nlg: Any, tracker: Any, domain: Any
    ) -> List[Event]:
        try:
            return await asyncio.wait_for(original(self, output_channel, nlg, tracker, domain), _limit)
        except Exception as error:
            if not action_server_away(error):
                raise
            logger.warning(
                "conversation %s: action server away while running %s (%s); answering without it",
                tracker.sender_id,
                self.name(),
                error or type(error).__name__,  # a timeout's message is empty
            )
            return await when_away(self, output_channel, nlg, tracker)

    setattr(run, _INSTALLED, True)
    RemoteAction.run = run  # type: ignore[method-assign]
