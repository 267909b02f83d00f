"""handoff.requests against the machine's Redis (TEST_REDIS_URL or 127.0.0.1:6379), own key prefix.

The redis_url fixture (tests/integration/conftest.py) starts a private redis-server where none answers.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import redis

from handoff.records import HandoffRecord, Priority, Reason, TranscriptLine
from handoff.requests import HandoffRequestLog, Outcome, spooled_records
from scripts.stack import free_port

pytestmark = pytest.mark.integration


def record(conversation_id: str) -> HandoffRecord:
    return HandoffRecord.build(
        conversation_id=conversation_id,
        channel="rest",
        language="en",
        reason=Reason.CUSTOMER_REQUEST,
        priority=Priority.NORMAL,
        category="general",
        summary="wants a person",
        transcript=[TranscriptLine("customer", "human please", "2026-11-23T10:00:00+00:00")],
    )


@pytest.fixture
def prefix(redis_url: str) -> Any:
    """A fresh namespace; only its own keys are deleted afterwards."""
    name = "t" + secrets.token_hex(6)
    client = redis.Redis.from_url(redis_url)
    yield name
    for key in client.scan_iter(f"{name}:*"):
        client.delete(key)


async def test_a_request_is_queued_once(redis_url: str, prefix: str, tmp_path: Path) -> None:
    log = HandoffRequestLog.create(redis_url, prefix, tmp_path / "spool.jsonl")
    assert await log.record(record("c1")) is Outcome.QUEUED
    assert await log.record(record("c1")) is Outcome.ALREADY_QUEUED
    assert await log.record(record("c2")) is Outcome.QUEUED
    entries = redis.Redis.from_url(redis_url, decode_responses=True).xrange(log.stream_key)
    assert [json.loads(f["record"])["conversation_id"] for _, f in entries] == ["c1", "c2"]
    await log.close()


async def test_redis_away_spools_and_replays(redis_url: str, prefix: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    dead = HandoffRequestLog.create(f"redis://127.0.0.1:{free_port()}/0", prefix, spool)
    assert await dead.record(record("c9")) is Outcome.SPOOLED
    assert [r["conversation_id"] for r in spooled_records(spool)] == ["c9"]
    await dead.close()
    alive = HandoffRequestLog.create(redis_url, prefix, spool)
    assert await alive.record(record("c10")) is Outcome.QUEUED
    entries = redis.Redis.from_url(redis_url, decode_responses=True).xrange(alive.stream_key)
    assert [json.loads(f["record"])["conversation_id"] for _, f in entries] == ["c9", "c10"]
    assert not spool.exists()
    await alive.close()
