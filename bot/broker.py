"""Rasa event broker that appends every tracker event to a Redis stream.

The handoff service reads ``{prefix}:rasa:events`` with a consumer group to
learn what a customer writes while an agent holds the conversation (Rasa
stays silent then, but still records the message). Redis is already the
shared state of every process, so no message broker is added for this.

``publish`` is called synchronously inside Rasa's event loop; it only queues
the event for one background writer, so the turn never waits on the network
and the stream keeps Rasa's order. The writer sends whatever has queued up in
one pipeline, so it keeps up however slowly a busy loop gets round to it.
Phone numbers, e-mails, bank cards and ID numbers are masked in the stream
(the tracker store keeps what Rasa needs).
"""

from __future__ import annotations

import asyncio
import json
import logging
from asyncio import AbstractEventLoop
from typing import Any, Dict, List, Optional, Text

from rasa.core.brokers.broker import EventBroker
from rasa.utils.endpoints import EndpointConfig
from redis import asyncio as aioredis

from common.redaction import redact_value
from common.redis_options import resilient_options

logger = logging.getLogger(__name__)

STREAM_MAXLEN = 200_000
QUEUE_LIMIT = 10_000  # events waiting for Redis before new ones are dropped
BATCH_LIMIT = 2_000  # events per pipelined write


class RedisStreamBroker(EventBroker):
    def __init__(self, client: aioredis.Redis, stream: str) -> None:
        self.client = client
        self.stream = stream
        self._queue: Optional[asyncio.Queue[Dict[Text, Any]]] = None
        self._writer: Optional[asyncio.Task[None]] = None

    @classmethod
    async def from_endpoint_config(
        cls, broker_config: EndpointConfig, event_loop: Optional[AbstractEventLoop] = None
    ) -> Optional[RedisStreamBroker]:
        kwargs = broker_config.kwargs
        client = aioredis.Redis(
            host=broker_config.url or "127.0.0.1",
            port=int(kwargs.get("port") or 6379),
            db=int(kwargs.get("db") or 0),
            password=kwargs.get("password") or None,
            **resilient_options(),
        )
        prefix = str(kwargs.get("key_prefix") or "cs")
        return cls(client, f"{prefix}:rasa:events")

    def publish(self, event: Dict[Text, Any]) -> None:
        # one writer keeps the stream in the order Rasa published (tasks per event could reorder)
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=QUEUE_LIMIT)
            self._writer = asyncio.get_running_loop().create_task(self._write())
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            logger.error("conversation %s: event stream backlog full; event dropped", event.get("sender_id"))

    async def _write(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            # everything published since the last write goes out in one round trip: under load
            # Rasa's loop turns slowly, and one XADD per loop turn fell behind (events were dropped)
            while len(batch) < BATCH_LIMIT and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._send(batch)
            for _ in batch:
                self._queue.task_done()

    async def _send(self, batch: List[Dict[Text, Any]]) -> None:
        bodies = [self._body(event) for event in batch]
        for attempt in range(5):
            try:
                pipe = self.client.pipeline(transaction=False)
                for body in bodies:
                    pipe.xadd(self.stream, body, maxlen=STREAM_MAXLEN, approximate=True)
                await pipe.execute()
                return
            except Exception as error:  # noqa: BLE001 - the tracker store still has the events
                if attempt == 4:
                    logger.warning(
                        "%d events (conversations %s) not streamed to Redis: %s",
                        len(batch),
                        ", ".join(sorted({str(e.get("sender_id")) for e in batch})[:5]),
                        error,
                    )
                else:
                    await asyncio.sleep(0.2 * (attempt + 1))

    @staticmethod
    def _body(event: Dict[Text, Any]) -> Dict[str, str]:
        # the stream is read by more processes and kept longer than a turn: personal values masked
        # (common.redaction); the conversation id is an id, not text, and routes the event
        masked = {**redact_value(event), "sender_id": event.get("sender_id")}
        return {"event": json.dumps(masked, ensure_ascii=False, default=str)}

    def is_ready(self) -> bool:
        return True

    async def close(self) -> None:
        if self._queue is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout=5)
            except asyncio.TimeoutError:
                logger.warning("%d events not streamed at shutdown", self._queue.qsize())
        if self._writer is not None:
            self._writer.cancel()
        # redis-py 4.6 (what rasa pins) names it close(), 5+ aclose()
        closer = getattr(self.client, "aclose", None) or self.client.close
        await closer()
