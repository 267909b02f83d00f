"""A Redis ticket lock that stays one-holder-at-a-time across Rasa replicas.

Rasa serialises a conversation's work with a ticket lock. Its RedisLockStore
keeps the lock as one JSON value that every step reads, changes in Python
and writes back (rasa issues 3933, 9213): two replicas that issue a ticket
at the same moment both read "last ticket 4" and both hand out 5, so two
turns of one conversation run at once; and "finish my ticket, nobody
waiting? delete the lock" deletes a ticket another replica issued in
between, whose turn then fails with LockError. With replicas behind a load
balancer that is lost or interleaved turns.

Here every step is one Lua script, so Redis runs it atomically: tickets are
a sorted set (score = ticket number, member = "number:expiry"), numbers
come from INCR, and expiry uses Redis' clock, so replicas on different hosts
agree. A waiting message re-checks within milliseconds (``FIRST_WAIT``,
doubling up to ``MAX_WAIT``) instead of Rasa's hard-coded second: the widget
shows a reply before Rasa has saved the turn, so a customer who answers
quickly, or an agent line posted during a turn, waited a second for nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Optional, Text

from rasa.core.lock import Ticket, TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

logger = logging.getLogger(__name__)

FIRST_WAIT = 0.005
MAX_WAIT = 0.1
# keys outlive their last ticket by this much, so a crashed replica leaves nothing for long
KEY_GRACE_SECONDS = 60

# Shared prologue: drop expired tickets. ``now`` comes from Redis, not the replica.
_DROP_EXPIRED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local expires = tonumber(string.match(member, ':(.+)$'))
  if expires == nil or expires < now then redis.call('ZREM', KEYS[1], member) end
end
"""

# KEYS: tickets, counter. ARGV: lifetime (s), key ttl (ms). Returns the new ticket number.
_ISSUE = (
    _DROP_EXPIRED
    + """
local number = redis.call('INCR', KEYS[2])
local expires = now + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], number, number .. ':' .. string.format('%.6f', expires))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return number
"""
)

# KEYS: tickets. ARGV: ticket. Returns the ticket now served, or -1 when ours is gone (expired).
_NOW_SERVING = (
    _DROP_EXPIRED
    + """
if redis.call('ZCOUNT', KEYS[1], ARGV[1], ARGV[1]) == 0 then return -1 end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(head[2])
"""
)

# KEYS: tickets. ARGV: ticket. Removes it; the set goes when it is empty (in the same step).
_FINISH = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: tickets. Returns the live tickets as a flat [member, score, ...] list.
_LIVE = (
    _DROP_EXPIRED
    + """
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
)


class AtomicRedisLockStore(RedisLockStore):
    """Rasa's ticket lock with every read-modify-write done inside Redis."""

    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, **kwargs: Any) -> None:
        if endpoint_config is not None:
            kwargs = {"host": endpoint_config.url or "localhost", **endpoint_config.kwargs, **kwargs}
        kwargs.pop("type", None)
        if not kwargs.get("password"):
            kwargs["password"] = None
        super().__init__(**kwargs)
        # redis-py's Script reloads itself after a Redis restart empties the script cache
        self._issue = self.red.register_script(_ISSUE)
        self._now_serving = self.red.register_script(_NOW_SERVING)
        self._finish = self.red.register_script(_FINISH)
        self._live = self.red.register_script(_LIVE)

    def _keys(self, conversation_id: Text) -> list[str]:
        base = self.key_prefix + conversation_id
        return [base + ":tickets", base + ":counter"]

    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME) -> int:
        ttl_ms = int((lock_lifetime + KEY_GRACE_SECONDS) * 1000)
        try:
            return int(self._issue(keys=self._keys(conversation_id), args=[lock_lifetime, ttl_ms]))
        except Exception as error:  # Rasa's callers expect LockError
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

    async def _acquire_lock(
        self, conversation_id: Text, ticket: int, wait_time_in_seconds: float
    ) -> TicketLock:
        wait = FIRST_WAIT
        tickets_key = self._keys(conversation_id)[:1]
        while True:
            serving = int(self._now_serving(keys=tickets_key, args=[ticket]))
            if serving < 0:  # our ticket expired while we waited
                break
            if serving == ticket:
                # Rasa's callers only hold the lock they are given; reading the tickets back
                # would cost one more Redis call per turn for nothing
                return TicketLock(conversation_id)
            await asyncio.sleep(wait)
            wait = min(wait * 2, MAX_WAIT, wait_time_in_seconds)
        raise LockError(f"Could not acquire lock for conversation_id '{conversation_id}'.")

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        self.finish_serving(conversation_id, ticket_number)

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        self._finish(keys=self._keys(conversation_id)[:1], args=[ticket_number])

    def update_lock(self, conversation_id: Text) -> None:
        self._live(keys=self._keys(conversation_id)[:1])

    def get_lock(self, conversation_id: Text) -> Optional[TicketLock]:
        members = self._live(keys=self._keys(conversation_id)[:1])
        if not members:
            return None
        tickets = []
        for member in members:
            text = member.decode() if isinstance(member, bytes) else str(member)
            number, _, expires = text.partition(":")
            tickets.append(Ticket(int(number), float(expires)))
        return TicketLock(conversation_id, deque(tickets))

    def is_someone_waiting(self, conversation_id: Text) -> bool:
        return bool(self._live(keys=self._keys(conversation_id)[:1]))

    def delete_lock(self, conversation_id: Text) -> None:
        deleted = self.red.delete(*self._keys(conversation_id))
        self._log_deletion(conversation_id, bool(deleted))

    def save_lock(self, lock: TicketLock) -> None:
        # Rasa's generic paths write a whole lock back; that is the race this class removes
        raise NotImplementedError("AtomicRedisLockStore changes tickets only through its scripts")
