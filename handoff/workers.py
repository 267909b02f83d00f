"""Background work of the handoff service: admit requests, follow conversations, tell customers.

Each loop is restartable and shares nothing but Redis, so several service
replicas can run them side by side: streams are read through consumer groups
(a crashed replica's pending entries are taken over with XAUTOCLAIM) and the
queue's own operations are atomic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from handoff.queue import HandoffQueue, State
from handoff.rasa_api import CustomerTexts, RasaApi, RasaUnavailable
from handoff.records import attachment_text

logger = logging.getLogger(__name__)

RASA_GROUP = "handoff"
NOTIFY_GROUP = "notifier"
FAILURES_GROUP = "handoff"
# what a platform's refusal means for the agent (bot/channels/messaging.py reports them)
FAILURE_REASONS = {
    "45015": "the customer's 48-hour reply window on WeChat is over (they must write first)",
    "45047": "WeChat's limit of replies since the customer's last message is reached",
    "40001": "WeChat rejected the access token (check WECHAT_APP_ID/WECHAT_APP_SECRET)",
    "42001": "WeChat's access token expired and could not be renewed",
    "403": "the customer blocked the Telegram bot",
    "not_configured": "the channel has no API credentials",
    "unreachable": "the platform's API could not be reached",
}
# queue events that move people in the line
MOVES = {"admitted", "claimed", "requeued", "cancelled", "closed", "handed_back"}
# channels that show every change at once; the others hear about meaningful ones only
LIVE_CHANNELS = {"socketio"}


# KEYS: conversation hash; ARGV: position last told ('' = none), new position
_CLAIM_TELLING = """
local told = redis.call('HGET', KEYS[1], 'told_position') or ''
if told ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'waiting' then return 0 end
redis.call('HSET', KEYS[1], 'told_position', ARGV[2])
return 1
"""


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def ensure_group(client: Any, stream: str, group: str, start: str = "$") -> None:
    try:
        await client.xgroup_create(stream, group, id=start, mkstream=True)
    except aioredis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


async def next_entries(
    client: Any, stream: str, group: str, consumer: str, count: int, start: str = "$"
) -> list[tuple[str, dict[str, str]]]:
    """The group's next entries: first those a crashed replica had read but not acked (XAUTOCLAIM)."""
    await ensure_group(client, stream, group, start)
    _, entries, _ = await client.xautoclaim(
        stream, group, consumer, min_idle_time=30_000, start_id="0-0", count=count
    )
    if entries:
        return list(entries)
    read = await client.xreadgroup(group, consumer, {stream: ">"}, count=count, block=1000)
    return [e for _, stream_entries in read or [] for e in stream_entries]


def worth_telling(channel: str, last: int | None, position: int) -> bool:
    """Widget customers see every move; WeChat/Telegram/REST only moves that matter (no spam)."""
    if last is None:
        return True
    if position == last:
        return False
    if channel in LIVE_CHANNELS:
        return True
    return position <= 3 or position <= last // 2


def customer_line(event: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """(speaker, text, agent) for a Rasa event worth showing an agent, else None."""
    kind = event.get("event")
    metadata = event.get("metadata") or {}
    text = str(event.get("text") or "")
    if kind == "user":
        # a photo, voice note, ... from WeChat/Telegram: what it is and where to find it
        described = attachment_text(metadata)
        if described:
            return "customer", described, None
        # a click shows its intent: the title in the metadata is whatever the client claims
        if text.startswith("/"):
            intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name") or text
            return "customer", f"[button] {intent}", None
        return ("customer", text, None) if text else None
    if kind == "bot" and text:
        agent = metadata.get("agent")
        return ("agent", text, str(agent)) if agent else ("bot", text, None)
    return None


def failure_line(failure: dict[str, Any]) -> str:
    """What the agent reads when a platform refused a message."""
    code = str(failure.get("code") or "error")
    reason = FAILURE_REASONS.get(code) or f"{code} {failure.get('detail') or ''}".strip()
    channel = str(failure.get("channel") or "the channel")
    preview = str(failure.get("text") or "")
    quoted = f': "{preview}"' if preview else ""
    return f"Not delivered on {channel} - {reason}{quoted}"


@dataclass
class Workers:
    queue: HandoffQueue
    rasa: RasaApi
    texts: CustomerTexts
    consumer: str
    orphan_check_seconds: float = 10.0
    # conversations idle longer are purged once a day (handoff/retention.py); 0 = never
    retention_days: float = 0.0
    retention_check_seconds: float = 600.0

    @property
    def rasa_stream(self) -> str:
        return f"{self.queue.prefix}:rasa:events"

    async def run(self) -> None:
        await asyncio.gather(
            self._forever(self.ingest_once, "ingest"),
            self._forever(self.follow_once, "follow"),
            self._forever(self.notify_once, "notify"),
            self._forever(self.failures_once, "failures"),
            self._forever(self.recover_once, "recover", pause=self.orphan_check_seconds),
            self._forever(self.retention_once, "retention", pause=self.retention_check_seconds),
        )

    async def retention_once(self) -> None:
        """The daily purge; of several web replicas, the first to take the day's key runs it."""
        if self.retention_days <= 0:
            return
        from handoff.retention import purge

        day = time.strftime("%Y-%m-%d", time.gmtime())
        key = f"{self.queue.prefix}:retention:ran:{day}"
        if await self.queue.client.set(key, self.consumer, nx=True, ex=2 * 86400):
            await purge(self.queue.client, self.queue.prefix, self.retention_days)

    async def _forever(self, step: Any, name: str, pause: float = 0.0) -> None:
        while True:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                logger.warning("handoff worker %s: Redis unavailable (%s); retrying", name, error)
                await asyncio.sleep(1.0)
            except Exception:
                logger.exception("handoff worker %s failed; continuing", name)
                await asyncio.sleep(1.0)
            if pause:
                await asyncio.sleep(pause)

    # -- requests -> queue ---------------------------------------------------------
    async def ingest_once(self) -> None:
        await self.queue.ingest(self.consumer, block_ms=1000)

    # -- Rasa events -> transcript lines ---------------------------------------------
    async def follow_once(self) -> None:
        client = self.queue.client
        entries = await next_entries(client, self.rasa_stream, RASA_GROUP, self.consumer, 200)
        for entry_id, fields in entries:
            try:
                event = json.loads(fields["event"])
                conversation_id = str(event.get("sender_id") or "")
                if (
                    conversation_id
                    and event.get("event") == "user"
                    and not (event.get("metadata") or {}).get("automatic")
                ):
                    await self.queue.analytics.saw_customer(
                        conversation_id, float(event.get("timestamp") or time.time())
                    )
                line = customer_line(event)
                if conversation_id and line and await self._after_request(conversation_id, event):
                    speaker, text, agent = line
                    await self.queue.add_line(conversation_id, speaker, text, agent)
            except (KeyError, ValueError, TypeError) as error:
                logger.error("skipping an unreadable Rasa event %s: %s", entry_id, error)
            await client.xack(self.rasa_stream, RASA_GROUP, entry_id)

    async def _after_request(self, conversation_id: str, event: dict[str, Any]) -> bool:
        """In a handoff, and said after the request (earlier lines are in the record's transcript)."""
        state, _, requested = await self.queue.brief(conversation_id)
        if state not in (State.WAITING, State.ACTIVE) or requested is None:
            return False
        return float(event.get("timestamp") or 0) > datetime.fromisoformat(requested).timestamp()

    # -- refused deliveries -> the agent is told -------------------------------------
    @property
    def failures_stream(self) -> str:
        return f"{self.queue.prefix}:channel:failures"

    async def failures_once(self) -> None:
        client = self.queue.client
        # from the start of the stream: failures reported before this service first ran count too
        entries = await next_entries(
            client, self.failures_stream, FAILURES_GROUP, self.consumer, 100, start="0"
        )
        for entry_id, fields in entries:
            try:
                failure = json.loads(fields["failure"])
                conversation_id = str(failure["conversation_id"])
                if await self.queue.in_handoff(conversation_id):
                    await self.queue.add_line(conversation_id, "system", failure_line(failure))
            except (KeyError, ValueError, TypeError) as error:
                logger.error("skipping an unreadable delivery failure %s: %s", entry_id, error)
            await client.xack(self.failures_stream, FAILURES_GROUP, entry_id)

    # -- queue moves -> customers told their position ---------------------------------
    async def notify_once(self) -> None:
        client = self.queue.client
        stream = self.queue.events_key
        entries = await next_entries(client, stream, NOTIFY_GROUP, self.consumer, 100)
        if not entries:
            return
        moved = False
        for _, fields in entries:
            try:
                moved = moved or json.loads(fields["event"]).get("kind") in MOVES
            except (KeyError, ValueError):
                continue
        if moved:
            await self.tell_positions()
        await client.xack(stream, NOTIFY_GROUP, *[entry_id for entry_id, _ in entries])

    async def tell_positions(self) -> None:
        """Tell every waiting customer whose place changed enough (worth_telling).

        Runs after every queue move, over the whole line: one ZRANGE and one pipelined HMGET
        for all of it, and no transcript is turned into objects (with 50 waiting this ran
        2,500 full record reads per round and slowed the agents' own requests).
        """
        client = self.queue.client
        ids = await client.zrange(self.queue.waiting_key, 0, -1)
        if not ids:
            return
        async with client.pipeline(transaction=False) as pipe:
            for conversation_id in ids:
                pipe.hmget(self.queue.conv_key(conversation_id), "told_position", "record")
            rows = await pipe.execute()
        agents_online = bool(await self.queue.online_agents())
        for position, (conversation_id, (raw, record)) in enumerate(zip(ids, rows, strict=True), start=1):
            if not record:
                continue
            last = int(raw) if raw else None
            try:
                data = json.loads(record)
                channel, language = str(data["channel"]), str(data["language"])
            except (ValueError, KeyError, TypeError):
                continue
            if worth_telling(channel, last, position):
                await self._tell(conversation_id, language, raw, position, agents_online)

    async def _tell(
        self, conversation_id: str, language: str, last: str | None, position: int, agents_online: bool
    ) -> None:
        key = self.queue.conv_key(conversation_id)
        # one teller per move, however many replicas (and the orphan recovery) saw it
        if not await self._claim_telling(key, last, position):
            return
        minutes = await self.queue.estimated_wait_minutes(position)
        if not agents_online:
            # "an agent will be with you in a moment" next to "no agent is online" contradicts itself
            response = "utter_queue_next_no_agent" if position == 1 else "utter_queue_position_no_agent"
            text = self.texts.get(response, language, position=position, ahead=position - 1)
        elif position == 1:
            text = self.texts.get("utter_queue_next", language)
        else:
            text = self.texts.get(
                "utter_queue_position", language, position=position, ahead=position - 1, minutes=minutes
            )
        try:
            await self.rasa.say(conversation_id, text)
        except RasaUnavailable as error:
            logger.warning("conversation %s: position not delivered: %s", conversation_id, error)
            return
        logger.info("conversation %s: told position %d (~%d min)", conversation_id, position, minutes)

    async def _claim_telling(self, key: str, last: str | None, position: int) -> bool:
        """Compare-and-set of the position last told: True for exactly one caller per change."""
        return bool(await self.queue.client.eval(_CLAIM_TELLING, 1, key, last or "", str(position)))

    # -- dead consoles -> back in the queue -------------------------------------------
    async def recover_once(self) -> None:
        for conversation_id in await self.queue.recover_orphans():
            conversation = await self.queue.get(conversation_id)
            if conversation is None:
                continue
            key = self.queue.conv_key(conversation_id)
            position = conversation.position or 1
            # claimed first, so the notifier does not also announce this position
            await self._claim_telling(key, await self.queue.client.hget(key, "told_position"), position)
            try:
                await self.rasa.resume(conversation_id)
                await self.rasa.say(
                    conversation_id,
                    self.texts.get("utter_agent_left", conversation.record.language, position=position),
                )
            except RasaUnavailable as error:
                logger.warning("conversation %s: could not tell the customer: %s", conversation_id, error)
