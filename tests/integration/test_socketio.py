"""Socket.IO channel (the widget's) against the real stack."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import socketio

from common.secrets import conversation_secret
from scripts.stack import Stack
from tests.integration.helpers import is_handoff, is_kb_answer, texts

pytestmark = pytest.mark.integration


class WidgetClient:
    """What the browser widget does, in Python."""

    def __init__(self, stack: Stack) -> None:
        self.url = f"http://127.0.0.1:{stack.settings.rasa_port}"
        self.stack = stack
        self.sio = socketio.AsyncClient(reconnection=False)
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.confirmed: asyncio.Queue[str] = asyncio.Queue()
        self.sio.on("bot_uttered", self.replies.put_nowait)
        self.sio.on("error_message", self.errors.put_nowait)
        self.sio.on("session_confirm", self.confirmed.put_nowait)

    async def open(self, session_id: str | None) -> str:
        await self.sio.connect(self.url, transports=["websocket"], socketio_path="/socket.io")
        # a returning browser shows the secret it was issued with the id (the widget keeps both)
        secret = conversation_secret(self.stack.settings.conversation_key, session_id or "")
        await self.sio.emit("session_request", {"session_id": session_id, "session_secret": secret})
        return await asyncio.wait_for(self.confirmed.get(), 10)

    async def say(self, session_id: str, message: str) -> dict[str, Any]:
        await self.sio.emit("user_uttered", {"session_id": session_id, "message": message})
        return await asyncio.wait_for(self.replies.get(), 30)

    async def close(self) -> None:
        await self.sio.disconnect()


@pytest.fixture
async def client(stack: Stack) -> Any:
    widget = WidgetClient(stack)
    yield widget
    await widget.close()


async def test_turns_in_chinese_and_english(client: WidgetClient) -> None:
    session = await client.open(uuid.uuid4().hex)
    assert (await client.say(session, "你好"))["text"] == texts("utter_greet")["zh"]
    assert (await client.say(session, "hello"))["text"] == texts("utter_greet")["en"]


async def test_buttons_arrive_as_quick_replies(client: WidgetClient) -> None:
    session = await client.open(uuid.uuid4().hex)
    reply = await client.say(session, "how do I redeem a steam gift card")
    assert is_kb_answer(reply["text"], "en")
    assert "/ask_human" in [b["payload"] for b in reply["quick_replies"]]
    handoff = await client.say(session, "/ask_human")
    assert is_handoff(handoff["text"], "en")


async def test_server_issues_a_session_when_the_browser_has_none_or_a_bad_one(client: WidgetClient) -> None:
    session = await client.open(None)
    assert len(session) == 32
    other = WidgetClient(client.stack)
    bad = await other.open("not valid; drop table")
    assert bad != "not valid; drop table" and len(bad) == 32
    await other.close()


async def test_message_without_session_gets_an_error_event(client: WidgetClient) -> None:
    await client.open(uuid.uuid4().hex)
    await client.sio.emit("user_uttered", {"message": "hello"})
    error = await asyncio.wait_for(client.errors.get(), 10)
    assert error["error"] == "invalid_session"


async def test_empty_message_gets_a_prompt(client: WidgetClient) -> None:
    session = await client.open(uuid.uuid4().hex)
    assert (await client.say(session, "   "))["text"] == texts("utter_empty_message")["en"]


async def test_reconnect_keeps_the_conversation(stack: Stack, client: WidgetClient) -> None:
    session = await client.open(uuid.uuid4().hex)
    await client.say(session, "你好")
    await client.close()
    again = WidgetClient(stack)
    assert await again.open(session) == session
    reply = await again.say(session, "发票怎么开")
    assert is_kb_answer(reply["text"], "zh")
    await again.close()
    async with httpx.AsyncClient() as http:
        secret = conversation_secret(stack.settings.conversation_key, session)
        history = (
            await http.get(
                f"http://127.0.0.1:{stack.settings.web_port}/api/history/{session}",
                headers={"X-Conversation-Secret": secret},
            )
        ).json()
    assert [m["text"] for m in history["messages"] if m["speaker"] == "customer"] == ["你好", "发票怎么开"]
