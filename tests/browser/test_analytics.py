"""The supervisor's analytics in Debian's headless chromium against the real stack.

Customers ask what the knowledge base cannot answer (with a phone number and some
markup in it), one is contained, one is handed to a person; the Analytics tab shows
containment, the trends and the unanswered questions grouped by meaning, masked and
as text; "Draft KB article" opens a prefilled article file that the editor saves.
Screenshot in var/test-results/browser/analytics.png (docs/analytics.png is a copy).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from redis import asyncio as aioredis

from handoff.analytics import Analytics
from handoff.auth import Role
from knowledge.articles import parse_article
from scripts.stack import Stack
from tests.browser.test_console import ARTIFACTS, add_agent, log_in
from tests.browser.test_console import console as console
from tests.integration.helpers import redis_client, say

pytestmark = pytest.mark.browser

WITH_PHONE = "my parrot ate my gift card, call me on 13812345678"
MARKUP = "<img src=x onerror=alert(3)> xqzt vbnm plok"


async def note_unanswered(stack: Stack, text: str) -> None:
    client = aioredis.Redis.from_url(stack.settings.redis_url, decode_responses=True)
    try:
        await Analytics(client, stack.settings.key_prefix).unanswered(text, "en", "handoff")
    finally:
        await client.aclose()


def unanswered_texts(stack: Stack) -> list[str]:
    entries = redis_client(stack).xrange(f"{stack.settings.key_prefix}:analytics:unanswered")
    return [fields["text"] for _, fields in entries]


def test_analytics_shows_containment_and_unanswered_questions_and_drafts_an_article(
    console: Any,
    stack: Stack,
) -> None:
    name = "sam-" + secrets.token_hex(3)
    add_agent(stack, name, Role.SUPERVISOR)
    contained = "an-ok-" + uuid.uuid4().hex[:6]
    say(stack, contained, "hello")
    for _ in range(2):  # asked to rephrase, then handed to a person: both noted by the action server
        sender = "an-miss-" + uuid.uuid4().hex[:6]
        say(stack, sender, MARKUP)
        say(stack, sender, MARKUP)
    # a question with a phone number in it: the NLU reads such messages as "inform" (the customer
    # giving their number), so it is noted the way the action server notes one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, note_unanswered(stack, WITH_PHONE)).result(timeout=30)
    deadline = time.monotonic() + 15
    while len(unanswered_texts(stack)) < 5 and time.monotonic() < deadline:
        time.sleep(0.3)
    recorded = unanswered_texts(stack)
    assert any("138****5678" in t for t in recorded), recorded
    assert not any("13812345678" in t for t in recorded), "questions are stored masked"

    log_in(console, name)
    console.locator("#tab-analytics").click()
    rows = console.locator("#unanswered .unanswered-row")
    rows.first.wait_for(state="visible")
    table = console.locator("#unanswered").text_content() or ""
    assert "138****5678" in table and "13812345678" not in table
    assert MARKUP in table, "customer markup is shown as text"
    assert console.locator("#unanswered img").count() == 0
    assert console.locator("#an-containment").inner_text().endswith("%")
    assert int(console.locator("#an-conversations").inner_text()) >= 1
    assert int(console.locator("#an-handoffs").inner_text()) >= 1
    console.locator("#chart-containment rect.col").first.wait_for(state="attached")
    # the two wordings of the same nonsense are one group, counted together
    counts = [int(c) for c in console.locator("#unanswered .unanswered-count").all_inner_texts()]
    assert max(counts) >= 2
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console.set_viewport_size({"width": 1280, "height": 1180})  # tiles, charts and the table in one picture
    console.screenshot(path=str(ARTIFACTS / "analytics.png"))

    rows.first.get_by_role("button", name="Draft KB article").click()
    dialog = console.locator("#draft-dialog")
    dialog.wait_for(state="visible")
    text = console.locator("#draft-text").input_value()
    assert text.startswith("---\nid: draft-") and "13812345678" not in text
    path = Path(console.locator("#draft-path").inner_text())
    assert path.is_file() and path.is_relative_to(stack.settings.var_dir / "kb-drafts")
    written = text.replace(
        "(Write the answer here: one or two sentences that answer the question, then the steps.)",
        "We could not read that message. Please describe the problem in a sentence.",
    )
    console.locator("#draft-text").fill(written)
    console.locator("#draft-save").click()
    console.locator("#draft-status", has_text="Saved").wait_for()
    assert path.read_text(encoding="utf-8") == written
    assert parse_article(path).language in ("en", "zh")
    console.screenshot(path=str(ARTIFACTS / "analytics-draft.png"))
    assert console.dialogs == [], "no script from customer text may run"
