"""handoff.retention: the purge on the machine's Redis (own prefix); export and commands on the real stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from common.tracker_keys import events_key, window_key
from handoff import retention
from handoff.queue import HandoffQueue
from handoff.workers import Workers
from scripts.stack import ROOT, Stack
from tests.integration.helpers import say

pytestmark = pytest.mark.integration

DAY = 86400.0


async def conversation(q: HandoffQueue, cid: str, days_ago: float, state: str | None = None) -> None:
    """A stored conversation in the tracker store's layout, last active ``days_ago``."""
    at = time.time() - days_ago * DAY
    events = [
        {"event": "user", "text": "hello 13812345678", "timestamp": at - 5},
        {"event": "bot", "text": "Hi!", "timestamp": at},
    ]
    await q.client.rpush(events_key(q.prefix, cid), *[json.dumps(e) for e in events])
    await q.client.set(window_key(q.prefix, cid), json.dumps({"from": 0, "restore": []}))
    await q.client.rpush(f"{q.prefix}:rest:outbox:{cid}", "{}")
    if state:
        await q.client.hset(f"{q.prefix}:handoff:conv:{cid}", mapping={"state": state, "record": "{}"})


async def ticket(q: HandoffQueue, ticket_id: str, cid: str, days_ago: float) -> None:
    body = {"ticket_id": ticket_id, "conversation_id": cid, "contact": "a@b.cn", "message": "call me"}
    await q.client.hset(f"{q.prefix}:handoff:tickets", ticket_id, json.dumps(body))
    await q.client.zadd(f"{q.prefix}:handoff:ticket-order", {ticket_id: time.time() - days_ago * DAY})


async def test_purge_removes_old_conversations_keeps_recent_and_open_ones(queue: HandoffQueue) -> None:
    q = queue
    await conversation(q, "old-1", days_ago=40)
    await conversation(q, "old-open", days_ago=40, state="waiting")
    await conversation(q, "old-closed", days_ago=45, state="closed")
    await conversation(q, "recent", days_ago=2)
    await ticket(q, "T1", "recent", days_ago=50)  # old ticket of a recent conversation
    await ticket(q, "T2", "old-1", days_ago=1)  # recent ticket of a purged conversation
    await ticket(q, "T3", "recent", days_ago=1)
    stream = f"{q.prefix}:rasa:events"
    old_ms = int((time.time() - 40 * DAY) * 1000)
    await q.client.xadd(stream, {"event": "old"}, id=f"{old_ms}-0")
    await q.client.xadd(stream, {"event": "new"})

    dry = await retention.purge(q.client, q.prefix, days=30, dry_run=True)
    assert sorted(dry.conversations) == ["old-1", "old-closed"] and dry.tickets == 2
    assert await q.client.exists(events_key(q.prefix, "old-1")), "a dry run deletes nothing"

    report = await retention.purge(q.client, q.prefix, days=30)
    assert sorted(report.conversations) == ["old-1", "old-closed"] and report.kept_open == ["old-open"]
    for cid in ("old-1", "old-closed"):
        for key in (events_key(q.prefix, cid), window_key(q.prefix, cid), f"{q.prefix}:rest:outbox:{cid}"):
            assert not await q.client.exists(key), key
    assert not await q.client.exists(f"{q.prefix}:handoff:conv:old-closed")
    assert await q.client.exists(events_key(q.prefix, "recent"), events_key(q.prefix, "old-open")) == 2
    assert sorted(await q.client.hkeys(f"{q.prefix}:handoff:tickets")) == ["T3"]
    assert [fields["event"] for _, fields in await q.client.xrange(stream)] == ["new"]
    assert report.tickets == 2 and report.stream_entries == 1


async def test_purge_refuses_a_retention_of_zero_days(queue: HandoffQueue) -> None:
    with pytest.raises(ValueError):
        await retention.purge(queue.client, queue.prefix, days=0)


async def test_the_schedule_runs_the_purge_once_a_day(queue: HandoffQueue) -> None:
    await conversation(queue, "old-sched", days_ago=40)
    workers = Workers(queue, rasa=None, texts=None, consumer="w1", retention_days=30)  # type: ignore[arg-type]
    await workers.retention_once()
    assert not await queue.client.exists(events_key(queue.prefix, "old-sched"))
    await conversation(queue, "old-sched-2", days_ago=40)
    await workers.retention_once()  # the same day: already done (by this or another replica)
    assert await queue.client.exists(events_key(queue.prefix, "old-sched-2"))


# -- the commands against the real stack ---------------------------------------------------------


def command(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env: dict[str, Any] = {**os.environ, **stack.env()}
    return subprocess.run(
        [sys.executable, "-m", "handoff", "privacy", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_export_writes_masked_json_and_html_with_a_hash_that_detects_changes(
    stack: Stack, tmp_path: Path
) -> None:
    sender = "it-export-" + uuid.uuid4().hex[:8]
    say(stack, sender, "hello, my phone is 13812345678 and mail li.si@example.com")
    say(stack, sender, "<script>alert(1)</script>")
    done = command(stack, "export", sender, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    json_path, html_path = tmp_path / f"{sender}.json", tmp_path / f"{sender}.html"
    document = json.loads(json_path.read_text(encoding="utf-8"))
    everything = json_path.read_text(encoding="utf-8") + html_path.read_text(encoding="utf-8")
    assert "13812345678" not in everything and "li.si@example.com" not in everything
    assert any("138****5678" in line["text"] for line in document["transcript"])
    assert [line["speaker"] for line in document["transcript"]][:2] == ["customer", "bot"]
    page = html_path.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert document["sha256"] in page and document["sha256"] in done.stdout

    assert command(stack, "verify", str(json_path)).returncode == 0
    document["transcript"][0]["text"] = "edited"
    json_path.write_text(json.dumps(document), encoding="utf-8")
    tampered = command(stack, "verify", str(json_path))
    assert tampered.returncode == 1 and "CHANGED" in tampered.stdout


def test_verify_refuses_files_that_are_not_exports(stack: Stack, tmp_path: Path) -> None:
    for name, content in (("garbage.json", "not json {"), ("other.json", '{"a": 1}'), ("list.json", "[1]")):
        (tmp_path / name).write_text(content, encoding="utf-8")
        done = command(stack, "verify", str(tmp_path / name))
        assert done.returncode == 2 and "not" in done.stderr and "Traceback" not in done.stderr
    missing = command(stack, "verify", str(tmp_path / "missing.json"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_export_of_an_unknown_conversation_is_a_clear_error(stack: Stack, tmp_path: Path) -> None:
    done = command(stack, "export", "never-" + uuid.uuid4().hex[:6], "--out", str(tmp_path))
    assert done.returncode == 2 and "no conversation" in done.stderr


def test_purge_command_dry_run_on_the_stack(stack: Stack) -> None:
    done = command(stack, "purge", "--days", "3650", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("would purge 0 conversations")
    assert command(stack, "purge", "--days", "0").returncode == 2
