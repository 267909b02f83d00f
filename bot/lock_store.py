"""Rasa's Redis lock store without its one-second naps.

Rasa serialises a conversation's work with a ticket lock; a message that
finds the lock taken sleeps ``wait_time_in_seconds`` (1 s, hard-coded by its
callers) before it looks again. The lock is usually free a few milliseconds
later: the widget shows a reply before Rasa has saved the turn, so a customer
who answers quickly, an agent line posted through the tracker API during a
turn, or a claim all waited a whole second for nothing. Here the wait starts
at ``FIRST_WAIT`` and doubles up to ``MAX_WAIT``; order and expiry are Rasa's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional, Text

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

logger = logging.getLogger(__name__)

FIRST_WAIT = 0.005
MAX_WAIT = 0.1


class PromptRedisLockStore(RedisLockStore):
    """``RedisLockStore`` that re-checks a taken lock within milliseconds."""

    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, **kwargs: Any) -> None:
        if endpoint_config is not None:
            kwargs = {"host": endpoint_config.url or "localhost", **endpoint_config.kwargs, **kwargs}
        kwargs.pop("type", None)
        if not kwargs.get("password"):
            kwargs["password"] = None
        super().__init__(**kwargs)

    async def _acquire_lock(
        self, conversation_id: Text, ticket: int, wait_time_in_seconds: float
    ) -> TicketLock:
        wait = FIRST_WAIT
        while True:
            lock = self.get_lock(conversation_id)
            if not lock:  # expired while we waited
                break
            if not lock.is_locked(ticket):
                return lock
            await asyncio.sleep(wait)
            wait = min(wait * 2, MAX_WAIT, wait_time_in_seconds)
            self.update_lock(conversation_id)
        raise LockError(f"Could not acquire lock for conversation_id '{conversation_id}'.")
