"""The Telegram channel's sending against Redis and a local server speaking the Bot API.

The webhook itself (secret, duplicate update_id, button presses through Rasa)
is tested against the whole stack in tests/integration/test_channels.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import redis

from bot.channels.telegram import BotApi, CallbackPayloads, TelegramOutput
from tests.fake_platforms import FakeTelegramApi, utf16_units


def output_for(api: FakeTelegramApi) -> TelegramOutput:
    return TelegramOutput(BotApi(api.url, api.bot_token))


def test_a_5000_character_reply_arrives_as_two_messages(
    redis_prefix: str, telegram_api: FakeTelegramApi
) -> None:
    reply = ("This answer is long. " * 250)[:5000]
    asyncio.run(output_for(telegram_api).send_response("tg:42", {"text": reply}))
    sent = telegram_api.sent(42)
    assert len(sent) == 2
    assert all(utf16_units(m["text"]) <= 4096 for m in sent)
    assert " ".join(m["text"] for m in sent).split() == reply.split()


def test_emoji_count_as_two_units_towards_the_limit(redis_prefix: str, telegram_api: FakeTelegramApi) -> None:
    reply = "🎮" * 3000  # 3000 characters, 6000 UTF-16 units
    asyncio.run(output_for(telegram_api).send_response("tg:42", {"text": reply}))
    sent = telegram_api.sent(42)
    assert len(sent) == 2 and "".join(m["text"] for m in sent) == reply


def test_429_retry_after_is_honoured(redis_prefix: str, telegram_api: FakeTelegramApi) -> None:
    telegram_api.rate_limit_next, telegram_api.retry_after = 1, 1
    started = time.monotonic()
    asyncio.run(output_for(telegram_api).send_response("tg:42", {"text": "hello"}))
    took = time.monotonic() - started
    assert [m["text"] for m in telegram_api.sent(42)] == ["hello"]
    assert len(telegram_api.calls_of("sendMessage")) == 2
    assert took >= 1.0


def test_buttons_become_an_inline_keyboard_under_the_last_part(
    redis_prefix: str, telegram_api: FakeTelegramApi
) -> None:
    long_payload = '/kb_article{"kb_article": "en-' + "x" * 80 + '"}'
    buttons = [
        {"title": "Talk to a person", "payload": "/ask_human"},
        {"title": "Read it", "payload": long_payload},
    ]
    output = output_for(telegram_api)

    async def scenario() -> str | None:
        await output.send_response("tg:7", {"text": "word " * 1000, "buttons": buttons})
        sent = telegram_api.sent(7)
        keyboard = sent[-1]["reply_markup"]["inline_keyboard"]
        assert sent[0]["reply_markup"] is None
        assert keyboard[0] == [{"text": "Talk to a person", "callback_data": "/ask_human"}]
        reference = keyboard[1][0]["callback_data"]
        assert len(reference.encode()) <= 64
        return await CallbackPayloads().decode(reference)

    assert asyncio.run(scenario()) == long_payload


def test_a_refused_message_is_reported_for_the_agent(
    redis_prefix: str, telegram_api: FakeTelegramApi
) -> None:
    telegram_api.blocked_chats.add(99)
    asyncio.run(output_for(telegram_api).send_response("tg:99", {"text": "Hi, this is Lin from support"}))
    client = redis.Redis.from_url(
        os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True
    )
    failures: list[dict[str, Any]] = [
        json.loads(fields["failure"]) for _, fields in client.xrange(f"{redis_prefix}:channel:failures")
    ]
    assert [(f["conversation_id"], f["code"]) for f in failures] == [("tg:99", "403")]


def test_a_wrong_bot_token_is_a_reported_failure_not_a_crash(
    redis_prefix: str, telegram_api: FakeTelegramApi
) -> None:
    output = TelegramOutput(BotApi(telegram_api.url, "000:wrong"))
    asyncio.run(output.send_response("tg:42", {"text": "hello"}))
    assert telegram_api.sent() == []
