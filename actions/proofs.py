"""Limits on ownership proofs (the last 4 digits of a phone) across conversations.

Four digits are 10,000 guesses. The three-strikes rule of a form is per
conversation and ends with it, so on its own it stops nobody who opens a new
conversation, cancels, or rotates sender ids. These counters live in Redis
and count failed proofs per order (whoever tries) and per client address
(whatever order): an order or an address over its limit gets no more checks,
only a person, who is told the proof was attacked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rasa_sdk import Tracker

logger = logging.getLogger(__name__)

ORDER_LIMIT = 5  # failed proofs per order per ORDER_WINDOW, from any conversation
ORDER_WINDOW_SECONDS = 24 * 3600
ADDRESS_LIMIT = 10  # failed proofs per client address per ADDRESS_WINDOW, on any order
ADDRESS_WINDOW_SECONDS = 3600
ATTACKED_CATEGORY = "proof_attacked"
CLIENT_ADDRESS_KEY = "client_address"  # set by the channels (bot/channels/guard.py), never by a client


@dataclass(frozen=True)
class ProofStatus:
    order_failures: int
    address_failures: int
    conversations: int

    @property
    def locked(self) -> bool:
        return self.order_failures >= ORDER_LIMIT or self.address_failures >= ADDRESS_LIMIT

    def describe(self, order_id: str) -> str:
        """What the agent reads in the handoff summary."""
        return (
            f"ownership proof attacked: {self.order_failures} failed proofs on {order_id} from "
            f"{self.conversations} conversation(s) in 24 h, {self.address_failures} from this address "
            "in 1 h; further checks are locked, verify the customer yourself"
        )


def client_address(tracker: Tracker) -> str:
    """The address the channel recorded on the latest message; the conversation where it has none."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            address = (event.get("metadata") or {}).get(CLIENT_ADDRESS_KEY)
            if isinstance(address, str) and address:
                return address[:80]
            break
    return f"conversation:{tracker.sender_id}"


@dataclass
class ProofLimiter:
    # redis.asyncio.Redis with decode_responses=True
    client: Any
    prefix: str

    def _keys(self, order_id: str, address: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:proof"
        return (
            f"{base}:order:{order_id}",
            f"{base}:order:{order_id}:conversations",
            f"{base}:address:{address}",
        )

    async def status(self, order_id: str, address: str) -> ProofStatus:
        order_key, conversations_key, address_key = self._keys(order_id, address)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(order_key)
            pipe.get(address_key)
            pipe.scard(conversations_key)
            order, by_address, conversations = await pipe.execute()
        return ProofStatus(int(order or 0), int(by_address or 0), int(conversations or 0))

    async def failed(self, order_id: str, address: str, conversation_id: str) -> ProofStatus:
        """Count one failed proof; the windows start at the first failure."""
        order_key, conversations_key, address_key = self._keys(order_id, address)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(order_key)
            pipe.expire(order_key, ORDER_WINDOW_SECONDS, nx=True)
            pipe.sadd(conversations_key, conversation_id)
            pipe.expire(conversations_key, ORDER_WINDOW_SECONDS, nx=True)
            pipe.incr(address_key)
            pipe.expire(address_key, ADDRESS_WINDOW_SECONDS, nx=True)
            pipe.scard(conversations_key)
            results = await pipe.execute()
        status = ProofStatus(int(results[0]), int(results[4]), int(results[6]))
        if status.locked:
            logger.warning("order %s: ownership proofs locked (%s)", order_id, status)
        return status


_limiter: ProofLimiter | None = None


def default_limiter() -> ProofLimiter:
    """The process-wide limiter on the handoff queue's Redis connection."""
    global _limiter
    if _limiter is None:
        from actions.handoff import default_queue
        from common.settings import Settings

        _limiter = ProofLimiter(default_queue().client, Settings.from_env().key_prefix)
    return _limiter
