"""handoff.queue, handoff.auth and handoff.tickets against the machine's Redis, one key prefix per test."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from redis import asyncio as aioredis

from handoff.auth import MAX_FAILURES, AgentDirectory, LockedOut, Role, hash_password, verify_password
from handoff.queue import ClaimError, HandoffQueue, NotHolder, Resolution, State
from handoff.records import HandoffRecord, Priority, Reason
from handoff.tickets import TicketBook, TicketClosed

pytestmark = pytest.mark.integration


def record(cid: str, priority: Priority = Priority.NORMAL, minutes_ago: int = 0) -> HandoffRecord:
    return HandoffRecord.build(
        conversation_id=cid,
        channel="rest",
        language="en",
        reason=Reason.CUSTOMER_REQUEST,
        priority=priority,
        category="general",
        summary="first question: where is my code",
        transcript=[],
        now=datetime.now(timezone.utc) - timedelta(minutes=minutes_ago),
    )


async def admit(queue: HandoffQueue, rec: HandoffRecord) -> bool:
    """What handoff.requests does (the gate) followed by the service admitting the request."""
    await queue.client.set(queue.gate_key(rec.conversation_id), rec.created, nx=True)
    return await queue.admit(rec)


async def test_waiting_order_is_priority_then_sla(queue: HandoffQueue) -> None:
    await admit(queue, record("normal-old", minutes_ago=30))
    await admit(queue, record("normal-new"))
    await admit(queue, record("urgent", Priority.URGENT))
    await admit(queue, record("high", Priority.HIGH))
    assert [c.record.conversation_id for c in await queue.waiting()] == [
        "urgent",
        "high",
        "normal-old",
        "normal-new",
    ]
    assert await queue.position("normal-new") == 4


async def test_a_second_request_does_not_queue_twice(queue: HandoffQueue) -> None:
    assert await admit(queue, record("c1"))
    assert not await queue.admit(record("c1"))
    assert len(await queue.waiting()) == 1


async def test_a_request_that_is_no_longer_live_is_not_admitted(queue: HandoffQueue) -> None:
    # cancelled before the service got to it: the gate is gone
    assert not await queue.admit(record("cancelled-early"))
    # delivered again after the handoff ended (a retried stream entry)
    rec = record("ended")
    await admit(queue, rec)
    await queue.claim("ended", "alice")
    await queue.end("ended", State.CLOSED, "alice", Resolution.RESOLVED)
    assert not await queue.admit(rec)
    assert (await queue.get("ended")).state is State.CLOSED  # type: ignore[union-attr]
    assert await queue.client.ttl(queue.conv_key("ended")) > 0, "ended conversations expire"


async def test_a_cancel_does_not_end_a_chat_an_agent_just_claimed(queue: HandoffQueue) -> None:
    await admit(queue, record("c1"))
    await queue.claim("c1", "alice")
    assert not await queue.end("c1", State.CANCELLED, only_if=State.WAITING)
    assert (await queue.get("c1")).state is State.ACTIVE  # type: ignore[union-attr]


async def test_two_agents_claiming_at_once_one_wins_every_time(queue: HandoffQueue, redis_url: str) -> None:
    # separate connections, as two consoles would have
    other = HandoffQueue.create(redis_url, queue.prefix)
    try:
        for round_ in range(100):
            cid = f"race-{round_}"
            await admit(queue, record(cid))
            results = await asyncio.gather(
                queue.claim(cid, "alice"), other.claim(cid, "bob"), return_exceptions=True
            )
            winners = [r for r in results if not isinstance(r, Exception)]
            losers = [r for r in results if isinstance(r, ClaimError)]
            assert len(winners) == 1 and len(losers) == 1, results
            holder = (await queue.get(cid)).agent  # type: ignore[union-attr]
            assert holder == winners[0].agent and losers[0].holder == holder
    finally:
        await other.close()


async def test_requests_are_admitted_through_the_consumer_group(queue: HandoffQueue) -> None:
    rec = record("via-stream")
    await queue.client.set(queue.gate_key("via-stream"), rec.created)
    await queue.client.xadd(queue.requests_key, {"record": rec.to_json()})
    assert await queue.ingest("service-a", block_ms=100) == 1
    assert await queue.position("via-stream") == 1
    pending = await queue.client.xpending(queue.requests_key, "queue")
    assert pending["pending"] == 0, "admitted requests are acknowledged"


async def test_a_request_left_by_a_crashed_service_is_taken_over(queue: HandoffQueue) -> None:
    await queue.ensure_group()
    rec = record("orphan")
    await queue.client.set(queue.gate_key("orphan"), rec.created)
    await queue.client.xadd(queue.requests_key, {"record": rec.to_json()})
    # service A reads it and dies before admitting it
    await queue.client.xreadgroup("queue", "service-a", {queue.requests_key: ">"}, count=10)
    assert await queue.position("orphan") is None
    await queue.ingest("service-b", block_ms=100, idle_ms=0)
    assert await queue.position("orphan") == 1


async def test_a_dead_console_gives_its_conversations_back(queue: HandoffQueue) -> None:
    await admit(queue, record("first", Priority.HIGH))
    await admit(queue, record("second"))
    await queue.heartbeat("alice")
    await queue.claim("first", "alice")
    await queue.client.zadd(queue.key("online"), {"alice": 0})  # alice's heartbeats stopped long ago
    assert await queue.recover_orphans() == ["first"]
    assert [c.record.conversation_id for c in await queue.waiting()] == ["first", "second"]
    assert (await queue.get("first")).state is State.WAITING  # type: ignore[union-attr]


async def test_only_the_holder_acts_and_the_end_reopens_the_entrance(queue: HandoffQueue) -> None:
    await admit(queue, record("c1"))  # sets the gate, as handoff.requests does
    assert await queue.client.exists(queue.gate_key("c1"))
    await queue.claim("c1", "alice")
    with pytest.raises(NotHolder):
        await queue.end("c1", State.CLOSED, "bob")
    with pytest.raises(NotHolder):
        await queue.transfer("c1", "bob", "carol")
    await queue.transfer("c1", "alice", "bob")
    assert await queue.end("c1", State.CLOSED, "bob", Resolution.RESOLVED)
    assert not await queue.end("c1", State.CLOSED, "bob"), "closing twice does nothing"
    assert not await queue.client.exists(queue.gate_key("c1"))
    ended = await queue.get("c1")
    assert ended is not None and ended.state is State.CLOSED and ended.resolution == "resolved"


async def test_ratings_only_after_close_and_once(queue: HandoffQueue) -> None:
    await admit(queue, record("c1"))
    assert not await queue.rate("c1", 5), "nothing to rate while waiting"
    await queue.claim("c1", "alice")
    await queue.end("c1", State.CLOSED, "alice", Resolution.RESOLVED)
    with pytest.raises(ValueError):
        await queue.rate("c1", 9)
    assert await queue.rate("c1", 4)
    await queue.rate("c1", 1)
    assert (await queue.get("c1")).rating == 4  # type: ignore[union-attr]
    stats = await queue.stats()
    assert stats["csat"] == {
        "average": 4.0,
        "count": 1,
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0},
    }
    assert stats["closed_today"] == 1 and stats["handoffs_by_reason"] == {"customer_request": 1}


async def test_lines_and_events_for_the_console(queue: HandoffQueue) -> None:
    await admit(queue, record("c1"))
    start = "0-0"
    await queue.add_line("c1", "customer", "<script>alert(1)</script>")
    lines = await queue.lines("c1")
    assert lines[0]["speaker"] == "customer" and lines[0]["text"] == "<script>alert(1)</script>"
    kinds = [event.kind for _, event in await queue.read_events(start, block_ms=10)]
    assert kinds == ["admitted", "line"]


async def test_passwords_sessions_and_lockout(queue: HandoffQueue) -> None:
    stored = hash_password("correct horse")
    assert verify_password("correct horse", stored) and not verify_password("wrong", stored)
    assert "correct horse" not in stored
    agents = AgentDirectory(queue.client, queue.prefix, session_ttl_seconds=1)
    with pytest.raises(ValueError):
        await agents.add("alice", "short", Role.AGENT)
    await agents.add("alice", "long enough pw", Role.SUPERVISOR)
    raw = json.dumps(await queue.client.hgetall(queue.key("agents")))
    assert "long enough pw" not in raw
    session = await agents.login("alice", "long enough pw")
    assert session is not None and session.role is Role.SUPERVISOR
    assert (await agents.session(session.token)) == session
    await asyncio.sleep(1.2)
    assert await agents.session(session.token) is None, "sessions expire"
    for _ in range(MAX_FAILURES):
        assert await agents.login("alice", "nope") is None
    with pytest.raises(LockedOut):
        await agents.login("alice", "long enough pw")


async def test_tickets_are_left_answered_and_closed(queue: HandoffQueue) -> None:
    book = TicketBook(queue.client, queue.prefix)
    ticket = await book.create("c1", "zh", "li@example.com", "卡密没收到，请联系我")
    assert [t.ticket_id for t in await book.all()] == [ticket.ticket_id]
    answered = await book.answer(ticket.ticket_id, "alice", "已补发")
    assert answered.state == "answered" and answered.reply == "已补发"
    with pytest.raises(TicketClosed):
        await book.answer(ticket.ticket_id, "bob", "已补发")  # a second answer sends nothing
    sent: Any = json.loads((await queue.client.lrange(queue.key("ticket-outbox"), 0, -1))[0])
    assert sent == {"to": "li@example.com", "ticket": ticket.ticket_id, "text": "已补发"}
    assert (await book.close(ticket.ticket_id, "alice")).state == "closed"


async def test_a_fresh_connection_sees_the_same_queue(queue: HandoffQueue, redis_url: str) -> None:
    """Everything lives in Redis: a restarted service picks up where the last one stopped."""
    for i in range(5):
        await admit(queue, record(f"w{i}"))
    again = HandoffQueue(aioredis.from_url(redis_url, decode_responses=True), queue.prefix)
    try:
        assert [c.record.conversation_id for c in await again.waiting()] == [f"w{i}" for i in range(5)]
    finally:
        await again.close()


async def test_a_late_claim_is_one_breach_even_after_a_requeue(queue: HandoffQueue) -> None:
    await admit(queue, record("late", minutes_ago=300))  # normal priority: 4 h to first response
    await queue.claim("late", "alice")
    await queue.requeue("late", "alice")
    await queue.claim("late", "bob")
    assert int(await queue.client.get(queue.key("stats", "sla_breaches"))) == 1
