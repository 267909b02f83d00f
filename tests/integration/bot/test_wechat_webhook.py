"""The WeChat webhook over HTTP, in plain and in safe mode, with Rasa replaced by a stand-in.

A Sanic server in this process mounts the channel's blueprint the way Rasa
does; Redis and the local WeChat API server are real (see conftest.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import xmltodict
from rasa.core.channels.channel import InputChannel
from sanic import Sanic

from bot.channels.wechat import WeChatInput
from tests.fake_platforms import WECHAT_AES_APP_ID, WECHAT_AES_KEY, FakeWeChatApi
from tests.integration.bot.local_sanic import running
from tests.integration.bot.test_wechat_channel import FakeRasa, text_xml

TOKEN = "plain-token"
Sanic.test_mode = True


def signed(token: str = TOKEN, timestamp: str | None = None, nonce: str | None = None) -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or secrets.token_hex(4)
    signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce}


@asynccontextmanager
async def serve(
    channel: InputChannel, rasa: Callable[[Any], Awaitable[None]], name: str = "wechat"
) -> AsyncIterator[str]:
    """The channel's blueprint on a local Sanic server, where Rasa would mount it."""
    app = Sanic(name + secrets.token_hex(4))
    app.blueprint(channel.blueprint(rasa), url_prefix=f"/webhooks/{name}")
    async with running(app) as port:
        yield f"http://127.0.0.1:{port}/webhooks/{name}/webhook"


def plain_channel(api: FakeWeChatApi, **options: Any) -> WeChatInput:
    return WeChatInput(token=TOKEN, app_id=api.app_id, app_secret=api.app_secret, api_url=api.url, **options)


def test_verification_and_forged_posts(redis_prefix: str, wechat_api: FakeWeChatApi) -> None:
    rasa = FakeRasa()

    async def scenario() -> None:
        async with serve(plain_channel(wechat_api), rasa) as url, aiohttp.ClientSession() as http:
            async with http.get(url, params={**signed(), "echostr": "e1"}) as reply:
                assert (reply.status, await reply.text()) == (200, "e1")
            async with http.get(url, params={**signed(token="wrong"), "echostr": "e1"}) as reply:
                assert reply.status == 403
            async with http.post(url, params=signed(token="wrong"), data=text_xml("你好", 1)) as reply:
                assert reply.status == 403 and (await reply.json())["error"] == "invalid_signature"
            async with http.post(url, data=text_xml("你好", 2)) as reply:
                assert reply.status == 403

    asyncio.run(scenario())
    assert rasa.turns == []


def test_a_stale_or_replayed_request_is_not_processed(redis_prefix: str, wechat_api: FakeWeChatApi) -> None:
    rasa = FakeRasa()

    async def scenario() -> None:
        async with serve(plain_channel(wechat_api), rasa) as url, aiohttp.ClientSession() as http:
            old = signed(timestamp=str(int(time.time()) - 3600))
            async with http.post(url, params=old, data=text_xml("你好", 3)) as reply:
                assert reply.status == 403 and (await reply.json())["error"] == "stale_timestamp"
            query = signed()
            async with http.post(url, params=query, data=text_xml("你好", 4)) as reply:
                assert reply.status == 200 and "您好" in await reply.text()
            # the same signed query with another body: a replay, answered but not processed
            async with http.post(url, params=query, data=text_xml("转人工", 5)) as reply:
                assert (reply.status, await reply.text()) == (200, "success")

    asyncio.run(scenario())
    assert [m.text for m in rasa.turns] == ["你好"]


def test_malformed_and_oversized_bodies(redis_prefix: str, wechat_api: FakeWeChatApi) -> None:
    rasa = FakeRasa()

    async def scenario() -> None:
        async with serve(plain_channel(wechat_api), rasa) as url, aiohttp.ClientSession() as http:
            for body, status in (
                (b"<xml><open>", 400),
                (b"\xff\xfe", 400),
                (b"<xml>" + b"a" * 70_000 + b"</xml>", 413),
            ):
                async with http.post(url, params=signed(), data=body) as reply:
                    assert reply.status == status

    asyncio.run(scenario())
    assert rasa.turns == []


def test_safe_mode_refuses_plain_bodies_and_answers_encrypted(
    redis_prefix: str, wechat_api: FakeWeChatApi
) -> None:
    from wechatpy.crypto import WeChatCrypto

    rasa = FakeRasa()
    crypto = WeChatCrypto(TOKEN, WECHAT_AES_KEY, WECHAT_AES_APP_ID)
    channel = WeChatInput(token=TOKEN, app_id=WECHAT_AES_APP_ID, encoding_aes_key=WECHAT_AES_KEY)

    async def scenario() -> str:
        async with serve(channel, rasa) as url, aiohttp.ClientSession() as http:
            async with http.post(url, params=signed(), data=text_xml("你好", 6)) as reply:
                assert reply.status == 403 and (await reply.json())["error"] == "encryption_required"
            query = signed()
            sealed = crypto.encrypt_message(text_xml("你好", 7), query["nonce"], query["timestamp"])
            envelope = xmltodict.parse(sealed)["xml"]
            params = {**query, "encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]}
            async with http.post(url, params={**params, "msg_signature": "0" * 40}, data=sealed) as reply:
                assert reply.status == 403
            async with http.post(
                url,
                params=signed() | {"encrypt_type": "aes", "msg_signature": "x"},
                data="<xml><Encrypt>bad</Encrypt></xml>",
            ) as reply:
                assert reply.status == 403
            async with http.post(url, params=params, data=sealed) as reply:
                assert reply.status == 200
                answer = xmltodict.parse(await reply.text())["xml"]
            plain = crypto.decrypt_message(
                await reply.text(), answer["MsgSignature"], answer["TimeStamp"], answer["Nonce"]
            )
            return str(xmltodict.parse(plain)["xml"]["Content"])

    assert asyncio.run(scenario()) == "您好！"
    assert [m.text for m in rasa.turns] == ["你好"]


def test_when_wechat_hangs_up_the_reply_still_arrives_through_the_api(
    redis_prefix: str, wechat_api: FakeWeChatApi
) -> None:
    rasa = FakeRasa([{"text": "查到了：已发货。"}], delay=2.0)

    async def scenario() -> None:
        async with serve(plain_channel(wechat_api), rasa) as url:
            # WeChat gives up and drops the connection before the deadline
            timeout = aiohttp.ClientTimeout(total=0.5)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                try:
                    async with http.post(url, params=signed(), data=text_xml("查订单", 8)) as reply:
                        await reply.text()
                except asyncio.TimeoutError:
                    pass
            deadline = time.monotonic() + 10
            while not wechat_api.sent() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)

    asyncio.run(scenario())
    assert [m["content"] for m in wechat_api.sent()] == ["查到了：已发货。"]


def test_a_follower_from_a_qr_code_is_welcomed_too(redis_prefix: str, wechat_api: FakeWeChatApi) -> None:
    rasa = FakeRasa()
    xml = (
        "<xml><ToUserName>gh_shop</ToUserName><FromUserName>oFromPoster</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>event</MsgType><Event>subscribe</Event>"
        "<EventKey>qrscene_store42</EventKey><Ticket>t</Ticket></xml>"
    )

    async def scenario() -> None:
        async with serve(plain_channel(wechat_api), rasa) as url, aiohttp.ClientSession() as http:
            async with http.post(url, params=signed(), data=xml) as reply:
                assert reply.status == 200 and "您好" in await reply.text()

    asyncio.run(scenario())
    assert [m.text for m in rasa.turns] == ['/greet{"language": "zh"}']
