"""Faults the product survives, each against the real stack (tests/conftest.py: a private
redis-server with AOF, the action server, Rasa and the web service).

- kill -9 the action server mid-conversation: the customer gets an apology and the offer of a
  person within 3 s, the offer works while the action server is still down (bot/action_fallback.py),
  and once it is back the conversation goes on.
- Redis killed (-9) and restarted: no tracker, queued handoff or ticket is lost (AOF, fsync every second).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from handoff.queue import HandoffQueue, State
from handoff.tickets import TicketBook
from scripts.stack import Stack
from tests.integration.helpers import handoff_records, is_handoff, is_kb_answer, redis_client, say, texts


def new_sender() -> str:
    return "fault-" + uuid.uuid4().hex[:10]


def user_texts(stack: Stack, sender: str) -> list[str]:
    from common.tracker_keys import events_key

    raw = redis_client(stack).lrange(events_key(stack.settings.key_prefix, sender), 0, -1)
    return [e.get("text") for e in map(json.loads, raw) if e.get("event") == "user"]


def test_killing_the_action_server_mid_conversation_gets_an_apology_and_a_person(stack: Stack) -> None:
    sender = new_sender()
    assert say(stack, sender, "你好")[0]["text"] == texts("utter_greet")["zh"]
    stack.kill_service("actions")
    try:
        started = time.perf_counter()
        replies = say(stack, sender, "怎么退款")  # a knowledge-base turn: an action-server action
        elapsed = time.perf_counter() - started
        assert elapsed < 3.0, f"the apology took {elapsed:.1f}s"
        assert replies[0]["text"] == texts("utter_actions_unavailable")["zh"]
        assert [b["payload"] for b in replies[0]["buttons"]] == ["/ask_human"]
        # the offer works although the handoff is an action-server action
        replies = say(stack, sender, "/ask_human")
        assert is_handoff(replies[0]["text"], "zh"), replies
        records = handoff_records(stack, sender)
        assert len(records) == 1 and records[0]["reason"] == "action_failure"
        assert records[0]["priority"] == "high"
    finally:
        stack.restart_service("actions")
    # back: the customer leaves the queue and the bot answers from the knowledge base again
    say(stack, sender, "/cancel_handoff")
    replies = say(stack, sender, "怎么退款")
    assert is_kb_answer(replies[0]["text"], "zh")
    assert user_texts(stack, sender)[:2] == ["你好", "怎么退款"]


async def _waiting(queue: HandoffQueue, conversation_id: str) -> bool:
    conversation = await queue.get(conversation_id)
    return conversation is not None and conversation.state is State.WAITING


async def _eventually(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_restarting_redis_loses_no_tracker_queued_handoff_or_ticket(stack: Stack) -> None:
    sender, writer = new_sender(), new_sender()
    say(stack, sender, "你好")
    assert is_handoff(say(stack, sender, "我要转人工")[0]["text"], "zh")
    queue = HandoffQueue.create(stack.settings.redis_url, stack.settings.key_prefix)
    try:
        await _eventually(lambda: _waiting(queue, sender), "the handoff in the queue")
        book = TicketBook(queue.client, stack.settings.key_prefix)
        ticket = await book.create(writer, "en", "li@example.com", "my code never arrived, please call me")
        await asyncio.sleep(1.2)  # appendfsync everysec: what a crash can lose is the last second
    finally:
        await queue.close()

    stack.kill_service("redis")  # a crash, not a clean shutdown: only the AOF brings it back
    stack.restart_service("redis")

    assert user_texts(stack, sender) == ["你好", "我要转人工"]
    queue = HandoffQueue.create(stack.settings.redis_url, stack.settings.key_prefix)
    try:
        assert await _waiting(queue, sender)
        kept = await TicketBook(queue.client, stack.settings.key_prefix).get(ticket.ticket_id)
        assert kept.message == "my code never arrived, please call me"
    finally:
        await queue.close()
    # and the product goes on using the restarted Redis
    assert say(stack, new_sender(), "hello")[0]["text"] == texts("utter_greet")["en"]
