"""A person takes over, through the real stack: customers on REST and socket.io, an agent on the API.

Uses the session stack (private Redis, Rasa with the Redis event broker, action
server, handoff service with its workers); restarts the handoff service once.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from handoff.auth import AgentDirectory, Role
from handoff.queue import HandoffQueue
from scripts.stack import Stack
from tests.integration.helpers import rest_headers, rest_url, texts
from tests.integration.test_socketio import WidgetClient

pytestmark = pytest.mark.integration


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.2)


class Agent:
    """An agent's browser, minus the browser: cookie session, CSRF header, the API only."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.name = name
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.settings.web_port}", timeout=30)
        self.csrf = ""

    @classmethod
    async def create(cls, stack: Stack, name: str, role: Role = Role.AGENT) -> Agent:
        queue = HandoffQueue.create(stack.settings.redis_url, stack.settings.key_prefix)
        await AgentDirectory(queue.client, stack.settings.key_prefix).add(name, "a good password", role)
        await queue.close()
        agent = cls(stack, name)
        reply = await agent.http.post("/api/agent/login", json={"name": name, "password": "a good password"})
        assert reply.status_code == 200, reply.text
        agent.csrf = reply.json()["csrf"]
        return agent

    async def get(self, path: str) -> Any:
        reply = await self.http.get(path)
        assert reply.status_code == 200, reply.text
        return reply.json()

    async def post(self, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        reply = await self.http.post(path, json=body or {}, headers={"X-CSRF-Token": self.csrf})
        assert reply.status_code == status, reply.text
        return reply.json()

    async def waiting_ids(self) -> list[str]:
        return [c["conversation_id"] for c in (await self.get("/api/queue"))["waiting"]]

    async def transcript(self, conversation_id: str) -> list[dict[str, Any]]:
        return list((await self.get(f"/api/conversations/{conversation_id}"))["transcript"])

    async def close(self) -> None:
        await self.http.aclose()


async def rest_say(stack: Stack, sender: str, message: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=30) as client:
        reply = await client.post(
            rest_url(stack), json={"sender": sender, "message": message}, headers=rest_headers(stack)
        )
    assert reply.status_code == 200, reply.text
    return list(reply.json())


async def rest_pending(stack: Stack, sender: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.get(
            f"http://127.0.0.1:{stack.settings.rasa_port}/webhooks/rest/messages",
            params={"sender": sender},
            headers=rest_headers(stack),
        )
    assert reply.status_code == 200, reply.text
    return list(reply.json())


async def next_text(widget: WidgetClient, timeout: float = 15.0) -> dict[str, Any]:
    return await asyncio.wait_for(widget.replies.get(), timeout)


async def widget_until(
    widget: WidgetClient, wanted: Callable[[str], bool], timeout: float = 15.0
) -> dict[str, Any]:
    """Skip queue-position updates (they come whenever the line moves) until the wanted message."""
    deadline = time.monotonic() + timeout
    while True:
        message = await next_text(widget, max(0.1, deadline - time.monotonic()))
        if wanted(str(message.get("text"))):
            return message


async def rest_until(stack: Stack, sender: str, text: str) -> list[dict[str, Any]]:
    """Poll the REST outbox until ``text`` arrived; returns everything collected on the way."""
    collected: list[dict[str, Any]] = []

    async def arrived() -> bool:
        collected.extend(await rest_pending(stack, sender))
        return text in [m.get("text") for m in collected]

    await eventually(arrived, what=f"{text!r} for REST customer {sender}")
    return collected


async def test_agent_takes_over_both_channels_hands_back_and_closes(stack: Stack) -> None:
    agent = await Agent.create(stack, "alice-" + secrets.token_hex(3))
    widget = WidgetClient(stack)
    try:
        rest_id = "ho-rest-" + uuid.uuid4().hex[:8]
        first = await rest_say(stack, rest_id, "I want to talk to a human")
        assert first[0]["text"] == texts("utter_handoff")["en"]
        assert "/cancel_handoff" in [b["payload"] for b in first[0]["buttons"]]

        socket_id = await widget.open(uuid.uuid4().hex)
        assert (await widget.say(socket_id, "转人工"))["text"] == texts("utter_handoff")["zh"]
        await eventually(
            lambda: _both_waiting(agent, rest_id, socket_id), what="both conversations in the agent's queue"
        )
        # the widget customer is told their place in the line, in Chinese
        told = (await next_text(widget))["text"]
        assert "排在第" in told or told == texts("utter_queue_next")["zh"]

        for conversation_id in (rest_id, socket_id):
            claimed = await agent.post(f"/api/conversations/{conversation_id}/claim")
            assert claimed["agent"] == agent.name
        joined = await widget_until(widget, lambda text: agent.name in text)
        assert "已接入" in joined["text"]

        # agent lines reach each customer
        await agent.post(f"/api/conversations/{socket_id}/messages", {"text": "您好，我是人工客服"})
        assert (await next_text(widget))["text"] == "您好，我是人工客服"
        await agent.post(f"/api/conversations/{rest_id}/messages", {"text": "Hi, Alice here"})
        parked = await rest_until(stack, rest_id, "Hi, Alice here")
        assert any(agent.name in str(m.get("text")) for m in parked), "told who joined"

        # customer lines during the hold reach the agent; the bot says nothing
        assert await rest_say(stack, rest_id, "hello, my code still fails") == []
        await widget.sio.emit("user_uttered", {"session_id": socket_id, "message": "你好，还在吗"})
        with pytest.raises(asyncio.TimeoutError):
            await next_text(widget, timeout=2.0)
        for conversation_id, line in ((rest_id, "hello, my code still fails"), (socket_id, "你好，还在吗")):
            await eventually(
                lambda cid=conversation_id, text=line: _said(agent, cid, text),
                what=f"the customer's line in {conversation_id}",
            )

        # hand back: the bot answers again
        await agent.post(f"/api/conversations/{rest_id}/handback")
        await rest_until(stack, rest_id, texts("utter_handed_back")["en"])
        assert (await rest_say(stack, rest_id, "hello"))[0]["text"] == texts("utter_greet")["en"]

        # close: the customer is asked for a rating, and it is stored with the record
        await agent.post(f"/api/conversations/{socket_id}/close", {"resolution": "resolved"})
        question = await widget_until(widget, lambda text: text == texts("utter_ask_rating")["zh"])
        payloads = [b["payload"] for b in question["quick_replies"]]
        assert '/rate{"rating":"5"}' in payloads
        thanks = await widget.say(socket_id, '/rate{"rating":"5"}')
        assert thanks["text"] == texts("utter_rating_thanks")["zh"]
        closed = await agent.get(f"/api/conversations/{socket_id}")
        assert closed["state"] == "closed" and closed["rating"] == 5 and closed["resolution"] == "resolved"
        speakers = [line["speaker"] for line in closed["transcript"]]
        assert "agent" in speakers and "customer" in speakers
    finally:
        await widget.close()
        await agent.close()


async def _both_waiting(agent: Agent, *ids: str) -> bool:
    waiting = await agent.waiting_ids()
    return all(i in waiting for i in ids)


async def _said(agent: Agent, conversation_id: str, text: str) -> bool:
    return any(line["text"] == text for line in await agent.transcript(conversation_id))


async def test_the_api_answers_nothing_without_a_session(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.settings.web_port}") as anonymous:
        for path in (
            "/api/queue",
            "/api/agent/me",
            "/api/tickets",
            "/api/supervisor/stats",
            "/api/openapi.json",
        ):
            assert (await anonymous.get(path)).status_code == 401, path
        assert (await anonymous.post("/api/conversations/x/claim")).status_code == 401
    agent = await Agent.create(stack, "bob-" + secrets.token_hex(3))
    try:
        # a session without the CSRF header cannot change anything
        assert (await agent.http.post("/api/conversations/x/claim")).status_code == 403
        assert (await agent.http.get("/api/supervisor/stats")).status_code == 403, (
            "agents are not supervisors"
        )
        schema = await agent.get("/api/openapi.json")
        assert "/api/conversations/{conversation_id}/claim" in schema["paths"]
    finally:
        await agent.close()


async def test_restarting_the_handoff_service_loses_no_one(stack: Stack) -> None:
    agent = await Agent.create(stack, "carol-" + secrets.token_hex(3), Role.SUPERVISOR)
    try:
        ids = [f"ho-restart-{i}-" + uuid.uuid4().hex[:6] for i in range(5)]
        for conversation_id in ids:
            await rest_say(stack, conversation_id, "human please")
        await eventually(lambda: _both_waiting(agent, *ids), what="five waiting")
        stack.stop_service("web")
        # a request made while the service is down waits in the request stream
        late = "ho-restart-late-" + uuid.uuid4().hex[:6]
        await rest_say(stack, late, "human please")
        stack.restart_service("web")
        await eventually(lambda: _both_waiting(agent, *ids, late), what="all six after the restart")
        stats = await agent.get("/api/supervisor/stats")
        assert stats["waiting_by_priority"]["normal"] >= 6
    finally:
        await agent.close()


async def test_the_console_socket_answers_only_a_live_session_from_our_own_pages(stack: Stack) -> None:
    from websockets.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatusCode

    agent = await Agent.create(stack, "finn-" + secrets.token_hex(3))
    url = f"ws://127.0.0.1:{stack.settings.web_port}/api/agent/ws"
    cookie = {"Cookie": f"cs_session={agent.http.cookies.get('cs_session')}"}
    try:
        # another port of the same host gets the SameSite cookie too; it must not get the stream
        foreign = {**cookie, "Origin": f"http://127.0.0.1:{stack.settings.rasa_port}"}
        with pytest.raises(InvalidStatusCode):
            async with connect(url, extra_headers=foreign):
                pass
        with pytest.raises(InvalidStatusCode):
            async with connect(url):  # no session at all
                pass
        async with connect(url, extra_headers=cookie) as socket:
            await socket.send('{"type": "ping"}')
            await agent.post("/api/agent/logout")
            with pytest.raises(ConnectionClosed):
                # the server may close before this ping goes out: either way the socket ends
                await socket.send('{"type": "ping"}')
                while True:  # queue pushes may arrive first; then the socket must close
                    await asyncio.wait_for(socket.recv(), 5)
    finally:
        await agent.close()


async def test_a_transfer_needs_another_agent_who_is_online(stack: Stack) -> None:
    agent = await Agent.create(stack, "gina-" + secrets.token_hex(3))
    queue = HandoffQueue.create(stack.settings.redis_url, stack.settings.key_prefix)
    try:
        await AgentDirectory(queue.client, stack.settings.key_prefix).add(
            "offline-olaf", "a good password", Role.AGENT
        )
        customer = "ho-transfer-" + uuid.uuid4().hex[:8]
        await rest_say(stack, customer, "I want to talk to a human")
        await eventually(lambda: _both_waiting(agent, customer), what="the customer waiting")
        await agent.post(f"/api/conversations/{customer}/claim")
        await agent.post(f"/api/conversations/{customer}/transfer", {"agent": "offline-olaf"}, status=409)
        await agent.post(f"/api/conversations/{customer}/transfer", {"agent": agent.name}, status=409)
        await agent.post(f"/api/conversations/{customer}/close", {"resolution": "resolved"})
        # closing twice does not ask the customer twice
        await agent.post(f"/api/conversations/{customer}/close", {"resolution": "resolved"}, status=403)
    finally:
        await queue.close()
        await agent.close()


async def test_agents_see_phone_numbers_and_emails_masked(stack: Stack) -> None:
    """The transcript and summary in the console API mask personal values; the live line does too."""
    agent = await Agent.create(stack, "mia-" + secrets.token_hex(3))
    try:
        sender = "ho-mask-" + uuid.uuid4().hex[:8]
        await rest_say(stack, sender, "my order never arrived, reach me at li.si@example.com")
        await rest_say(stack, sender, "I want to talk to a human")
        await eventually(lambda: _in_queue(agent, sender), what="the conversation in the queue")
        await agent.post(f"/api/conversations/{sender}/claim")
        await rest_say(stack, sender, "or call 13812345678")

        async def masked_line_arrived() -> bool:
            return any("138****5678" in line["text"] for line in await agent.transcript(sender))

        await eventually(masked_line_arrived, what="the customer's line during the hold")
        detail = await agent.get(f"/api/conversations/{sender}")
        everything = json.dumps(detail, ensure_ascii=False) + json.dumps(await agent.get("/api/queue"))
        assert "li.si@example.com" not in everything and "13812345678" not in everything
        assert any("l***@example.com" in line["text"] for line in detail["transcript"])
    finally:
        await agent.close()


async def _in_queue(agent: Agent, conversation_id: str) -> bool:
    return conversation_id in await agent.waiting_ids()
