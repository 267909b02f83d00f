"""Connection options every Redis client of ours uses, so a Redis restart costs no message.

A restarted Redis leaves the pools full of connections the server has closed. redis-py
retries a single command on a fresh connection (retry + retry_on_error) but re-raises a
pipeline's ConnectionError, and most of our writes are pipelines or transactions: a PING
before reusing a connection idle for over a second finds the dead ones first and
reconnects (tests/integration/bot/test_tracker_store.py shows a lost turn without it).
"""

from __future__ import annotations

from typing import Any

from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def resilient_options(socket_timeout: float = 2.0) -> dict[str, Any]:
    """Keyword arguments for redis.asyncio.Redis / from_url."""
    from redis.asyncio.retry import Retry

    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 2,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 1,
    }
