"""Redis tracker store whose cost per turn does not grow with the conversation.

Rasa's RedisTrackerStore keeps a conversation as one JSON document. Every turn
reads and parses all of it twice (``retrieve``, then ``save`` to diff and
merge), writes all of it back, and the policies then replay every event to
build their states, so turn 200 of a support chat costs ~9x turn 1
(bench/long_conversation.py). Agent chats make this worse: every agent line
is a tracker event.

Here a conversation is an append-only Redis list of events plus a *window*:
a turn loads only the latest events (``WINDOW_EVENTS``, at least a dozen
turns, while TED looks at 5 and rules at fewer) preceded by a few restoring
events that rebuild the slots, the active form, a pause and a pending
follow-up action as they were where the window starts. ``save`` appends only
the new events and publishes exactly those to the event broker. Once the
window has grown to ``MOVE_AFTER`` events it moves forward to the
``action_listen`` nearest ``WINDOW_EVENTS`` from the end.

``retrieve_full_tracker`` (Rasa's tracker API, exports, the console's history)
still returns every event. Key names are in ``common.tracker_keys``.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any, Dict, Iterable, List, Optional, Text, Type

from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import SerializedTrackerAsText, TrackerStore
from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActiveLoop,
    ConversationPaused,
    Event,
    FollowupAction,
    LoopInterrupted,
    SlotSet,
)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.utils.common import all_subclasses
from redis import asyncio as aioredis

from common.redis_options import resilient_options
from common.tracker_keys import RESTORED_BEFORE, events_key, window_key

logger = logging.getLogger(__name__)

WINDOW_EVENTS = 60
MOVE_AFTER = 120

# which tracker events (not restoring ones) were loaded from which stored index
_LOADED = "_cs_loaded"  # tracker.events[:n] were loaded; the rest is new
_STORED = "_cs_stored"  # how many events the list held when the tracker was loaded / last saved
_BASE = "_cs_base"  # stored index of tracker.events[_FIRST]
_FIRST = "_cs_first"  # tracker position of the first stored (not restoring) event


@lru_cache(maxsize=1)
def _event_classes() -> Dict[str, Type[Event]]:
    # Event.from_parameters walks every subclass (inspect.isabstract on each)
    # for every event; with hundreds of events that was half of a turn.
    classes: Dict[str, Type[Event]] = {}
    for cls in all_subclasses(Event):
        classes.setdefault(cls.type_name, cls)
    return classes


def event_from_dict(parameters: Dict[str, Any]) -> Optional[Event]:
    """An event from its dict; None for an unknown or unreadable one (logged, not fatal)."""
    try:
        cls = _event_classes().get(parameters.get("event"))
        if cls is None:
            return Event.from_parameters(parameters)
        return cls._from_parameters(parameters)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        logger.warning("skipping an unreadable tracker event (%s): %.200r", error, parameters)
        return None


def decode_event(raw: bytes | str) -> Optional[Event]:
    """One stored (JSON) event; None for an unknown or unreadable one."""
    try:
        parameters = json.loads(raw)
    except ValueError as error:
        logger.warning("skipping an unreadable tracker event (%s): %.200r", error, raw)
        return None
    return event_from_dict(parameters) if isinstance(parameters, dict) else None


def encode_event(event: Event) -> str:
    return json.dumps(event.as_dict(), ensure_ascii=False)


def restoring_events(tracker: DialogueStateTracker, index: int) -> List[Event]:
    """Events that rebuild ``tracker``'s state on an empty tracker, marked with ``index``."""
    metadata = {RESTORED_BEFORE: index}
    events: List[Event] = [
        SlotSet(name, slot.value, metadata=dict(metadata))
        for name, slot in tracker.slots.items()
        if slot.has_been_set or slot.value != slot.initial_value
    ]
    loop = tracker.active_loop
    if loop is not None and tracker.active_loop_name:
        # the form's trigger message is not restored: forms use it only on the turn they start
        events.append(ActiveLoop(loop.name, metadata=dict(metadata)))
        if loop.is_interrupted:
            events.append(LoopInterrupted(True, metadata=dict(metadata)))
        if loop.rejected:
            events.append(ActionExecutionRejected(str(loop.name), metadata=dict(metadata)))
    if tracker.is_paused():
        events.append(ConversationPaused(metadata=dict(metadata)))
    if tracker.followup_action:
        events.append(FollowupAction(tracker.followup_action, metadata=dict(metadata)))
    if not events:
        # the marker must exist even when nothing needs restoring
        events.append(SlotSet("session_started_metadata", None, metadata=dict(metadata)))
    return events


def _is(event: Event, action: str) -> bool:
    return isinstance(event, ActionExecuted) and event.action_name == action


class WindowedRedisTrackerStore(TrackerStore, SerializedTrackerAsText):
    """Append-only events and a moving window; see the module docstring."""

    def __init__(
        self,
        domain: Domain,
        host: Text = "localhost",
        port: int = 6379,
        db: int = 0,
        password: Optional[Text] = None,
        event_broker: Optional[EventBroker] = None,
        record_exp: Optional[float] = None,
        key_prefix: Optional[Text] = None,
        window_events: int = WINDOW_EVENTS,
        move_after: int = MOVE_AFTER,
        **kwargs: Dict[Text, Any],
    ) -> None:
        super().__init__(domain, event_broker, **kwargs)
        self.client = aioredis.Redis(
            host=host or "localhost",
            port=int(port or 6379),
            db=int(db or 0),
            password=password or None,
            # after a Redis restart a dead pooled connection failed a save pipeline, Rasa fell
            # back to its in-memory store and the turn was lost (common.redis_options)
            **resilient_options(socket_timeout=5),
        )
        self.prefix = str(key_prefix or "cs")
        self.record_exp = int(record_exp) if record_exp else None
        self.window_events = int(window_events)
        self.move_after = max(int(move_after), self.window_events + 10)

    # -- reading ---------------------------------------------------------------

    async def _window(self, sender_id: Text) -> tuple[int, List[Event], List[bytes]]:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(window_key(self.prefix, sender_id))
            pipe.llen(events_key(self.prefix, sender_id))
            raw_window, length = await pipe.execute()
        start, restore = 0, []
        if raw_window:
            window = json.loads(raw_window)
            start = int(window["from"])
            restore = [e for e in map(event_from_dict, window["restore"]) if e]
        if start > length:  # the list was cut by hand: fall back to all of it
            start, restore = 0, []
        stored = await self.client.lrange(events_key(self.prefix, sender_id), start, -1)
        return start, restore, stored

    def _tracker(
        self, sender_id: Text, start: int, restore: List[Event], stored: List[bytes], last_session: bool
    ) -> DialogueStateTracker:
        stored_until = start + len(stored)
        events = [e for e in map(decode_event, stored) if e]
        first = len(restore)
        if last_session:
            # like Rasa's stores: a turn sees only the latest conversation session
            starts = [i for i, e in enumerate(events) if _is(e, ACTION_SESSION_START_NAME)]
            if starts and starts[-1] > 0:
                start, events, restore, first = start + starts[-1], events[starts[-1] :], [], 0
        tracker = DialogueStateTracker.from_events(sender_id, restore + events, self.domain.slots)
        setattr(tracker, _LOADED, len(tracker.events))
        # the list's length, not the events decoded: an unreadable item still takes a place
        setattr(tracker, _STORED, stored_until)
        setattr(tracker, _BASE, start)
        setattr(tracker, _FIRST, first)
        return tracker

    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        """The latest session's window: what a turn needs, however long the conversation."""
        start, restore, stored = await self._window(sender_id)
        if not stored and start == 0:
            return None
        return self._tracker(sender_id, start, restore, stored, last_session=True)

    async def retrieve_full_tracker(self, conversation_id: Text) -> Optional[DialogueStateTracker]:
        """Every event of every session."""
        stored = await self.client.lrange(events_key(self.prefix, conversation_id), 0, -1)
        if not stored:
            return None
        return self._tracker(conversation_id, 0, [], stored, last_session=False)

    async def exists(self, conversation_id: Text) -> bool:
        return bool(await self.client.exists(events_key(self.prefix, conversation_id)))

    async def keys(self) -> Iterable[Text]:
        head, tail = f"{self.prefix}:tracker:", ":events"
        found = []
        async for key in self.client.scan_iter(match=f"{head}*{tail}", count=500):
            text = key.decode() if isinstance(key, bytes) else key
            found.append(text[len(head) : -len(tail)])
        return found

    # -- writing ---------------------------------------------------------------

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Append what is new since the tracker was loaded; move the window when it is long."""
        sender_id = tracker.sender_id
        key = events_key(self.prefix, sender_id)
        events = list(tracker.events)
        loaded = getattr(tracker, _LOADED, None)
        if loaded is None:
            # a tracker this store did not load (a new one, or built from a dict):
            # it holds the whole conversation, so what is beyond the list is new
            stored = int(await self.client.llen(key))
            new = events[stored:]
            setattr(tracker, _BASE, 0)
            setattr(tracker, _FIRST, 0)
        else:
            stored = int(getattr(tracker, _STORED))
            new = events[loaded:]
        if new:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, *[encode_event(e) for e in new])
                if self.record_exp:
                    pipe.expire(key, self.record_exp)
                    pipe.expire(window_key(self.prefix, sender_id), self.record_exp)
                await pipe.execute()
            self._publish(sender_id, new)
        setattr(tracker, _LOADED, len(events))
        setattr(tracker, _STORED, stored + len(new))
        await self._move_window(tracker, events)

    def _publish(self, sender_id: Text, events: List[Event]) -> None:
        if self.event_broker is None:
            return
        for event in events:
            body: Dict[Text, Any] = {"sender_id": sender_id}
            body.update(event.as_dict())
            self.event_broker.publish(body)

    async def _move_window(self, tracker: DialogueStateTracker, events: List[Event]) -> None:
        first, base = int(getattr(tracker, _FIRST)), int(getattr(tracker, _BASE))
        if len(events) - first <= self.move_after:
            return
        target = len(events) - self.window_events
        cut = next((i for i in range(target, len(events)) if _is(events[i], ACTION_LISTEN_NAME)), None)
        if cut is None or cut <= first:
            return
        before = DialogueStateTracker.from_events(tracker.sender_id, events[:cut], self.domain.slots)
        index = base + cut - first
        window = {"from": index, "restore": [e.as_dict() for e in restoring_events(before, index)]}
        await self.client.set(
            window_key(self.prefix, tracker.sender_id),
            json.dumps(window, ensure_ascii=False),
            ex=self.record_exp,
        )
        logger.debug("conversation %s: turn window moved to event %d", tracker.sender_id, index)
