"""The WeChat channel's turn handling against Redis and a local server speaking WeChat's API.

Rasa itself is replaced by a stand-in ``on_new_message`` so a turn can be made
slow, failing or chatty on purpose; the whole stack is in
tests/integration/test_channels.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from rasa.core.channels.channel import UserMessage

from bot.channels.wechat import AccessTokens, WeChatInput, parse_inbound
from tests.fake_platforms import FakeWeChatApi


def text_xml(content: str, msg_id: int, openid: str = "oCustomer1") -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


class FakeRasa:
    """Stands in for Rasa's on_new_message: records turns, answers after ``delay``."""

    def __init__(
        self, replies: list[dict[str, Any]] | None = None, delay: float = 0.0, fail: bool = False
    ) -> None:
        self.replies = replies if replies is not None else [{"text": "您好！"}]
        self.delay = delay
        self.fail = fail
        self.turns: list[UserMessage] = []

    async def __call__(self, message: UserMessage) -> None:
        self.turns.append(message)
        for index, reply in enumerate(self.replies):
            if index == 1 and self.delay:
                await asyncio.sleep(self.delay)
            await message.output_channel.send_response(message.sender_id, dict(reply))
        if len(self.replies) <= 1 and self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("Rasa fell over")


def channel_for(api: FakeWeChatApi, deadline: float = 4.5) -> WeChatInput:
    return WeChatInput(
        token="tok", app_id=api.app_id, app_secret=api.app_secret, api_url=api.url, reply_deadline=deadline
    )


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())


def test_the_same_message_posted_three_times_is_one_turn_and_one_reply(
    redis_prefix: str, wechat_api: FakeWeChatApi
) -> None:
    async def scenario() -> list[Any]:
        channel, rasa = channel_for(wechat_api), FakeRasa()
        inbound = parse_inbound(text_xml("你好", 1001))
        replies = [await channel.handle(inbound, rasa) for _ in range(3)]
        assert len(rasa.turns) == 1
        return replies

    assert run(scenario) == ["您好！", None, None]
    assert wechat_api.sent() == []


def test_a_turn_slower_than_the_deadline_is_answered_success_then_through_the_api(
    redis_prefix: str, wechat_api: FakeWeChatApi
) -> None:
    async def scenario() -> tuple[Any, float]:
        channel = channel_for(wechat_api)
        rasa = FakeRasa([{"text": "查到了，您的订单已发货。"}], delay=5.0)
        started = time.monotonic()
        reply = await channel.handle(parse_inbound(text_xml("我的订单", 1002)), rasa)
        took = time.monotonic() - started
        await asyncio.sleep(0)  # the turn goes on in the background
        while channel._background:
            await asyncio.wait(set(channel._background), timeout=10)
        return reply, took

    reply, took = run(scenario)
    assert reply is None  # the webhook answered "success"
    assert 4.4 <= took < 5.0  # WeChat waits five seconds
    sent = wechat_api.sent("oCustomer1")
    assert [m["content"] for m in sent] == ["查到了，您的订单已发货。"]


def test_what_a_slow_turn_said_before_and_after_the_deadline_arrives_in_order(
    redis_prefix: str, wechat_api: FakeWeChatApi
) -> None:
    async def scenario() -> None:
        channel = channel_for(wechat_api, deadline=0.5)
        rasa = FakeRasa([{"text": "正在查询…"}, {"text": "查询完成。"}], delay=1.0)
        assert await channel.handle(parse_inbound(text_xml("查订单", 1003)), rasa) is None
        while channel._background:
            await asyncio.wait(set(channel._background), timeout=10)

    run(scenario)
    assert [m["content"] for m in wechat_api.sent()] == ["正在查询…", "查询完成。"]


def test_several_messages_of_a_quick_turn_go_through_the_api_in_order(
    redis_prefix: str, wechat_api: FakeWeChatApi
) -> None:
    async def scenario() -> Any:
        channel = channel_for(wechat_api)
        rasa = FakeRasa([{"text": "第一条"}, {"text": "第二条"}, {"text": "第三条"}])
        reply = await channel.handle(parse_inbound(text_xml("你好", 1004)), rasa)
        while channel._background:
            await asyncio.wait(set(channel._background), timeout=10)
        return reply

    assert run(scenario) is None
    assert [m["content"] for m in wechat_api.sent()] == ["第一条", "第二条", "第三条"]


def test_a_failed_turn_apologises_and_the_retry_is_processed(
    redis_prefix: str, wechat_api: FakeWeChatApi
) -> None:
    async def scenario() -> tuple[Any, Any, int]:
        channel = channel_for(wechat_api)
        inbound = parse_inbound(text_xml("你好", 1005))
        failing = FakeRasa([], fail=True)
        first = await channel.handle(inbound, failing)
        working = FakeRasa()
        second = await channel.handle(inbound, working)
        return first, second, len(working.turns)

    first, second, turns = run(scenario)
    assert first is not None and "抱歉" in first
    assert second == "您好！" and turns == 1


def test_a_long_reply_arrives_in_parts_under_wechats_limit(
    redis_prefix: str, wechat_api: FakeWeChatApi
) -> None:
    long_answer = "这是一段很长的解答。" * 300

    async def scenario() -> Any:
        channel = channel_for(wechat_api)
        reply = await channel.handle(
            parse_inbound(text_xml("解释一下", 1006)), FakeRasa([{"text": long_answer}])
        )
        while channel._background:
            await asyncio.wait(set(channel._background), timeout=10)
        return reply

    assert run(scenario) is None
    parts = [m["content"] for m in wechat_api.sent()]
    assert len(parts) >= 4 and all(len(p.encode()) <= 2048 for p in parts)
    assert "".join(parts) == long_answer


def test_buttons_are_numbered_and_a_digit_picks_one(redis_prefix: str, wechat_api: FakeWeChatApi) -> None:
    buttons = [
        {"title": "查询订单", "payload": "/order_status"},
        {"title": "转人工", "payload": "/ask_human"},
    ]

    async def scenario() -> list[str]:
        channel = channel_for(wechat_api)
        rasa = FakeRasa([{"text": "请选择：", "buttons": buttons}])
        menu = await channel.handle(parse_inbound(text_xml("帮助", 2001)), rasa)
        assert menu == "请选择：\n1. 查询订单\n2. 转人工\n（回复数字即可选择）"
        rasa.replies = [{"text": "好的"}]
        await channel.handle(parse_inbound(text_xml(" 2 ", 2002)), rasa)
        # used once: the same digit again is just text
        await channel.handle(parse_inbound(text_xml("2", 2003)), rasa)
        return [m.text for m in rasa.turns]

    assert run(scenario) == ["帮助", "/ask_human", "2"]


def test_another_message_makes_earlier_choices_stale(redis_prefix: str, wechat_api: FakeWeChatApi) -> None:
    async def scenario() -> list[str]:
        channel = channel_for(wechat_api)
        menu = FakeRasa([{"text": "请选择：", "buttons": [{"title": "A", "payload": "/a"}]}])
        await channel.handle(parse_inbound(text_xml("帮助", 2101)), menu)
        plain = FakeRasa([{"text": "好的"}])
        await channel.handle(parse_inbound(text_xml("我想问别的", 2102)), plain)
        await channel.handle(parse_inbound(text_xml("1", 2103)), plain)
        return [m.text for m in plain.turns]

    assert run(scenario) == ["我想问别的", "1"]


def test_one_access_token_refresh_however_many_callers(redis_prefix: str, wechat_api: FakeWeChatApi) -> None:
    async def scenario() -> set[str]:
        # three "processes": separate token managers sharing only Redis
        managers = [AccessTokens(wechat_api.url, wechat_api.app_id, wechat_api.app_secret) for _ in range(3)]
        tokens = await asyncio.gather(*[managers[i % 3].get() for i in range(30)])
        return set(tokens)

    tokens = run(scenario)
    assert len(tokens) == 1 and wechat_api.token_fetches == 1


def test_a_token_replaced_elsewhere_is_renewed_once_and_the_message_still_goes(
    redis_prefix: str, wechat_api: FakeWeChatApi
) -> None:
    async def scenario() -> None:
        output = channel_for(wechat_api).get_output_channel()
        await output.send_response("wx:oCustomer1", {"text": "第一条"})
        wechat_api.current_token = "rotated-by-another-deployment"
        await output.send_response("wx:oCustomer1", {"text": "第二条"})

    run(scenario)
    assert [m["content"] for m in wechat_api.sent()] == ["第一条", "第二条"]
    assert wechat_api.token_fetches == 2


def test_a_refused_delivery_is_reported_for_the_agent(redis_prefix: str, wechat_api: FakeWeChatApi) -> None:
    wechat_api.expired_users.add("oGoneQuiet")

    async def scenario() -> None:
        await (
            channel_for(wechat_api)
            .get_output_channel()
            .send_response("wx:oGoneQuiet", {"text": "您好，我是客服小王"})
        )

    run(scenario)
    client = redis.Redis.from_url(
        os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True
    )
    entries = client.xrange(f"{redis_prefix}:channel:failures")
    failures = [json.loads(fields["failure"]) for _, fields in entries]
    assert [(f["conversation_id"], f["code"], f["text"]) for f in failures] == [
        ("wx:oGoneQuiet", "45015", "您好，我是客服小王")
    ]


def test_a_new_follower_is_greeted_in_the_language_of_their_wechat(
    redis_prefix: str, wechat_api: FakeWeChatApi
) -> None:
    wechat_api.languages["oNewFollower"] = "en"
    xml = (
        "<xml><ToUserName>gh_shop</ToUserName><FromUserName>oNewFollower</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>"
    )

    async def scenario() -> list[str]:
        rasa = FakeRasa()
        await channel_for(wechat_api).handle(parse_inbound(xml), rasa)
        return [m.text for m in rasa.turns]

    assert run(scenario) == ['/greet{"language": "en"}']


def test_a_photo_asks_for_text_in_the_language_last_written(
    redis_prefix: str, wechat_api: FakeWeChatApi
) -> None:
    photo = (
        "<xml><ToUserName>gh_shop</ToUserName><FromUserName>oCustomer1</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>image</MsgType>"
        "<PicUrl>http://mmbiz.example/receipt.jpg</PicUrl><MediaId>media-1</MediaId><MsgId>3002</MsgId></xml>"
    )

    async def scenario() -> list[UserMessage]:
        channel, rasa = channel_for(wechat_api), FakeRasa()
        await channel.handle(parse_inbound(text_xml("hello, my order is late", 3001)), rasa)
        await channel.handle(parse_inbound(photo), rasa)
        return rasa.turns

    turns = run(scenario)
    assert turns[1].text == '/empty_message{"language": "en"}'
    assert turns[1].metadata["attachment"] == {
        "type": "image",
        "url": "http://mmbiz.example/receipt.jpg",
        "media_id": "media-1",
    }


def test_recognised_voice_is_read_as_text(redis_prefix: str, wechat_api: FakeWeChatApi) -> None:
    voice = (
        "<xml><ToUserName>gh_shop</ToUserName><FromUserName>oCustomer1</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>voice</MsgType><MediaId>v1</MediaId>"
        "<Format>amr</Format><Recognition><![CDATA[转人工]]></Recognition><MsgId>3003</MsgId></xml>"
    )

    async def scenario() -> list[str]:
        rasa = FakeRasa()
        await channel_for(wechat_api).handle(parse_inbound(voice), rasa)
        return [m.text for m in rasa.turns]

    assert run(scenario) == ["转人工"]


def test_card_codes_are_masked_before_rasa_sees_them(
    redis_prefix: str, wechat_api: FakeWeChatApi, monkeypatch: Any, tmp_path: Any
) -> None:
    monkeypatch.setenv("CS_CARD_CODE_KEY", "test-key-for-sealing-card-codes")

    async def scenario() -> UserMessage:
        rasa = FakeRasa()
        await channel_for(wechat_api).handle(
            parse_inbound(text_xml("卡密 K7QM-8XPL-22RT-4WZD 用不了", 3004)), rasa
        )
        return rasa.turns[0]

    turn = run(scenario)
    assert "8XPL" not in turn.text and "K7QM-****-****-4WZD" in turn.text
