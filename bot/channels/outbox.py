"""Messages for REST customers that arrive between their requests.

REST is request/response, but agents and the queue speak up on their own.
Rasa delivers such messages (POST .../tracker/events?output_channel=latest)
to the output channel the REST input channel provides; this one parks them
in a Redis list per conversation. The next REST reply starts with them, and
GET /webhooks/rest/messages?sender=... fetches them without sending anything.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Text

from rasa.core.channels.channel import CollectingOutputChannel
from redis import asyncio as aioredis

from common.redis_options import resilient_options

logger = logging.getLogger(__name__)

OUTBOX_TTL_SECONDS = 7 * 24 * 3600

_client: Optional[aioredis.Redis] = None


def redis_client() -> aioredis.Redis:
    """One client per process, created on first use from the stack's REDIS_* variables."""
    global _client
    if _client is None:
        _client = aioredis.Redis(
            host=os.environ.get("REDIS_HOST", "127.0.0.1"),
            port=int(os.environ.get("REDIS_PORT", "6379")),
            db=int(os.environ.get("REDIS_DB", "0")),
            password=os.environ.get("REDIS_PASSWORD") or None,
            **resilient_options(),
        )
    return _client


def outbox_key(sender_id: Text) -> str:
    return f"{os.environ.get('CS_KEY_PREFIX', 'cs')}:rest:outbox:{sender_id}"


class RedisOutbox(CollectingOutputChannel):
    """An output channel that keeps messages until the REST customer asks."""

    @classmethod
    def name(cls) -> Text:
        return "rest"

    async def _persist_message(self, message: Dict[Text, Any]) -> None:
        key = outbox_key(message["recipient_id"])
        client = redis_client()
        async with client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(message, ensure_ascii=False))
            pipe.expire(key, OUTBOX_TTL_SECONDS)
            await pipe.execute()


async def drain(sender_id: Text) -> List[Dict[Text, Any]]:
    """Take the parked messages of one conversation (atomically, so none is delivered twice)."""
    key = outbox_key(sender_id)
    try:
        async with redis_client().pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            raw, _ = await pipe.execute()
    except Exception as error:  # noqa: BLE001 - Redis away: the messages stay parked for the next call
        logger.warning("conversation %s: outbox unavailable: %s", sender_id, error)
        return []
    return [json.loads(item) for item in raw]


async def restore(sender_id: Text, messages: List[Dict[Text, Any]]) -> None:
    """Put drained messages back in front (the request that took them failed)."""
    if not messages:
        return
    try:
        await redis_client().lpush(
            outbox_key(sender_id), *[json.dumps(m, ensure_ascii=False) for m in reversed(messages)]
        )
    except Exception as error:  # noqa: BLE001 - nothing more to do than say so
        logger.error("conversation %s: %d parked messages lost: %s", sender_id, len(messages), error)
