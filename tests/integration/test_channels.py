"""WeChat and Telegram through the real stack, against local servers that speak their APIs.

Uses the session stack (private Redis, Rasa with both channels on, action
server, handoff service) and the ``platforms`` fixture: a fake
api.weixin.qq.com and a fake api.telegram.org on 127.0.0.1, which record what
our connectors send. Posts what WeChat's and Telegram's servers would post.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts.stack import Stack
from tests.conftest import (
    TELEGRAM_TEST_SECRET,
    WECHAT_TEST_AES_KEY,
    WECHAT_TEST_APP_ID,
    WECHAT_TEST_TOKEN,
    load_domain,
)
from tests.fake_platforms import WECHAT_AES_BODY as AES_BODY
from tests.fake_platforms import WECHAT_AES_NONCE as AES_NONCE
from tests.fake_platforms import WECHAT_AES_SIGNATURE as AES_SIGNATURE
from tests.fake_platforms import WECHAT_AES_TIMESTAMP as AES_TIMESTAMP
from tests.fake_platforms import FakeTelegramApi, FakeWeChatApi, utf16_units
from tests.integration.helpers import redis_client, texts
from tests.integration.test_handoff_flow import Agent, eventually

pytestmark = pytest.mark.integration


_msg_ids = iter(range(int(time.time() * 1000), 10**19))


# -- speaking as WeChat's server -------------------------------------------------------


def wechat_signature(timestamp: str, nonce: str, token: str = WECHAT_TEST_TOKEN) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def wechat_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.rasa_port}/webhooks/wechat/webhook"


def text_xml(openid: str, content: str, msg_id: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_starcard]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id or next(_msg_ids)}</MsgId></xml>"
    )


def seal(body: str, timestamp: str, nonce: str) -> tuple[str, str]:
    """(encrypted envelope, msg_signature) as WeChat's server makes them in safe mode."""
    import xmltodict

    envelope = CRYPTO().encrypt_message(body, nonce, timestamp)
    return envelope, str(xmltodict.parse(envelope)["xml"]["MsgSignature"])


def CRYPTO() -> Any:
    from wechatpy.crypto import WeChatCrypto

    return WeChatCrypto(WECHAT_TEST_TOKEN, WECHAT_TEST_AES_KEY, WECHAT_TEST_APP_ID)


def wechat_post(
    stack: Stack, body: str | bytes, signature: str | None = None, encrypt: bool = True, **params: str
) -> httpx.Response:
    """POST as WeChat does; the stack's account is in safe mode, so bodies are sealed unless told not to."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(4)
    query = {
        "signature": signature or wechat_signature(timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        **params,
    }
    text = body if isinstance(body, str) else body.decode("utf-8", "replace")
    if encrypt:
        text, msg_signature = seal(text, timestamp, nonce)
        query.update({"encrypt_type": "aes", "msg_signature": msg_signature})
        content = text.encode()
    else:
        content = body.encode() if isinstance(body, str) else body
    return httpx.post(wechat_url(stack), params=query, content=content, timeout=30)


def passive_text(reply: httpx.Response) -> str | None:
    """The content of a (sealed) passive reply, None for "success"."""
    assert reply.status_code == 200, reply.text
    if reply.text == "success":
        return None
    import xmltodict

    envelope = xmltodict.parse(reply.text)["xml"]
    plain = CRYPTO().decrypt_message(
        reply.text, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
    )
    return str(xmltodict.parse(plain)["xml"]["Content"])


def wechat_says(stack: Stack, openid: str, content: str) -> str | None:
    return passive_text(wechat_post(stack, text_xml(openid, content)))


def new_openid() -> str:
    return "oTest" + uuid.uuid4().hex[:20]


# -- speaking as Telegram's server -----------------------------------------------------


def telegram_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.rasa_port}/webhooks/telegram/webhook"


_update_ids = iter(range(int(time.time()), 10**12))


def telegram_post(
    stack: Stack, update: dict[str, Any] | bytes, secret: str | None = TELEGRAM_TEST_SECRET
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    content = update if isinstance(update, bytes) else json.dumps(update).encode()
    return httpx.post(telegram_url(stack), content=content, headers=headers, timeout=30)


def telegram_text(
    chat_id: int, text: str, update_id: int | None = None, language: str = "en"
) -> dict[str, Any]:
    return {
        "update_id": update_id or next(_update_ids),
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Test", "language_code": language},
            "text": text,
        },
    }


def telegram_press(chat_id: int, data: str) -> dict[str, Any]:
    return {
        "update_id": next(_update_ids),
        "callback_query": {
            "id": secrets.token_hex(6),
            "from": {"id": chat_id, "is_bot": False, "first_name": "Test", "language_code": "en"},
            "message": {"message_id": 2, "chat": {"id": chat_id, "type": "private"}},
            "data": data,
        },
    }


def new_chat_id() -> int:
    return 10**9 + secrets.randbelow(10**9)


# -- looking into Rasa -----------------------------------------------------------------


def user_events(stack: Stack, sender_id: str) -> list[dict[str, Any]]:
    reply = httpx.get(
        f"http://127.0.0.1:{stack.settings.rasa_port}/conversations/{sender_id}/tracker",
        params={"token": stack.settings.rasa_token, "include_events": "ALL"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    return [e for e in reply.json().get("events") or [] if e.get("event") == "user"]


def stored_keys(stack: Stack, fragment: str) -> list[str]:
    return list(redis_client(stack).scan_iter(f"{stack.settings.key_prefix}:*{fragment}*"))


def post_bot_line(stack: Stack, sender_id: str, text: str) -> None:
    """What the handoff service does for an agent line: a bot event delivered on the latest channel."""
    reply = httpx.post(
        f"http://127.0.0.1:{stack.settings.rasa_port}/conversations/{sender_id}/tracker/events",
        params={
            "token": stack.settings.rasa_token,
            "output_channel": "latest",
            "execute_side_effects": "true",
            "include_events": "NONE",
        },
        json=[{"event": "bot", "text": text, "metadata": {"agent": "tester"}}],
        timeout=30,
    )
    assert reply.status_code == 200, reply.text


async def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


# -- WeChat ------------------------------------------------------------------------------


def test_wechat_server_verification(stack: Stack) -> None:
    timestamp, nonce = "1700000000", "abc"
    good = {
        "signature": wechat_signature(timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "echostr": "e42",
    }
    reply = httpx.get(wechat_url(stack), params=good)
    assert (reply.status_code, reply.text) == (200, "e42")
    forged = httpx.get(wechat_url(stack), params={**good, "signature": "0" * 40})
    assert forged.status_code == 403 and "e42" not in forged.text


def test_a_forged_signature_is_403_and_leaves_no_trace(stack: Stack) -> None:
    openid = new_openid()
    reply = wechat_post(stack, text_xml(openid, "你好"), signature="f" * 40)
    assert reply.status_code == 403
    assert reply.json()["error"] == "invalid_signature"
    # no tracker, no dedupe key, nothing (reading the tracker afterwards would create one)
    assert stored_keys(stack, openid) == []
    assert user_events(stack, "wx:" + openid) == []


def test_the_same_wechat_message_posted_three_times_is_one_turn_and_one_reply(
    stack: Stack, platforms: dict[str, Any]
) -> None:
    openid = new_openid()
    xml = text_xml(openid, "你好")
    replies = [passive_text(wechat_post(stack, xml)) for _ in range(3)]
    assert replies == [texts("utter_greet")["zh"], None, None]
    assert [e["text"] for e in user_events(stack, "wx:" + openid)] == ["你好"]
    wechat: FakeWeChatApi = platforms["wechat"]
    time.sleep(0.5)
    assert wechat.sent(openid) == []  # and nothing more through the API


def test_safe_mode_round_trip_and_what_it_refuses(stack: Stack) -> None:
    openid = new_openid()
    # sealed with the account's EncodingAESKey, answered sealed (passive_text decrypts)
    assert passive_text(wechat_post(stack, text_xml(openid, "你好"))) == texts("utter_greet")["zh"]
    # a plain body is refused: the plain signature does not cover the body
    plain = wechat_post(stack, text_xml(openid, "转人工"), encrypt=False)
    assert plain.status_code == 403 and plain.json()["error"] == "encryption_required"
    # WeChat's own test vector is a genuine sealed message - from 2014: refused as a replay
    query = {
        "signature": wechat_signature(AES_TIMESTAMP, AES_NONCE),
        "timestamp": AES_TIMESTAMP,
        "nonce": AES_NONCE,
        "encrypt_type": "aes",
        "msg_signature": AES_SIGNATURE,
    }
    stale = httpx.post(wechat_url(stack), params=query, content=AES_BODY.encode(), timeout=30)
    assert stale.status_code == 403 and stale.json()["error"] == "stale_timestamp"
    # a tampered envelope fails its msg_signature
    timestamp, nonce = str(int(time.time())), "n1"
    envelope, msg_signature = seal(text_xml(openid, "你好"), timestamp, nonce)
    tampered = httpx.post(
        wechat_url(stack),
        params={
            "signature": wechat_signature(timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "encrypt_type": "aes",
            "msg_signature": msg_signature,
        },
        content=envelope.replace("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A").encode(),
        timeout=30,
    )
    assert tampered.status_code == 403
    assert [e["text"] for e in user_events(stack, "wx:" + openid)] == ["你好"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"<xml><unclosed>", 400),
        (b"not xml at all", 400),
        (b"\xff\xfe\x00", 400),
        (b"<xml><MsgType>text</MsgType></xml>", 400),
        (b"<xml>" + b"a" * (70 * 1024) + b"</xml>", 413),
    ],
)
def test_malformed_wechat_pushes_get_a_clear_error(stack: Stack, body: bytes, status: int) -> None:
    reply = wechat_post(stack, body)
    assert reply.status_code == status
    assert reply.json()["error"] in ("malformed", "body_too_large")


def test_a_photo_gets_a_polite_request_for_text(stack: Stack) -> None:
    openid = new_openid()
    photo = (
        f"<xml><ToUserName>gh_starcard</ToUserName><FromUserName>{openid}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>image</MsgType>"
        f"<PicUrl>http://mmbiz.example/receipt.jpg</PicUrl><MediaId>m1</MediaId><MsgId>{next(_msg_ids)}</MsgId></xml>"
    )
    # a first contact has no language yet: the answer is in both
    bilingual = load_domain()["responses"]["utter_empty_message"][1]["text"]
    assert passive_text(wechat_post(stack, photo)) == bilingual
    assert wechat_says(stack, openid, "你好") == texts("utter_greet")["zh"]
    photo = photo.replace("<MsgId>", "<MsgId>9")
    assert passive_text(wechat_post(stack, photo)) == texts("utter_empty_message")["zh"]


def test_a_new_follower_is_welcomed(stack: Stack) -> None:
    subscribe = (
        f"<xml><ToUserName>gh_starcard</ToUserName><FromUserName>{new_openid()}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>"
    )
    assert passive_text(wechat_post(stack, subscribe)) == texts("utter_greet")["zh"]


async def test_wechat_handoff_round_trip(stack: Stack, platforms: dict[str, Any]) -> None:
    wechat: FakeWeChatApi = platforms["wechat"]
    openid = new_openid()
    sender_id = "wx:" + openid
    agent = await Agent.create(stack, "wx-agent-" + secrets.token_hex(3))
    try:
        announced = wechat_says(stack, openid, "转人工")
        assert announced is not None
        assert announced.startswith((texts("utter_handoff")["zh"], texts("utter_handoff_no_agent")["zh"]))
        assert "1. " in announced and "回复数字" in announced  # its button as a numbered choice
        await eventually(lambda: _waiting(agent, sender_id), what="the WeChat customer in the queue")
        record = await agent.get(f"/api/conversations/{sender_id}")
        assert record["channel"] == "wechat" and record["language"] == "zh"
        # the place in the line arrives through the customer-service API
        await until(
            lambda: any(
                "排在第" in c or c == texts("utter_queue_next")["zh"] for c in _contents(wechat, openid)
            ),
            what="the queue position on WeChat",
        )

        await agent.post(f"/api/conversations/{sender_id}/claim")
        await agent.post(f"/api/conversations/{sender_id}/messages", {"text": "您好，我是人工客服小王"})
        await until(
            lambda: "您好，我是人工客服小王" in _contents(wechat, openid), what="the agent line on WeChat"
        )

        # during the hold the bot is silent and the agent reads the customer
        assert wechat_says(stack, openid, "我的卡密还是用不了") is None
        await eventually(
            lambda: _said(agent, sender_id, "我的卡密还是用不了"), what="the customer's line in the console"
        )

        await agent.post(f"/api/conversations/{sender_id}/handback")
        await until(
            lambda: texts("utter_handed_back")["zh"] in _contents(wechat, openid), what="hand back notice"
        )
        assert wechat_says(stack, openid, "你好") == texts("utter_greet")["zh"]

        # a second handoff, closed by the agent: the rating question comes as numbered choices
        wechat_says(stack, openid, "转人工")
        await eventually(lambda: _waiting(agent, sender_id), what="the second handoff")
        await agent.post(f"/api/conversations/{sender_id}/claim")
        await agent.post(f"/api/conversations/{sender_id}/close", {"resolution": "resolved"})
        question = await until(
            lambda: [c for c in _contents(wechat, openid) if texts("utter_ask_rating")["zh"] in c],
            what="the rating question",
        )
        assert "5. ⭐⭐⭐⭐⭐" in question[0]
        assert wechat_says(stack, openid, "5") == texts("utter_rating_thanks")["zh"]
        closed = await agent.get(f"/api/conversations/{sender_id}")
        assert closed["rating"] == 5
    finally:
        await agent.close()


async def test_an_agent_line_wechat_refuses_is_shown_to_the_agent(
    stack: Stack, platforms: dict[str, Any]
) -> None:
    wechat: FakeWeChatApi = platforms["wechat"]
    openid = new_openid()
    sender_id = "wx:" + openid
    agent = await Agent.create(stack, "wx-agent-" + secrets.token_hex(3))
    try:
        wechat_says(stack, openid, "转人工")
        await eventually(lambda: _waiting(agent, sender_id), what="the WeChat customer in the queue")
        await agent.post(f"/api/conversations/{sender_id}/claim")
        wechat.expired_users.add(openid)  # 48 hours without a word from the customer
        await agent.post(f"/api/conversations/{sender_id}/messages", {"text": "还需要帮助吗？"})
        line = await eventually(
            lambda: _line_with(agent, sender_id, "Not delivered on wechat"),
            what="the failure in the transcript",
        )
        assert "48-hour" in line["text"] and line["speaker"] == "system"
    finally:
        wechat.expired_users.discard(openid)
        await agent.close()


# -- Telegram ----------------------------------------------------------------------------


def test_telegram_wrong_or_missing_secret_is_403_and_leaves_no_trace(stack: Stack) -> None:
    chat_id = new_chat_id()
    for secret in ("wrong-secret", None, TELEGRAM_TEST_SECRET + "x"):
        reply = telegram_post(stack, telegram_text(chat_id, "hello"), secret=secret)
        assert reply.status_code == 403
    assert stored_keys(stack, str(chat_id)) == []
    assert user_events(stack, f"tg:{chat_id}") == []


def test_the_same_telegram_update_twice_is_one_turn(stack: Stack, platforms: dict[str, Any]) -> None:
    telegram: FakeTelegramApi = platforms["telegram"]
    chat_id = new_chat_id()
    update = telegram_text(chat_id, "hello")
    assert telegram_post(stack, update).status_code == 200
    assert telegram_post(stack, update).json().get("duplicate") is True
    assert [e["text"] for e in user_events(stack, f"tg:{chat_id}")] == ["hello"]
    assert [m["text"] for m in telegram.sent(chat_id)] == [texts("utter_greet")["en"]]


def test_a_5000_character_reply_arrives_as_two_telegram_messages(
    stack: Stack, platforms: dict[str, Any]
) -> None:
    telegram: FakeTelegramApi = platforms["telegram"]
    chat_id = new_chat_id()
    assert telegram_post(stack, telegram_text(chat_id, "hello")).status_code == 200
    long_line = ("Here is everything about your order. " * 140)[:5000]
    post_bot_line(stack, f"tg:{chat_id}", long_line)
    sent = telegram.sent(chat_id)[1:]
    assert len(sent) == 2
    assert all(utf16_units(m["text"]) <= 4096 for m in sent)
    assert " ".join(m["text"] for m in sent).split() == long_line.split()


async def test_a_telegram_button_press_is_answered(stack: Stack, platforms: dict[str, Any]) -> None:
    telegram: FakeTelegramApi = platforms["telegram"]
    chat_id = new_chat_id()
    assert telegram_post(stack, telegram_text(chat_id, "I want a human")).status_code == 200
    announced = telegram.sent(chat_id)[0]
    keyboard = announced["reply_markup"]["inline_keyboard"]
    cancel = [row[0]["callback_data"] for row in keyboard if row[0].get("callback_data") == "/cancel_handoff"]
    assert cancel, keyboard
    pressed = telegram_press(chat_id, cancel[0])
    assert telegram_post(stack, pressed).status_code == 200
    answered = [
        c
        for c in telegram.calls_of("answerCallbackQuery")
        if c["body"]["callback_query_id"] == pressed["callback_query"]["id"]
    ]
    assert answered, "the spinner on the button is stopped"
    await until(lambda: len(telegram.sent(chat_id)) >= 2, what="the answer to the press")
    assert texts("utter_handoff_cancelled")["en"] in [m["text"] for m in telegram.sent(chat_id)]


async def test_telegram_handoff_round_trip(stack: Stack, platforms: dict[str, Any]) -> None:
    telegram: FakeTelegramApi = platforms["telegram"]
    chat_id = new_chat_id()
    sender_id = f"tg:{chat_id}"
    agent = await Agent.create(stack, "tg-agent-" + secrets.token_hex(3))
    try:
        assert telegram_post(stack, telegram_text(chat_id, "I want to talk to a person")).status_code == 200
        assert telegram.sent(chat_id)[0]["text"] in (
            texts("utter_handoff")["en"],
            texts("utter_handoff_no_agent")["en"],
        )
        await eventually(lambda: _waiting(agent, sender_id), what="the Telegram customer in the queue")
        await until(
            lambda: any(
                "in the queue" in t or t == texts("utter_queue_next")["en"] for t in _texts(telegram, chat_id)
            ),
            what="the queue position on Telegram",
        )
        await agent.post(f"/api/conversations/{sender_id}/claim")
        await agent.post(f"/api/conversations/{sender_id}/messages", {"text": "Hi, this is Lin from support"})
        await until(
            lambda: "Hi, this is Lin from support" in _texts(telegram, chat_id), what="the agent line"
        )

        before = len(telegram.sent(chat_id))
        assert telegram_post(stack, telegram_text(chat_id, "my code still fails")).status_code == 200
        await eventually(lambda: _said(agent, sender_id, "my code still fails"), what="the customer's line")
        await asyncio.sleep(1.0)
        assert len(telegram.sent(chat_id)) == before, "the bot stays silent during the hold"

        await agent.post(f"/api/conversations/{sender_id}/handback")
        await until(
            lambda: texts("utter_handed_back")["en"] in _texts(telegram, chat_id), what="hand back notice"
        )
        assert telegram_post(stack, telegram_text(chat_id, "hello")).status_code == 200
        await until(lambda: _texts(telegram, chat_id)[-1] == texts("utter_greet")["en"], what="the bot again")

        assert telegram_post(stack, telegram_text(chat_id, "human please")).status_code == 200
        await eventually(lambda: _waiting(agent, sender_id), what="the second handoff")
        await agent.post(f"/api/conversations/{sender_id}/claim")
        await agent.post(f"/api/conversations/{sender_id}/close", {"resolution": "resolved"})
        question = await until(
            lambda: [m for m in telegram.sent(chat_id) if m["text"] == texts("utter_ask_rating")["en"]],
            what="the rating question",
        )
        five = [
            row[0]["callback_data"]
            for row in question[0]["reply_markup"]["inline_keyboard"]
            if "5" in row[0]["callback_data"]
        ]
        assert telegram_post(stack, telegram_press(chat_id, five[0])).status_code == 200
        await until(lambda: texts("utter_rating_thanks")["en"] in _texts(telegram, chat_id), what="thanks")
        assert (await agent.get(f"/api/conversations/{sender_id}"))["rating"] == 5
    finally:
        await agent.close()


# -- generated bodies --------------------------------------------------------------------

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
xml_texts = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(
        lambda tag, inner, content: f"<xml><{tag}>{inner}</{tag}><Content>{content}</Content></xml>".encode(
            "utf-8", "surrogatepass"
        ),
        st.sampled_from(["MsgType", "FromUserName", "MsgId", "CreateTime", "ToUserName", "Event"]),
        st.text(max_size=40),
        st.text(max_size=80),
    ),
)


@FUZZ
@given(body=xml_texts, signed=st.booleans(), sealed=st.booleans())
def test_generated_wechat_bodies_never_cause_a_server_error(
    stack: Stack, body: bytes, signed: bool, sealed: bool
) -> None:
    before = stored_keys(stack, "tracker")
    reply = wechat_post(stack, body, signature=None if signed else "0" * 40, encrypt=sealed)
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        assert stored_keys(stack, "tracker") == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
updates = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"update_id": st.one_of(st.integers(), st.text(max_size=5))},
        optional={"message": json_values, "callback_query": json_values},
    ).map(lambda v: json.dumps(v).encode()),
)


@FUZZ
@given(body=updates, with_secret=st.booleans())
def test_generated_telegram_bodies_never_cause_a_server_error(
    stack: Stack, body: bytes, with_secret: bool
) -> None:
    before = stored_keys(stack, "tracker")
    reply = telegram_post(stack, body, secret=TELEGRAM_TEST_SECRET if with_secret else "nope")
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        assert stored_keys(stack, "tracker") == before


# -- helpers -------------------------------------------------------------------------------


async def _waiting(agent: Agent, conversation_id: str) -> bool:
    return conversation_id in await agent.waiting_ids()


async def _said(agent: Agent, conversation_id: str, text: str) -> bool:
    return any(line["text"] == text for line in await agent.transcript(conversation_id))


async def _line_with(agent: Agent, conversation_id: str, fragment: str) -> dict[str, Any] | None:
    for line in await agent.transcript(conversation_id):
        if fragment in line["text"]:
            return line
    return None


def _contents(wechat: FakeWeChatApi, openid: str) -> list[str]:
    return [m["content"] for m in wechat.sent(openid)]


def _texts(telegram: FakeTelegramApi, chat_id: int) -> list[str]:
    return [m["text"] for m in telegram.sent(chat_id)]
