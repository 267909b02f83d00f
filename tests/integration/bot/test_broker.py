"""The Redis stream event broker against the machine's Redis, with Rasa's loop kept busy.

Rasa runs its NLU and policies inside the event loop, so under load the loop
gets round to the broker's writer only between turns. Every event must still
reach the stream, once and in order (the handoff service relays the
customer's lines to the agent from it).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis import asyncio as aioredis

from bot.broker import QUEUE_LIMIT, RedisStreamBroker

STREAM_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def streamed(publish: Callable[[RedisStreamBroker], Awaitable[None]]) -> list[dict[str, Any]]:
    """Run ``publish`` against a fresh broker on a fresh stream; the events the stream got."""

    async def main() -> list[dict[str, Any]]:
        client = aioredis.Redis.from_url(STREAM_URL)
        broker = RedisStreamBroker(client, f"tbr{secrets.token_hex(4)}:rasa:events")
        try:
            await publish(broker)
            assert broker._queue is not None
            await asyncio.wait_for(broker._queue.join(), 60)
            entries = await client.xrange(broker.stream)
            return [json.loads(fields[b"event"]) for _, fields in entries]
        finally:
            await client.delete(broker.stream)
            await broker.close()

    return asyncio.run(main())


def test_a_busy_loop_loses_no_event_and_keeps_their_order() -> None:
    turns, per_turn = 800, 20  # 16,000 events: more than the queue holds, a turn's worth at a time
    assert turns * per_turn > QUEUE_LIMIT

    async def publish(broker: RedisStreamBroker) -> None:
        for turn in range(turns):
            for n in range(per_turn):
                broker.publish({"event": "user", "sender_id": f"web-{turn % 7}", "text": f"{turn}:{n}"})
            time.sleep(0.005)  # the turn's CPU work, blocking the loop as Rasa's graph does
            await asyncio.sleep(0)

    texts = [event["text"] for event in streamed(publish)]
    assert texts == [f"{turn}:{n}" for turn in range(turns) for n in range(per_turn)]


def test_personal_values_are_masked_in_the_stream_but_the_conversation_id_is_kept() -> None:
    async def publish(broker: RedisStreamBroker) -> None:
        broker.publish({"event": "user", "sender_id": "web-13800138000", "text": "call me on 13800138000"})

    [event] = streamed(publish)
    assert event["sender_id"] == "web-13800138000"
    assert "13800138000" not in event["text"]
