"""One conversation carrying a phone number, an e-mail, a card code and a Luhn-valid bank card number,
against the real stack: none of them whole in the logs, the metric labels, the analytics, the export or
the Rasa event stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import asyncio as aioredis

from handoff.analytics import Analytics
from handoff.auth import AgentDirectory, Role
from scripts.stack import ROOT, Stack
from tests.integration.helpers import redis_client, say

pytestmark = pytest.mark.integration

PHONE, EMAIL, CODE, CARD = "13812345678", "wang.wu@example.com", "K7QM-2XPA-9FTR-4WZD", "4111 1111 1111 1111"
MASKED = ("138****5678", "w***@example.com", "K7QM-****-****-4WZD", "**** **** **** 1111")
# what must not appear anywhere: the values whole, and the hidden middle of the card code
WHOLE = (PHONE, EMAIL, CODE, CARD, CARD.replace(" ", ""), "2XPA-9FTR")
MESSAGE = f"my card {CARD} was charged, code {CODE} does not work, call {PHONE} or mail {EMAIL}"


def label_values(url: str, token: str) -> str:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10).text
    return "\n".join(
        value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
    )


async def _analytics(stack: Stack, name: str, password: str) -> dict[str, Any]:
    client = aioredis.Redis.from_url(stack.settings.redis_url, decode_responses=True)
    try:
        # the call the action server makes when the knowledge base has no answer
        await Analytics(client, stack.settings.key_prefix).unanswered(MESSAGE, "en", "handoff")
        await AgentDirectory(client, stack.settings.key_prefix).add(name, password, Role.SUPERVISOR)
        stored = await Analytics(client, stack.settings.key_prefix).unanswered_questions(limit=50)
    finally:
        await client.aclose()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.settings.web_port}", timeout=60) as http:
        login = await http.post("/api/agent/login", json={"name": name, "password": password})
        assert login.status_code == 200, login.text
        report = (await http.get("/api/supervisor/analytics")).json()
    return {"stored": stored, "report": report}


def test_personal_values_are_masked_in_logs_metrics_analytics_and_exports(
    stack: Stack, tmp_path: Path
) -> None:
    sender = "it-privacy-" + uuid.uuid4().hex[:8]
    say(stack, sender, MESSAGE)
    say(stack, sender, "I want to talk to a human")

    # exports: the values are there, masked
    env = {**os.environ, **stack.env()}
    done = subprocess.run(
        [sys.executable, "-m", "handoff", "privacy", "export", sender, "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    exported = "".join(p.read_text(encoding="utf-8") for p in tmp_path.iterdir())
    for masked in MASKED:
        assert masked in exported, f"{masked} missing from the export"

    # analytics: stored masked and shown masked
    found = asyncio.run(_analytics(stack, "pia-" + uuid.uuid4().hex[:6], "privacy test password"))
    analytics_text = json.dumps(found, ensure_ascii=False)
    for masked in ("138****5678", "w***@example.com", "**** **** **** 1111"):
        assert masked in analytics_text, f"{masked} missing from the analytics"

    # metric labels of every service, and every log
    s = stack.settings
    labels = "\n".join(
        label_values(f"http://127.0.0.1:{port}", s.metrics_token)
        for port in (s.rasa_port, s.action_port, s.web_port)
    )
    logs = "\n".join(path.read_text(errors="replace") for path in stack.log_dir.glob("*.log"))
    # the event stream the handoff service and any other reader consume (bot/broker.py)
    entries = redis_client(stack).xrange(f"{s.key_prefix}:rasa:events")
    streamed = "\n".join(fields["event"] for _, fields in entries if sender in fields["event"])
    assert "138****5678" in streamed and "w***@example.com" in streamed
    checked = {
        "export": exported,
        "analytics": analytics_text,
        "metrics": labels,
        "logs": logs,
        "events": streamed,
    }
    for where, text in checked.items():
        for value in WHOLE:
            assert value not in text, f"{value!r} found whole in the {where}"
