"""REST channel against the real stack (starts Redis, action server, Rasa, web service)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from common.tracker_keys import events_key
from scripts.stack import Stack
from tests.integration.helpers import (
    is_chinese,
    is_handoff,
    is_kb_answer,
    redis_client,
    rest_headers,
    rest_url,
    say,
    texts,
)

pytestmark = pytest.mark.integration


def stored_events(stack: Stack, sender: str) -> list[dict]:
    raw = redis_client(stack).lrange(events_key(stack.settings.key_prefix, sender), 0, -1)
    assert raw, f"no tracker for {sender} in Redis"
    return [json.loads(item) for item in raw]


def new_sender() -> str:
    return "it-" + uuid.uuid4().hex[:12]


def test_greets_in_the_language_the_customer_writes(stack: Stack) -> None:
    zh = say(stack, new_sender(), "你好")
    en = say(stack, new_sender(), "hello")
    assert zh[0]["text"] == texts("utter_greet")["zh"]
    assert en[0]["text"] == texts("utter_greet")["en"]


@pytest.mark.parametrize(("message", "language"), [("我要转人工", "zh"), ("I want a human", "en")])
def test_explicit_handoff_request_in_each_language(stack: Stack, message: str, language: str) -> None:
    sender = new_sender()
    replies = say(stack, sender, message)
    assert len(replies) == 1 and is_handoff(replies[0]["text"], language)
    entries = redis_client(stack).xrange(f"{stack.settings.key_prefix}:handoff:requests")
    records = [json.loads(fields["record"]) for _, fields in entries]
    mine = [r for r in records if r["conversation_id"] == sender]
    assert len(mine) == 1 and mine[0]["language"] == language and mine[0]["reason"] == "customer_request"
    # asking again does not queue twice
    again = say(stack, sender, message)
    # a position update parked since the first message may come first
    assert again[-1]["text"] == texts("utter_handoff_pending")[language]


def test_language_follows_each_message(stack: Stack) -> None:
    sender = new_sender()
    assert is_chinese(say(stack, sender, "你好")[0]["text"])
    assert not is_chinese(say(stack, sender, "how do I top up genshin")[0]["text"])
    assert is_chinese(say(stack, sender, "支付方式有哪些")[0]["text"])


def test_id_alone_keeps_the_conversation_language(stack: Stack) -> None:
    sender = new_sender()
    say(stack, sender, "你好")
    reply = say(stack, sender, "DG202611230017")
    assert is_chinese(reply[0]["text"])


@pytest.mark.parametrize("message", ["", "   \n\t ", None])
def test_empty_message_gets_a_prompt_not_silence(stack: Stack, message: object) -> None:
    replies = say(stack, new_sender(), message)
    assert replies and replies[0]["text"] == texts("utter_empty_message")["en"]


def test_empty_message_prompt_follows_the_known_language(stack: Stack) -> None:
    sender = new_sender()
    say(stack, sender, "你好")
    assert say(stack, sender, "")[0]["text"] == texts("utter_empty_message")["zh"]


@pytest.mark.parametrize(("unit", "language"), [("卡密", "zh"), ("help ", "en")])
def test_ten_thousand_characters_get_a_clear_answer(stack: Stack, unit: str, language: str) -> None:
    sender = new_sender()
    message = (unit * 10_000)[:10_000]
    replies = say(stack, sender, message)
    assert replies[0]["text"] == texts("utter_message_too_long")[language]
    # nothing lost: the rejected message is on the tracker for an agent to read
    events = stored_events(stack, sender)
    rejected = [
        e["metadata"]["rejected_message"] for e in events if "rejected_message" in (e.get("metadata") or {})
    ]
    assert (
        len(rejected) == 1
        and rejected[0]["chars"] >= 9999
        and rejected[0]["preview"].startswith(unit.strip())
    )


def test_invalid_json_is_a_400(stack: Stack) -> None:
    reply = httpx.post(rest_url(stack), content=b"{oops", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_json"


def test_missing_sender_is_rejected_not_shared(stack: Stack) -> None:
    reply = httpx.post(rest_url(stack), json={"message": "hello"})
    assert reply.status_code == 400 and reply.json()["error"] == "missing_sender"
    # stock Rasa would have put this customer into the shared "default" conversation
    assert not redis_client(stack).exists(events_key(stack.settings.key_prefix, "default"))


# wx:/tg: name WeChat and Telegram conversations: a web client must not write into them
@pytest.mark.parametrize("sender", ["", "has spaces", "x" * 200, "wx:oSomeoneElse", "tg:12345"])
def test_invalid_sender_ids_are_rejected(stack: Stack, sender: str) -> None:
    reply = httpx.post(rest_url(stack), json={"sender": sender, "message": "hi"}, headers=rest_headers(stack))
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_sender"


def test_non_string_message_is_rejected(stack: Stack) -> None:
    reply = httpx.post(rest_url(stack), json={"sender": new_sender(), "message": {"text": "hi"}})
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_message"


def test_unknown_sender_starts_a_new_conversation(stack: Stack) -> None:
    sender = new_sender()
    assert not redis_client(stack).exists(events_key(stack.settings.key_prefix, sender))
    assert say(stack, sender, "hello")[0]["text"] == texts("utter_greet")["en"]


def test_tracker_is_stored_in_redis(stack: Stack) -> None:
    sender = new_sender()
    say(stack, sender, "我的卡密用不了")
    events = stored_events(stack, sender)
    assert any(e.get("event") == "user" and e.get("text") == "我的卡密用不了" for e in events)
    assert any(
        e.get("event") == "slot" and e.get("name") == "language" and e.get("value") == "zh" for e in events
    )


def test_urgent_topic_hands_off_at_once(stack: Stack) -> None:
    sender = new_sender()
    replies = say(stack, sender, "有人盗了我的账号，密码被改了")
    assert replies[0]["text"] == texts("utter_handoff_urgent")["zh"]
    records = [
        json.loads(f["record"])
        for _, f in redis_client(stack).xrange(f"{stack.settings.key_prefix}:handoff:requests")
    ]
    mine = next(r for r in records if r["conversation_id"] == sender)
    assert mine["priority"] == "urgent" and mine["category"] == "account_security"


def test_redis_going_away_mid_conversation_loses_nothing(stack: Stack) -> None:
    sender = new_sender()
    say(stack, sender, "你好")
    stack.stop_service("redis")
    try:
        reply = httpx.post(
            rest_url(stack),
            json={"sender": sender, "message": "怎么退款"},
            headers=rest_headers(stack),
            timeout=60,
        )
        # a clear, retryable answer instead of an empty 200
        assert reply.status_code == 503 and reply.json()["error"] == "unavailable"
    finally:
        stack.restart_service("redis")
    replies = say(stack, sender, "怎么退款")
    assert is_kb_answer(replies[0]["text"], "zh")
    texts_said = [e.get("text") for e in stored_events(stack, sender) if e.get("event") == "user"]
    assert texts_said[0] == "你好"  # what was said before the outage survived (AOF)
