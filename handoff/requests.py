"""The handoff request log in Redis, with a local spool when Redis is away.

Until the queue of the handoff issue lands, a request is appended to the
stream ``{prefix}:handoff:requests`` once per conversation (a SET NX key is the
gate, so retries and double clicks queue nothing twice). When Redis is
unreachable the request is appended to ``var/spool/handoff-requests.jsonl`` and
replayed on the next successful call: a customer who asked for a person is
never forgotten because Redis blinked.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from common.redis_options import resilient_options
from handoff.records import HandoffRecord

logger = logging.getLogger(__name__)

ACTIVE_TTL_SECONDS = 24 * 3600


class Outcome(str, Enum):
    QUEUED = "queued"
    ALREADY_QUEUED = "already_queued"
    SPOOLED = "spooled"


@dataclass
class HandoffRequestLog:
    """Appends handoff records to Redis; falls back to a local spool file."""

    client: aioredis.Redis
    prefix: str
    spool_path: Path

    @classmethod
    def create(cls, redis_url: str, prefix: str, spool_path: Path) -> HandoffRequestLog:
        client = aioredis.from_url(redis_url, **resilient_options())
        return cls(client=client, prefix=prefix, spool_path=spool_path)

    @property
    def stream_key(self) -> str:
        return f"{self.prefix}:handoff:requests"

    def active_key(self, conversation_id: str) -> str:
        return f"{self.prefix}:handoff:active:{conversation_id}"

    async def record(self, record: HandoffRecord) -> Outcome:
        try:
            await self._replay_spool()
            return await self._append(record)
        except (RedisError, OSError) as error:
            logger.error(
                "conversation %s: Redis unavailable (%s); handoff request spooled to %s",
                record.conversation_id,
                error,
                self.spool_path,
            )
            await asyncio.to_thread(self._spool, record)
            return Outcome.SPOOLED

    async def _append(self, record: HandoffRecord) -> Outcome:
        fresh = await self.client.set(
            self.active_key(record.conversation_id), record.created, nx=True, ex=ACTIVE_TTL_SECONDS
        )
        if not fresh:
            logger.info("conversation %s: handoff already requested", record.conversation_id)
            return Outcome.ALREADY_QUEUED
        try:
            await self.client.xadd(self.stream_key, {"record": record.to_json()})
        except (RedisError, OSError):
            # without this the spooled copy would meet its own gate on replay and be dropped
            await self.client.delete(self.active_key(record.conversation_id))
            raise
        logger.info(
            "conversation %s: handoff requested (reason=%s, priority=%s)",
            record.conversation_id,
            record.reason.value,
            record.priority.value,
        )
        return Outcome.QUEUED

    def _spool(self, record: HandoffRecord) -> None:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        with self.spool_path.open("a", encoding="utf-8") as spool:
            spool.write(record.to_json() + "\n")

    async def _replay_spool(self) -> None:
        if not self.spool_path.exists():
            return
        lines = (await asyncio.to_thread(self.spool_path.read_text, "utf-8")).splitlines()
        if not lines:
            return
        # fails before the file is touched when Redis is still away
        await self.client.ping()
        for line in lines:
            try:
                await self._append(HandoffRecord.from_json(line))
            except (ValueError, TypeError, KeyError):
                logger.error("skipping an unreadable spooled handoff line: %.200s", line)
        await asyncio.to_thread(self.spool_path.unlink)
        logger.info("replayed %d spooled handoff requests", len(lines))

    async def is_active(self, conversation_id: str) -> bool:
        return bool(await self.client.exists(self.active_key(conversation_id)))

    async def close(self) -> None:
        await self.client.aclose()


def spooled_records(spool_path: Path) -> list[dict[str, object]]:
    """Records waiting in the spool (for tests and the operator)."""
    if not spool_path.exists():
        return []
    return [json.loads(line) for line in spool_path.read_text("utf-8").splitlines() if line]
