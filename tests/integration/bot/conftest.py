"""Fixtures for the channel tests that run in .venv-rasa (the Rasa side).

They start no Rasa server: a channel object gets a stand-in for Rasa's
``on_new_message``, and talks to the machine's Redis (TEST_REDIS_URL, default
127.0.0.1:6379/0) under a random key prefix that is deleted afterwards, and to
local servers speaking the WeChat and Telegram APIs (tests/fake_platforms.py).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import redis

from tests.fake_platforms import FakeTelegramApi, FakeWeChatApi


@pytest.fixture
def redis_prefix(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh Redis namespace for the channel's keys (dedupe, tokens, choices)."""
    import bot.channels.messaging as messaging
    import bot.channels.outbox as outbox
    import bot.channels.ratelimit as ratelimit

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    parsed = urlparse(url)
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"these tests need a Redis at {url} (TEST_REDIS_URL)")
    prefix = "tch" + secrets.token_hex(4)
    monkeypatch.setenv("REDIS_HOST", parsed.hostname or "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(parsed.port or 6379))
    monkeypatch.setenv("REDIS_DB", (parsed.path or "/0").lstrip("/") or "0")
    monkeypatch.setenv("REDIS_PASSWORD", parsed.password or "")
    monkeypatch.setenv("CS_KEY_PREFIX", prefix)
    # each test runs its own event loop: no client may outlive it
    monkeypatch.setattr(outbox, "_client", None)
    monkeypatch.setattr(messaging, "_session", None)
    # tests that are not about the rate limit send as fast as they like; test_ratelimit sets its own
    monkeypatch.setattr(ratelimit, "_limit", ratelimit.SenderRateLimit(burst=0, per_minute=0, prefix=prefix))
    yield prefix
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def wechat_api() -> Iterator[FakeWeChatApi]:
    server = FakeWeChatApi("wxappid", "wxsecret").start()
    yield server
    server.stop()


@pytest.fixture
def telegram_api() -> Iterator[FakeTelegramApi]:
    server = FakeTelegramApi("123:test-token").start()
    yield server
    server.stop()
