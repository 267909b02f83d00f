"""A conversation longer than Rasa's turn window, against the real stack
(Redis, action server, Rasa, web service).

Rasa loads only the latest events for a turn (bot/tracker_store.py); the
customer must not notice, and the agent must still get the whole transcript.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from common.tracker_keys import events_key, window_key
from scripts.stack import Stack
from tests.integration.helpers import handoff_records, is_handoff, redis_client, say, texts

pytestmark = pytest.mark.integration


def test_after_many_turns_the_bot_still_answers_and_the_agent_gets_every_line(stack: Stack) -> None:
    sender = "it-long-" + uuid.uuid4().hex[:8]
    first = "你好"
    assert say(stack, sender, first)[0]["text"] == texts("utter_greet")["zh"]
    for i in range(35):
        replies = say(stack, sender, "hello" if i % 2 else "thanks")
        assert replies, f"no reply at turn {i + 2}"
    client = redis_client(stack)
    prefix = stack.settings.key_prefix
    assert client.exists(window_key(prefix, sender)), "the turn window never moved"

    # the customer still gets what they got on turn 1, in their language
    assert say(stack, sender, "hello")[0]["text"] == texts("utter_greet")["en"]
    assert say(stack, sender, "你好")[0]["text"] == texts("utter_greet")["zh"]

    replies = say(stack, sender, "I want a human")
    assert is_handoff(replies[-1]["text"], "zh") or is_handoff(replies[-1]["text"], "en")
    (record,) = handoff_records(stack, sender)
    customer_lines = [line["text"] for line in record["transcript"] if line["speaker"] == "customer"]
    assert customer_lines[0] == first
    assert len(customer_lines) == 1 + 35 + 2 + 1

    # Rasa's tracker API (what the console and exports read) has every event
    tracker = httpx.get(
        f"http://127.0.0.1:{stack.settings.rasa_port}/conversations/{sender}/tracker",
        params={"token": stack.settings.rasa_token},
        timeout=30,
    ).json()
    users = [e["text"] for e in tracker["events"] if e["event"] == "user"]
    assert users[0] == first and users[-1] == "I want a human"
    assert len(users) == 1 + 35 + 2 + 1
    assert client.llen(events_key(prefix, sender)) > 120  # more than a turn loads
