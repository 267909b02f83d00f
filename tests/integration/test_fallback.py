"""Low confidence: the two-stage fallback in the customer's language, then a person."""

from __future__ import annotations

import json
import uuid

import pytest

from scripts.stack import Stack
from tests.integration.helpers import redis_client, say, texts

pytestmark = pytest.mark.integration


def handoff_records(stack: Stack) -> list[dict]:
    entries = redis_client(stack).xrange(f"{stack.settings.key_prefix}:handoff:requests")
    return [json.loads(fields["record"]) for _, fields in entries]


@pytest.mark.parametrize(
    ("language", "unclear", "still_unclear"),
    [("en", "xqzt vbnm plok", "zzkq wwpt yyq"), ("zh", "桌子飞到月亮吃了蓝色", "天空为什么这么绿")],
)
def test_unclear_twice_reaches_a_person(
    stack: Stack, language: str, unclear: str, still_unclear: str
) -> None:
    sender = "fb-" + uuid.uuid4().hex[:10]
    first = say(stack, sender, unclear)
    assert first[0]["text"] == texts("utter_ask_affirmation_intro")[language]
    payloads = [b["payload"] for b in first[0]["buttons"]]
    assert payloads[-2:] == ["/ask_human", "/out_of_scope"]
    titles = [b["title"] for b in first[0]["buttons"]]
    assert titles[-2:] == [texts("utter_talk_to_person")[language], texts("utter_none_of_these")[language]]

    second = say(stack, sender, still_unclear)
    assert second[0]["text"] == texts("utter_default")[language]
    mine = [r for r in handoff_records(stack) if r["conversation_id"] == sender]
    assert len(mine) == 1 and mine[0]["reason"] == "second_fallback"


def test_choosing_a_suggestion_answers_it(stack: Stack) -> None:
    sender = "fb-" + uuid.uuid4().hex[:10]
    say(stack, sender, "xqzt vbnm plok")
    reply = say(stack, sender, "/payment_methods")
    assert reply[0]["text"] == texts("utter_payment_methods")["en"]
