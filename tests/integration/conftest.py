"""Fixtures for integration tests that need Redis but not the whole stack."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from handoff.queue import HandoffQueue
from scripts.stack import free_port, redis_ping


@pytest.fixture(scope="session")
def redis_url() -> Any:
    """The machine's Redis (TEST_REDIS_URL or 127.0.0.1:6379); a private redis-server where none answers."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        yield url
        return
    except redis.ConnectionError:
        if "TEST_REDIS_URL" in os.environ:
            pytest.fail(f"no Redis at TEST_REDIS_URL={url}")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            if redis_ping("127.0.0.1", port):
                break
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait()


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[HandoffQueue]:
    """A queue client on the machine's Redis under a fresh key prefix, deleted afterwards."""
    prefix = "tq" + secrets.token_hex(4)
    q = HandoffQueue.create(redis_url, prefix)
    yield q
    keys = [k async for k in q.client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await q.client.delete(*keys)
    await q.close()
