"""bot.lock_store against the machine's Redis: FIFO as Rasa's, without one-second naps."""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import urlparse

from rasa.utils.endpoints import EndpointConfig

from bot.lock_store import PromptRedisLockStore


def store(prefix: str) -> PromptRedisLockStore:
    parsed = urlparse(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    config = EndpointConfig(
        url=parsed.hostname or "127.0.0.1",
        type="bot.lock_store.PromptRedisLockStore",
        port=str(parsed.port or 6379),
        db=(parsed.path or "/0").lstrip("/") or "0",
        password=parsed.password or "",
        key_prefix=prefix,
    )
    return PromptRedisLockStore(endpoint_config=config)


def test_a_waiting_message_gets_the_lock_soon_after_it_is_freed_and_in_order(redis_prefix: str) -> None:
    locks = store(redis_prefix)
    order: list[str] = []

    async def first() -> None:
        async with locks.lock("web-fast"):
            order.append("first")
            await asyncio.sleep(0.05)

    async def second() -> float:
        await asyncio.sleep(0.01)  # take a ticket after the first one
        started = time.perf_counter()
        async with locks.lock("web-fast"):
            order.append("second")
        return time.perf_counter() - started

    async def scenario() -> float:
        _, waited = await asyncio.gather(first(), second())
        return waited

    waited = asyncio.run(scenario())
    assert order == ["first", "second"]
    # Rasa's own store sleeps a whole second before it looks again
    assert waited < 0.5


def test_a_free_lock_is_taken_at_once_and_its_ticket_removed(redis_prefix: str) -> None:
    locks = store(redis_prefix)

    async def scenario() -> None:
        for _ in range(2):
            async with locks.lock("web-free") as lock:
                assert lock.conversation_id == "web-free"

    asyncio.run(scenario())
    left = locks.get_lock("web-free")
    assert left is None or not left.tickets


def test_dead_pooled_connections_after_a_redis_restart_do_not_fail_a_turn(redis_prefix: str) -> None:
    import redis

    locks = store(redis_prefix)
    name = f"{redis_prefix}-lock"
    locks.red.connection_pool.connection_kwargs["client_name"] = name
    admin = redis.Redis.from_url(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))

    async def take() -> None:
        async with locks.lock("web-restart") as lock:
            assert lock.conversation_id == "web-restart"

    asyncio.run(take())
    # what a Redis restart leaves in the pool: connections the server has closed (only ours)
    mine = [c["id"] for c in admin.client_list() if c.get("name") == name]
    assert mine
    for client_id in mine:
        admin.client_kill_filter(_id=client_id)
    time.sleep(1.1)
    # the sync client reconnects by itself for single commands; the tracker store's pipelines did
    # not (tests/integration/bot/test_tracker_store.py)
    asyncio.run(take())
