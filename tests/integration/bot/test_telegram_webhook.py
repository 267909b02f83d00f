"""The Telegram webhook over HTTP with Rasa replaced by a stand-in (Redis and the Bot API server are real)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from bot.channels.telegram import TelegramChannel
from tests.fake_platforms import FakeTelegramApi
from tests.integration.bot.test_wechat_channel import FakeRasa
from tests.integration.bot.test_wechat_webhook import serve

SECRET = "hook-secret_1"


def update(update_id: int, **message: Any) -> bytes:
    body = {"message_id": 1, "chat": {"id": 77}, "from": {"language_code": "en"}, **message}
    return json.dumps({"update_id": update_id, "message": body}).encode()


def channel_for(api: FakeTelegramApi) -> TelegramChannel:
    return TelegramChannel(bot_token=api.bot_token, webhook_secret=SECRET, api_url=api.url)


def test_a_turn_cut_off_by_a_dropped_request_still_finishes_once(
    redis_prefix: str, telegram_api: FakeTelegramApi
) -> None:
    rasa = FakeRasa([{"text": "Your order has shipped."}], delay=2.0)
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}

    async def scenario() -> Any:
        async with serve(channel_for(telegram_api), rasa, "telegram") as url:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as http:
                try:
                    async with http.post(
                        url, data=update(500, text="where is my order"), headers=headers
                    ) as reply:
                        await reply.text()
                except asyncio.TimeoutError:
                    pass
            deadline = time.monotonic() + 10
            while not telegram_api.sent(77) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    url, data=update(500, text="where is my order"), headers=headers
                ) as reply:
                    return await reply.json()

    again = asyncio.run(scenario())
    assert [m["text"] for m in telegram_api.sent(77)] == ["Your order has shipped."]
    assert again.get("duplicate") is True and len(rasa.turns) == 1


def test_a_failed_turn_asks_telegram_to_deliver_the_update_again(
    redis_prefix: str, telegram_api: FakeTelegramApi
) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}

    async def scenario() -> list[int]:
        statuses = []
        for rasa in (FakeRasa([], fail=True), FakeRasa()):
            async with (
                serve(channel_for(telegram_api), rasa, "telegram") as url,
                aiohttp.ClientSession() as http,
            ):
                async with http.post(url, data=update(501, text="hi"), headers=headers) as reply:
                    statuses.append(reply.status)
                await asyncio.sleep(0.2)  # the failed update's id is released in the background
        return statuses

    assert asyncio.run(scenario()) == [503, 200]


def test_a_photo_caption_is_read_as_the_question(redis_prefix: str, telegram_api: FakeTelegramApi) -> None:
    rasa = FakeRasa()
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}

    async def scenario() -> None:
        async with serve(channel_for(telegram_api), rasa, "telegram") as url, aiohttp.ClientSession() as http:
            body = update(502, photo=[{"file_id": "f1"}], caption="this code does not work")
            async with http.post(url, data=body, headers=headers) as reply:
                assert reply.status == 200

    asyncio.run(scenario())
    assert rasa.turns[0].text == "this code does not work"
    assert rasa.turns[0].metadata["attachment"] == {"type": "photo", "caption": "this code does not work"}
