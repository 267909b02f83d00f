"""The handoff queue: who waits, who holds which conversation, what happened.

Pure queue logic over Redis; the web layer (handoff/console.py) and the
workers (handoff/workers.py) call it, nothing here knows about HTTP.

State, all under ``{prefix}:handoff:``:
- ``requests``      stream the action server appends handoff records to
                    (handoff/requests.py); consumed here with a consumer group,
                    so a request read by a service that crashes before it is
                    admitted is claimed again (XAUTOCLAIM) and never lost.
- ``conv:{id}``     hash: the record (JSON), state, agent, times, rating.
- ``lines:{id}``    list: what the customer, the bot and the agents said since
                    the handoff (the record holds the transcript before it).
- ``waiting``       sorted set, score = priority rank then SLA due: the order
                    agents see and customers are counted in.
- ``holders``       hash conversation -> agent, for the conversations in hand.
- ``events``        stream of QueueEvents for consoles and the notifier.
- ``active:{id}``   the request gate handoff/requests.py sets (SET NX); cleared
                    when the handoff ends so a later request queues again.

Claiming, requeueing and ending run as Lua scripts: Redis executes each one
atomically, so however many agents click at once, one of them holds it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from redis import asyncio as aioredis

from common.redis_options import resilient_options
from handoff.analytics import Analytics
from handoff.records import HandoffRecord, Priority

logger = logging.getLogger(__name__)

PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2}
EVENTS_MAXLEN = 10_000
LINES_TTL_SECONDS = 30 * 24 * 3600
ENDED_TTL_SECONDS = 30 * 24 * 3600  # ended conversations stay readable this long
REQUEST_GROUP = "queue"


class State(str, Enum):
    WAITING = "waiting"
    ACTIVE = "active"
    CLOSED = "closed"
    CANCELLED = "cancelled"  # the customer went back to the bot
    HANDED_BACK = "handed_back"  # the agent gave the conversation back to the bot


class Resolution(str, Enum):
    RESOLVED = "resolved"
    UNRESOLVED = "unresolved"
    DUPLICATE = "duplicate"
    SPAM = "spam"


@dataclass(frozen=True)
class QueueEvent:
    """What changed; consoles and the position notifier react to these."""

    kind: str  # admitted, claimed, transferred, requeued, handed_back, cancelled, closed, rated, line
    conversation_id: str
    agent: str | None = None
    at: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)

    def to_fields(self) -> dict[str, str]:
        return {"event": json.dumps(asdict(self), ensure_ascii=False)}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> QueueEvent:
        return cls(**json.loads(fields["event"]))


@dataclass(frozen=True)
class Conversation:
    """A conversation in the queue as agents and the API see it."""

    record: HandoffRecord
    state: State
    agent: str | None = None
    position: int | None = None  # 1-based, while waiting
    claimed_at: float | None = None
    ended_at: float | None = None
    resolution: str | None = None
    rating: int | None = None

    def summary_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "conversation_id": r.conversation_id,
            "channel": r.channel,
            "language": r.language,
            "reason": r.reason.value,
            "priority": r.priority.value,
            "category": r.category,
            "summary": r.summary,
            "created": r.created,
            "sla_due": r.sla_due,
            "resolution_due": r.resolution_due,
            "state": self.state.value,
            "agent": self.agent,
            "position": self.position,
            "rating": self.rating,
            "resolution": self.resolution,
        }


def score(record: HandoffRecord) -> float:
    """Priority first, then the earliest SLA due; fits a double exactly (rank * 1e10 + epoch seconds)."""
    due = datetime.fromisoformat(record.sla_due).timestamp()
    return PRIORITY_RANK[record.priority] * 1e10 + due


# KEYS: conv, waiting, lines, reasons, events, gate
# ARGV: id, record, score, reason, maxlen, event, gate value ('' = no gate needed)
_ADMIT = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'waiting' or state == 'active' then return 0 end
if ARGV[7] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[7] then return -1 end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], 'record', ARGV[2], 'state', 'waiting')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'event', ARGV[6])
return 1
"""

# KEYS: waiting, holders, conv, events; ARGV: id, agent, now, maxlen
_CLAIM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return redis.call('HGET', KEYS[3], 'agent') or ''
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], 'state', 'active', 'agent', ARGV[2], 'claimed_at', ARGV[3])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'event', ARGV[5])
return 1
"""

# KEYS: waiting, holders, conv, events; ARGV: id, expected agent ('' = any), score, maxlen, event
_REQUEUE = """
local holder = redis.call('HGET', KEYS[2], ARGV[1])
if not holder or (ARGV[2] ~= '' and holder ~= ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'state', 'waiting')
redis.call('HDEL', KEYS[3], 'agent', 'claimed_at')
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'event', ARGV[5])
return 1
"""

# KEYS: waiting, holders, conv, events, gate
# ARGV: id, agent ('' = anyone may end it), state, now, maxlen, event, resolution, expected state ('' = any
# open one), seconds to keep the ended conversation
_END = """
local state = redis.call('HGET', KEYS[3], 'state')
if state ~= 'waiting' and state ~= 'active' then return 0 end
if ARGV[8] ~= '' and state ~= ARGV[8] then return 0 end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'state', ARGV[3], 'ended_at', ARGV[4])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[3], 'resolution', ARGV[7]) end
redis.call('DEL', KEYS[5])
redis.call('EXPIRE', KEYS[3], ARGV[9])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'event', ARGV[6])
return 1
"""

# KEYS: holders, conv, events; ARGV: id, from agent, to agent, maxlen, event
_TRANSFER = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], 'agent', ARGV[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'event', ARGV[5])
return 1
"""


class ClaimError(Exception):
    """The conversation is not waiting (someone else holds it, or it ended)."""

    def __init__(self, holder: str | None) -> None:
        super().__init__(f"already claimed by {holder}" if holder else "not waiting")
        self.holder = holder


class NotHolder(Exception):
    """Only the agent holding a conversation may do that."""


@dataclass
class HandoffQueue:
    # redis.asyncio.Redis with decode_responses=True; its stubs cannot express str replies
    client: Any
    prefix: str
    average_handle_minutes: float = 4.0
    online_window_seconds: float = 45.0

    @classmethod
    def create(cls, redis_url: str, prefix: str, **options: Any) -> HandoffQueue:
        client = aioredis.from_url(redis_url, decode_responses=True, **resilient_options(socket_timeout=5))
        return cls(client=client, prefix=prefix, **options)

    # -- keys ------------------------------------------------------------------
    @property
    def analytics(self) -> Analytics:
        """The supervisor's figures, kept beside the queue in the same Redis (handoff/analytics.py)."""
        return Analytics(self.client, self.prefix)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, "handoff", *parts))

    @property
    def waiting_key(self) -> str:
        return self.key("waiting")

    @property
    def holders_key(self) -> str:
        return self.key("holders")

    @property
    def events_key(self) -> str:
        return self.key("events")

    @property
    def requests_key(self) -> str:
        return self.key("requests")

    def conv_key(self, conversation_id: str) -> str:
        return self.key("conv", conversation_id)

    def lines_key(self, conversation_id: str) -> str:
        return self.key("lines", conversation_id)

    def gate_key(self, conversation_id: str) -> str:
        return self.key("active", conversation_id)

    # -- admitting requests ------------------------------------------------------
    async def admit(self, record: HandoffRecord, require_gate: bool = True) -> bool:
        """Put a requested handoff in the waiting line, atomically.

        False when the conversation is already waiting or held, or when the request is no longer
        live: its gate (set by handoff.requests with the record's creation time) was removed by a
        cancel or by the end of the handoff, or belongs to a newer request. That makes a request
        delivered twice (a retried stream entry) harmless.
        """
        event = QueueEvent("admitted", record.conversation_id, data={"priority": record.priority.value})
        done = await self.client.eval(
            _ADMIT,
            6,
            self.conv_key(record.conversation_id),
            self.waiting_key,
            self.lines_key(record.conversation_id),
            self.key("stats", "reasons"),
            self.events_key,
            self.gate_key(record.conversation_id),
            record.conversation_id,
            record.to_json(),
            str(score(record)),
            record.reason.value,
            str(EVENTS_MAXLEN),
            event.to_fields()["event"],
            record.created if require_gate else "",
        )
        if done != 1:
            return False
        await self.analytics.handed_off(record.conversation_id, record.reason.value)
        logger.info(
            "conversation %s: queued (%s, %s)",
            record.conversation_id,
            record.priority.value,
            record.reason.value,
        )
        return True

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(self.requests_key, REQUEST_GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def ingest(self, consumer: str, block_ms: int = 1000, idle_ms: int = 30_000) -> int:
        """Admit new requests from the stream; first take over ones a crashed consumer left pending."""
        await self.ensure_group()
        entries: list[tuple[str, dict[str, str]]] = []
        _, claimed, _ = await self.client.xautoclaim(
            self.requests_key, REQUEST_GROUP, consumer, min_idle_time=idle_ms, start_id="0-0", count=100
        )
        entries.extend(claimed)
        if not entries:
            read = await self.client.xreadgroup(
                REQUEST_GROUP, consumer, {self.requests_key: ">"}, count=100, block=block_ms
            )
            for _, stream_entries in read or []:
                entries.extend(stream_entries)
        for entry_id, fields in entries:
            try:
                await self.admit(HandoffRecord.from_json(fields["record"]))
            except (KeyError, ValueError, TypeError) as error:
                logger.error("dropping unreadable handoff request %s: %s", entry_id, error)
            await self.client.xack(self.requests_key, REQUEST_GROUP, entry_id)
        return len(entries)

    # -- reading -----------------------------------------------------------------
    async def get(self, conversation_id: str) -> Conversation | None:
        data = await self.client.hgetall(self.conv_key(conversation_id))
        if not data or "record" not in data:
            return None
        state = State(data["state"])
        position = None
        if state is State.WAITING:
            rank = await self.client.zrank(self.waiting_key, conversation_id)
            position = None if rank is None else rank + 1
        return Conversation(
            record=HandoffRecord.from_json(data["record"]),
            state=state,
            agent=data.get("agent") or None,
            position=position,
            claimed_at=float(data["claimed_at"]) if data.get("claimed_at") else None,
            ended_at=float(data["ended_at"]) if data.get("ended_at") else None,
            resolution=data.get("resolution"),
            rating=int(data["rating"]) if data.get("rating") else None,
        )

    async def brief(self, conversation_id: str) -> tuple[State | None, str | None, str | None]:
        """State, holder and request time (ISO) of a conversation, without building its transcript.

        What the hot paths need (an agent's reply, every Rasa event the workers follow): the full
        ``get`` turns the whole transcript into objects.
        """
        state, agent, record = await self.client.hmget(
            self.conv_key(conversation_id), "state", "agent", "record"
        )
        if not state or not record:
            return None, None, None
        return State(state), agent or None, str(json.loads(record)["created"])

    async def waiting(self) -> list[Conversation]:
        ids = await self.client.zrange(self.waiting_key, 0, -1)
        found = [await self.get(cid) for cid in ids]
        return [c for c in found if c is not None]

    async def active(self) -> list[Conversation]:
        holders = await self.client.hgetall(self.holders_key)
        found = [await self.get(cid) for cid in sorted(holders)]
        return [c for c in found if c is not None]

    async def position(self, conversation_id: str) -> int | None:
        rank = await self.client.zrank(self.waiting_key, conversation_id)
        return None if rank is None else rank + 1

    async def estimated_wait_minutes(self, position: int) -> int:
        agents = max(1, len(await self.online_agents()))
        return max(1, math.ceil(position * self.average_handle_minutes / agents))

    async def lines(self, conversation_id: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in await self.client.lrange(self.lines_key(conversation_id), 0, -1)]

    async def add_line(self, conversation_id: str, speaker: str, text: str, agent: str | None = None) -> None:
        line = {"speaker": speaker, "text": text, "time": datetime.now(timezone.utc).isoformat()}
        if agent:
            line["agent"] = agent
        event = QueueEvent("line", conversation_id, agent, data={"line": line})
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(self.lines_key(conversation_id), json.dumps(line, ensure_ascii=False))
            pipe.expire(self.lines_key(conversation_id), LINES_TTL_SECONDS)
            pipe.xadd(self.events_key, event.to_fields(), maxlen=EVENTS_MAXLEN, approximate=True)
            await pipe.execute()

    async def in_handoff(self, conversation_id: str) -> bool:
        state = await self.client.hget(self.conv_key(conversation_id), "state")
        return state in (State.WAITING.value, State.ACTIVE.value)

    # -- agents acting -------------------------------------------------------------
    async def claim(self, conversation_id: str, agent: str) -> Conversation:
        event = QueueEvent("claimed", conversation_id, agent)
        won = await self.client.eval(
            _CLAIM,
            4,
            self.waiting_key,
            self.holders_key,
            self.conv_key(conversation_id),
            self.events_key,
            conversation_id,
            agent,
            str(time.time()),
            str(EVENTS_MAXLEN),
            event.to_fields()["event"],
        )
        if won != 1:
            raise ClaimError(str(won) or None)
        logger.info("conversation %s: claimed by %s", conversation_id, agent)
        conversation = await self.get(conversation_id)
        assert conversation is not None
        now = time.time()
        late = datetime.fromisoformat(conversation.record.sla_due).timestamp() < now
        if await self.client.hsetnx(self.conv_key(conversation_id), "first_response_at", str(now)):
            waited = now - datetime.fromisoformat(conversation.record.created).timestamp()
            await self.analytics.first_response(waited, not late)
        # a requeued conversation claimed again is still one breach
        if late and await self.client.hsetnx(self.conv_key(conversation_id), "breach_counted", "1"):
            await self.client.incr(self.key("stats", "sla_breaches"))
        return conversation

    async def transfer(self, conversation_id: str, from_agent: str, to_agent: str) -> None:
        event = QueueEvent("transferred", conversation_id, to_agent, data={"from": from_agent})
        done = await self.client.eval(
            _TRANSFER,
            3,
            self.holders_key,
            self.conv_key(conversation_id),
            self.events_key,
            conversation_id,
            from_agent,
            to_agent,
            str(EVENTS_MAXLEN),
            event.to_fields()["event"],
        )
        if done != 1:
            raise NotHolder(conversation_id)
        logger.info("conversation %s: transferred from %s to %s", conversation_id, from_agent, to_agent)

    async def requeue(self, conversation_id: str, agent: str | None = None) -> bool:
        """Put a held conversation back at its place in the line (its console died, or the agent let go)."""
        conversation = await self.get(conversation_id)
        if conversation is None:
            return False
        event = QueueEvent("requeued", conversation_id, conversation.agent)
        done = await self.client.eval(
            _REQUEUE,
            4,
            self.waiting_key,
            self.holders_key,
            self.conv_key(conversation_id),
            self.events_key,
            conversation_id,
            agent or "",
            str(score(conversation.record)),
            str(EVENTS_MAXLEN),
            event.to_fields()["event"],
        )
        return done == 1

    async def end(
        self,
        conversation_id: str,
        state: State,
        agent: str | None = None,
        resolution: Resolution | None = None,
        only_if: State | None = None,
    ) -> bool:
        """Close, cancel or hand back; with ``agent`` only that holder may do it.

        False when already over, or (with ``only_if``) when the conversation moved on meanwhile:
        a customer's cancel must not end a chat an agent has just claimed.
        """
        event = QueueEvent(
            state.value, conversation_id, agent, data={"resolution": resolution.value if resolution else None}
        )
        done = await self.client.eval(
            _END,
            5,
            self.waiting_key,
            self.holders_key,
            self.conv_key(conversation_id),
            self.events_key,
            self.gate_key(conversation_id),
            conversation_id,
            agent or "",
            state.value,
            str(time.time()),
            str(EVENTS_MAXLEN),
            event.to_fields()["event"],
            resolution.value if resolution else "",
            only_if.value if only_if else "",
            str(ENDED_TTL_SECONDS),
        )
        if done == -1:
            raise NotHolder(conversation_id)
        if done == 1:
            logger.info(
                "conversation %s: %s%s", conversation_id, state.value, f" by {agent}" if agent else ""
            )
            if state is State.CLOSED:
                await self.client.incr(
                    self.key("stats", "closed", datetime.now(timezone.utc).date().isoformat())
                )
        return done == 1

    async def stats(self) -> dict[str, Any]:
        """What the supervisor view shows."""
        waiting = await self.waiting()
        by_priority = {p.value: 0 for p in Priority}
        now = time.time()
        overdue = 0
        for conversation in waiting:
            by_priority[conversation.record.priority.value] += 1
            overdue += datetime.fromisoformat(conversation.record.sla_due).timestamp() < now
        ratings = {k: int(v) for k, v in (await self.client.hgetall(self.key("stats", "ratings"))).items()}
        count = sum(ratings.values())
        average = sum(int(k) * v for k, v in ratings.items()) / count if count else None
        closed = await self.client.get(
            self.key("stats", "closed", datetime.now(timezone.utc).date().isoformat())
        )
        return {
            "waiting_by_priority": by_priority,
            "agents_online": len(await self.online_agents()),
            "active": await self.client.hlen(self.holders_key),
            "sla_breaches": int(await self.client.get(self.key("stats", "sla_breaches")) or 0) + overdue,
            "csat": {
                "average": round(average, 2) if average is not None else None,
                "count": count,
                "distribution": {str(i): ratings.get(str(i), 0) for i in range(1, 6)},
            },
            "closed_today": int(closed or 0),
            "handoffs_by_reason": {
                k: int(v) for k, v in (await self.client.hgetall(self.key("stats", "reasons"))).items()
            },
        }

    async def rate(self, conversation_id: str, rating: int) -> bool:
        """Store the customer's 1-5 rating with the record (only after the conversation was closed)."""
        if not 1 <= rating <= 5:
            raise ValueError("rating must be 1-5")
        key = self.conv_key(conversation_id)
        if await self.client.hget(key, "state") != State.CLOSED.value:
            return False
        if await self.client.hsetnx(key, "rating", str(rating)):
            await self.client.hincrby(self.key("stats", "ratings"), str(rating), 1)
            await self.analytics.rated(rating)
        await self.client.xadd(
            self.events_key,
            QueueEvent("rated", conversation_id, data={"rating": rating}).to_fields(),
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )
        return True

    # -- agents online -------------------------------------------------------------
    async def heartbeat(self, agent: str) -> None:
        await self.client.zadd(self.key("online"), {agent: time.time()})

    async def offline(self, agent: str) -> None:
        await self.client.zrem(self.key("online"), agent)

    async def online_agents(self) -> list[str]:
        since = time.time() - self.online_window_seconds
        return list(await self.client.zrangebyscore(self.key("online"), since, "+inf"))

    async def recover_orphans(self) -> list[str]:
        """Requeue conversations whose agent's console stopped sending heartbeats."""
        online = set(await self.online_agents())
        holders = await self.client.hgetall(self.holders_key)
        recovered = []
        for conversation_id, agent in holders.items():
            if agent not in online and await self.requeue(conversation_id, agent):
                logger.warning(
                    "conversation %s: %s's console went away; back in the queue", conversation_id, agent
                )
                recovered.append(conversation_id)
        return recovered

    # -- events ----------------------------------------------------------------------
    async def read_events(self, last_id: str, block_ms: int = 5000) -> list[tuple[str, QueueEvent]]:
        read = await self.client.xread({self.events_key: last_id}, count=200, block=block_ms)
        out: list[tuple[str, QueueEvent]] = []
        for _, entries in read or []:
            for entry_id, fields in entries:
                try:
                    out.append((entry_id, QueueEvent.from_fields(fields)))
                except (KeyError, ValueError, TypeError):
                    logger.error("skipping an unreadable queue event %s", entry_id)
        return out

    async def last_event_id(self) -> str:
        entries = await self.client.xrevrange(self.events_key, count=1)
        return entries[0][0] if entries else "0-0"

    async def close(self) -> None:
        await self.client.aclose()
