"""bot.tracker_store against the machine's Redis (fresh key prefix per test).

A turn must see the same state through the window as through the whole
conversation: the same slots, form, pause and the same last states the
policies featurize; and nothing saved may be lost or written twice.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    LoopInterrupted,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from bot.tracker_store import WindowedRedisTrackerStore, decode_event, encode_event, restoring_events
from common.tracker_keys import RESTORED_BEFORE, events_key, window_key, window_start

ROOT = Path(__file__).resolve().parents[3]
WINDOW, MOVE = 30, 60


def run_async(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """.venv-rasa has no pytest-asyncio: each test runs in its own event loop."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


class Collecting:
    """An event broker that keeps what it is given."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.published.append(event)


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(ROOT / "domain.yml"))


@pytest.fixture
def store(domain: Domain, redis_prefix: str) -> Iterator[WindowedRedisTrackerStore]:
    parsed = urlparse(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    made = WindowedRedisTrackerStore(
        domain,
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 6379,
        db=int((parsed.path or "/0").lstrip("/") or 0),
        password=parsed.password,
        event_broker=Collecting(),  # type: ignore[arg-type]
        key_prefix=redis_prefix,
        record_exp=3600,
        window_events=WINDOW,
        move_after=MOVE,
    )
    yield made


def turn(i: int) -> list[Event]:
    """One customer turn shaped like Rasa's: message, prediction, reply, listen."""
    t = 1_000_000.0 + i
    return [
        UserUttered(f"message {i}", {"name": "greet", "confidence": 0.9}, timestamp=t),
        ActionExecuted("utter_greet", timestamp=t + 0.1),
        BotUttered(f"reply {i}", timestamp=t + 0.2),
        ActionExecuted("action_listen", timestamp=t + 0.3),
    ]


async def converse(
    store: WindowedRedisTrackerStore, sender: str, turns: int, extra: dict[int, list[Event]]
) -> None:
    """Save ``turns`` turns one at a time, the way Rasa does (retrieve, update, save)."""
    tracker = await store.get_or_create_tracker(sender)
    await store.save(tracker)
    for i in range(turns):
        tracker = await store.retrieve(sender)
        assert tracker is not None
        for event in turn(i) + extra.get(i, []):
            tracker.update(event)
        await store.save(tracker)


def whole(domain: Domain, sender: str, client: redis.Redis, prefix: str) -> DialogueStateTracker:
    events = [decode_event(raw) for raw in client.lrange(events_key(prefix, sender), 0, -1)]
    return DialogueStateTracker.from_events(sender, [e for e in events if e], domain.slots)


@pytest.fixture
def sync_redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))


@run_async
async def test_a_long_conversation_loads_a_window_with_the_same_state(
    store: WindowedRedisTrackerStore, domain: Domain, redis_prefix: str, sync_redis: redis.Redis
) -> None:
    extra = {
        3: [SlotSet("order_id", "SC-20001"), SlotSet("language", "en")],
        40: [ActiveLoop("order_lookup_form"), SlotSet("requested_slot", "owner_proof")],
        41: [LoopInterrupted(True)],
        55: [SlotSet("phone", None)],  # explicitly emptied: has_been_set must survive
        70: [ConversationPaused()],
    }
    await converse(store, "web-long", 80, extra)

    full = whole(domain, "web-long", sync_redis, redis_prefix)
    window = await store.retrieve("web-long")
    assert window is not None
    assert len(full.events) == 1 + 80 * 4 + sum(len(v) for v in extra.values())
    assert WINDOW <= len(window.events) <= MOVE + 12
    assert window_start([e.as_dict() for e in window.events]) > 0

    assert window.current_slot_values() == full.current_slot_values()
    assert window.active_loop is not None and full.active_loop is not None
    assert (window.active_loop.name, window.active_loop.is_interrupted, window.active_loop.rejected) == (
        full.active_loop.name,
        full.active_loop.is_interrupted,
        full.active_loop.rejected,
    )
    assert window.is_paused() and full.is_paused()
    assert {n for n, s in window.slots.items() if s.has_been_set} == {
        n for n, s in full.slots.items() if s.has_been_set
    }
    # what TED (max_history 5) and the rules featurize: the same last states
    assert window.past_states(domain)[-6:] == full.past_states(domain)[-6:]
    assert (
        window.past_states(domain, ignore_rule_only_turns=True)[-6:]
        == full.past_states(domain, ignore_rule_only_turns=True)[-6:]
    )


@run_async
async def test_every_event_is_stored_once_and_published_once(
    store: WindowedRedisTrackerStore, domain: Domain, redis_prefix: str, sync_redis: redis.Redis
) -> None:
    await converse(store, "web-once", 50, {})
    stored = [json.loads(raw) for raw in sync_redis.lrange(events_key(redis_prefix, "web-once"), 0, -1)]
    published = store.event_broker.published  # type: ignore[union-attr]
    texts = [e["text"] for e in stored if e["event"] == "user"]
    assert texts == [f"message {i}" for i in range(50)]
    assert [e["event"] for e in published] == [e["event"] for e in stored]
    assert all(e["sender_id"] == "web-once" for e in published)
    full = await store.retrieve_full_tracker("web-once")
    assert full is not None and len(full.events) == len(stored)
    assert RESTORED_BEFORE not in json.dumps(stored)  # restoring events are never written

    # saving a tracker again without changes writes nothing
    tracker = await store.retrieve("web-once")
    assert tracker is not None
    await store.save(tracker)
    await store.save(tracker)
    assert sync_redis.llen(events_key(redis_prefix, "web-once")) == len(stored)


@run_async
async def test_a_turn_sees_only_the_latest_session(store: WindowedRedisTrackerStore) -> None:
    session = [ActionExecuted("action_session_start"), SessionStarted(), SlotSet("language", "zh")]
    await converse(store, "web-sessions", 20, {10: [*session, ActionExecuted("action_listen")]})
    tracker = await store.retrieve("web-sessions")
    full = await store.retrieve_full_tracker("web-sessions")
    assert tracker is not None and full is not None
    assert (
        isinstance(tracker.events[0], ActionExecuted)
        and tracker.events[0].action_name == "action_session_start"
    )
    assert next(e.text for e in tracker.events if isinstance(e, UserUttered)) == "message 11"
    assert next(e.text for e in full.events if isinstance(e, UserUttered)) == "message 0"

    # new events after such a cut still land after the stored ones
    tracker.update(UserUttered("after the cut", {"name": "greet", "confidence": 1.0}))
    await store.save(tracker)
    again = await store.retrieve_full_tracker("web-sessions")
    assert again is not None
    assert [e.text for e in again.events if isinstance(e, UserUttered)][-1] == "after the cut"
    assert len(again.events) == len(full.events) + 1


@run_async
async def test_unknown_conversation_and_keys(store: WindowedRedisTrackerStore) -> None:
    assert await store.retrieve("web-nobody") is None
    assert await store.retrieve_full_tracker("web-nobody") is None
    assert not await store.exists("web-nobody")
    await converse(store, "web-someone", 1, {})
    assert await store.exists("web-someone")
    assert list(await store.keys()) == ["web-someone"]


@run_async
async def test_an_unreadable_stored_event_is_skipped_not_fatal(
    store: WindowedRedisTrackerStore, redis_prefix: str, sync_redis: redis.Redis
) -> None:
    await converse(store, "web-broken", 3, {})
    sync_redis.rpush(
        events_key(redis_prefix, "web-broken"), "{not json", json.dumps({"event": "no_such_event"})
    )
    tracker = await store.retrieve("web-broken")
    assert tracker is not None
    assert [e.text for e in tracker.events if isinstance(e, UserUttered)] == [
        "message 0",
        "message 1",
        "message 2",
    ]
    tracker.update(UserUttered("still here", {"name": "greet", "confidence": 1.0}))
    await store.save(tracker)
    last = json.loads(sync_redis.lindex(events_key(redis_prefix, "web-broken"), -1))
    assert last["text"] == "still here"


@run_async
async def test_a_window_pointing_past_the_list_falls_back_to_every_event(
    store: WindowedRedisTrackerStore, redis_prefix: str, sync_redis: redis.Redis
) -> None:
    await converse(store, "web-cut", 5, {})
    sync_redis.set(window_key(redis_prefix, "web-cut"), json.dumps({"from": 10_000, "restore": []}))
    tracker = await store.retrieve("web-cut")
    assert tracker is not None
    assert len([e for e in tracker.events if isinstance(e, UserUttered)]) == 5


def test_restoring_events_rebuild_slots_form_and_pause(domain: Domain) -> None:
    events: list[Event] = [
        SlotSet("order_id", "SC-1"),
        ActiveLoop("order_lookup_form"),
        LoopInterrupted(True),
        ConversationPaused(),
        ConversationResumed(),
        ConversationPaused(),
    ]
    original = DialogueStateTracker.from_events("s", events, domain.slots)
    restored = DialogueStateTracker.from_events("s", restoring_events(original, 7), domain.slots)
    assert restored.current_slot_values() == original.current_slot_values()
    assert restored.active_loop_name == "order_lookup_form"
    assert restored.active_loop is not None and restored.active_loop.is_interrupted
    assert restored.is_paused()
    assert all(e.metadata[RESTORED_BEFORE] == 7 for e in restoring_events(original, 7))
    assert restoring_events(DialogueStateTracker("s", domain.slots), 3)  # the marker is always there


def test_events_survive_encoding(domain: Domain) -> None:
    for event in [*turn(1), SlotSet("order_id", "订单 SC-1"), ActiveLoop(None), SessionStarted()]:
        assert decode_event(encode_event(event)) == event


def kill_own_connections(admin: redis.Redis, name: str) -> int:
    """Close, server-side, only the connections that carry our client name (never anyone else's)."""
    killed = 0
    for client in admin.client_list():
        if client.get("name") == name:
            admin.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


@run_async
async def test_dead_pooled_connections_after_a_redis_restart_lose_no_turn(
    store: WindowedRedisTrackerStore, sync_redis: redis.Redis, redis_prefix: str
) -> None:
    name = f"{redis_prefix}-conn"
    store.client.connection_pool.connection_kwargs["client_name"] = name
    sender = "restart"
    await converse(store, sender, 2, {})
    # what a Redis restart leaves behind: pooled connections the server has closed
    assert kill_own_connections(sync_redis, name) >= 1
    await asyncio.sleep(1.1)  # idle past the health-check interval, like a real outage
    tracker = await store.retrieve(sender)
    assert tracker is not None
    for event in turn(2):
        tracker.update(event)
    await store.save(tracker)  # a pipeline: redis-py does not retry it by itself
    kill_own_connections(sync_redis, name)
    await asyncio.sleep(1.1)
    await converse(store, sender, 1, {})
    texts = [
        e.text
        for e in whole(store.domain, sender, sync_redis, redis_prefix).events
        if isinstance(e, UserUttered)
    ]
    assert texts == ["message 0", "message 1", "message 2", "message 0"]
