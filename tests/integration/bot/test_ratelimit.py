"""bot.channels.ratelimit against the machine's Redis, and each channel refusing a flood politely.

Rasa is replaced by a stand-in that records turns (tests/integration/bot/test_wechat_channel.py);
Redis, the channels' HTTP handling and the local Telegram API server are real.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import pytest

import bot.channels.outbox as outbox
import bot.channels.ratelimit as ratelimit
from bot.channels.rest import RestChannel
from bot.channels.wechat import parse_inbound
from tests.fake_platforms import FakeTelegramApi, FakeWeChatApi
from tests.integration.bot.test_telegram_webhook import SECRET, update
from tests.integration.bot.test_telegram_webhook import channel_for as telegram_channel
from tests.integration.bot.test_wechat_channel import FakeRasa, text_xml
from tests.integration.bot.test_wechat_channel import channel_for as wechat_channel
from tests.integration.bot.test_wechat_webhook import serve


@pytest.fixture
def limit(redis_prefix: str, monkeypatch: pytest.MonkeyPatch) -> ratelimit.SenderRateLimit:
    """3 messages per 10 s for every channel in this test."""
    chosen = ratelimit.SenderRateLimit(burst=3, per_minute=0, prefix=redis_prefix)
    monkeypatch.setattr(ratelimit, "_limit", chosen)
    return chosen


def test_the_fourth_message_in_the_window_is_refused_and_only_it_notifies(
    limit: ratelimit.SenderRateLimit,
) -> None:
    async def scenario() -> list[ratelimit.Verdict]:
        verdicts = [await limit.check("u-flood") for _ in range(5)]
        verdicts.append(await limit.check("u-calm"))  # somebody else is not affected
        return verdicts

    verdicts = asyncio.run(scenario())
    assert [v.allowed for v in verdicts] == [True, True, True, False, False, True]
    assert [v.notify for v in verdicts[3:5]] == [True, False]
    assert 1 <= verdicts[3].retry_after <= ratelimit.BURST_WINDOW_SECONDS


def test_the_minute_window_counts_too(redis_prefix: str) -> None:
    per_minute = ratelimit.SenderRateLimit(burst=0, per_minute=2, prefix=redis_prefix)

    async def scenario() -> list[ratelimit.Verdict]:
        return [await per_minute.check("u-minute") for _ in range(3)]

    third = asyncio.run(scenario())[2]
    assert not third.allowed and 10 < third.retry_after <= 60


def test_without_redis_the_limit_lets_messages_through(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    monkeypatch.setenv("REDIS_PORT", str(dead_port))
    monkeypatch.setattr(outbox, "_client", None)
    strict = ratelimit.SenderRateLimit(burst=1, per_minute=1, prefix=redis_prefix)

    async def scenario() -> list[bool]:
        return [(await strict.check("u-nored")).allowed for _ in range(3)]

    assert asyncio.run(scenario()) == [True, True, True]


def test_the_notice_follows_the_customer_language() -> None:
    assert "秒后" in ratelimit.notice("我的卡密呢", 7) and "7" in ratelimit.notice("我的卡密呢", 7)
    assert "too fast" not in ratelimit.notice("where is my card", 7)
    assert ratelimit.notice("where is my card", 7).startswith("You're sending messages")
    assert "秒后" in ratelimit.notice("", 7, language="zh")
    assert ratelimit.notice(None, 0).endswith("1 seconds - we'll see it then.")


def test_rest_answers_a_flood_with_429_and_never_passes_it_to_rasa(limit: ratelimit.SenderRateLimit) -> None:
    rasa = FakeRasa([{"text": "hi"}])

    async def scenario() -> list[tuple[int, Any, str | None]]:
        results = []
        token = "rest-client-token-for-the-test"
        channel = RestChannel(clients={token: "test"})
        auth = {"Authorization": f"Bearer {token}"}
        async with serve(channel, rasa, "rest") as url, aiohttp.ClientSession() as http:
            for i in range(4):
                body = json.dumps({"sender": "u-rest", "message": f"你好 {i}"})
                async with http.post(url, data=body, headers=auth) as reply:
                    results.append((reply.status, await reply.json(), reply.headers.get("Retry-After")))
        return results

    results = asyncio.run(scenario())
    assert [status for status, _, _ in results] == [200, 200, 200, 429]
    _, refused, retry_after = results[3]
    assert refused["error"] == "rate_limited" and "秒后" in refused["message"]
    assert retry_after is not None and 1 <= int(retry_after) <= 10
    assert [turn.text for turn in rasa.turns] == ["你好 0", "你好 1", "你好 2"]


def test_wechat_gets_one_notice_per_window_not_one_per_message(
    limit: ratelimit.SenderRateLimit, wechat_api: FakeWeChatApi
) -> None:
    channel = wechat_channel(wechat_api)
    rasa = FakeRasa([{"text": "您好！"}])

    async def scenario() -> list[str | None]:
        return [await channel.handle(parse_inbound(text_xml(f"在吗 {i}", 9000 + i)), rasa) for i in range(6)]

    replies = asyncio.run(scenario())
    assert replies[:3] == ["您好！"] * 3
    assert replies[3] is not None and "秒后" in replies[3]
    assert replies[4:] == [None, None]
    assert len(rasa.turns) == 3


def test_telegram_gets_one_notice_per_window(
    limit: ratelimit.SenderRateLimit, telegram_api: FakeTelegramApi
) -> None:
    rasa = FakeRasa([{"text": "Hello!"}])
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}

    async def scenario() -> list[dict[str, Any]]:
        answers = []
        async with (
            serve(telegram_channel(telegram_api), rasa, "telegram") as url,
            aiohttp.ClientSession() as http,
        ):
            for i in range(6):
                async with http.post(url, data=update(700 + i, text=f"hello {i}"), headers=headers) as reply:
                    answers.append(await reply.json())
        return answers

    answers = asyncio.run(scenario())
    assert [a.get("rate_limited", False) for a in answers] == [False] * 3 + [True] * 3
    sent = [m["text"] for m in telegram_api.sent(77)]
    assert sent[:3] == ["Hello!"] * 3
    assert len(sent) == 4 and sent[3].startswith("You're sending messages")
    assert len(rasa.turns) == 3
