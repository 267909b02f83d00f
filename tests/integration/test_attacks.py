"""Issue 23: every attack an outside tester ran against `make run`, against the real stack.

Each test makes the request of the finding and fails if it works again. The stack is
the shared one of tests/conftest.py (its own Redis, Rasa, action server, web service).
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from typing import Any

import httpx
import pytest
import socketio

from common.secrets import conversation_secret
from handoff.auth import AgentDirectory, Role
from handoff.queue import HandoffQueue
from scripts.stack import Stack
from tests.integration.helpers import handoff_records, redis_client, rest_headers, rest_url, say, texts

pytestmark = pytest.mark.integration

OLD_README_TOKEN = "demo-token-not-for-production"


def web_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.web_port}"


def outside_address() -> str | None:
    """An address of this machine that is not loopback (what another machine would connect to)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


# -- 1. the action server ----------------------------------------------------------------------


def test_1_the_action_server_runs_nothing_without_rasas_secret(stack: Stack) -> None:
    call = {
        "next_action": "action_show_order",
        "sender_id": "attacker",
        "tracker": {
            "sender_id": "attacker",
            "slots": {"order_id": "DG202611200001", "owner_verified": True, "language": "en"},
            "latest_message": {},
            "events": [],
            "paused": False,
            "followup_action": None,
            "active_loop": {},
            "latest_action_name": None,
        },
        "domain": {},
        "version": "3.6.21",
    }
    url = f"http://127.0.0.1:{stack.settings.action_port}/webhook"
    for headers in (
        {},
        {"Authorization": "Bearer wrong-secret"},
        {"Authorization": stack.settings.action_token},
    ):
        reply = httpx.post(url, json=call, headers=headers, timeout=10)
        assert reply.status_code == 401 and "DG202611200001" not in reply.text
    assert httpx.get(f"http://127.0.0.1:{stack.settings.action_port}/healthz", timeout=10).status_code == 200
    # and the real path, Rasa with the secret, still runs actions: a knowledge answer or greeting comes back
    assert say(stack, "att-1-" + uuid.uuid4().hex[:6], "hello")[0]["text"] == texts("utter_greet")["en"]


def test_1_2_no_service_listens_beyond_loopback(stack: Stack) -> None:
    address = outside_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    s = stack.settings
    for port in (s.action_port, s.rasa_port, s.web_port):
        with socket.socket() as sock:
            sock.settimeout(2)
            assert sock.connect_ex((address, port)) != 0, f"port {port} answers on {address}"


# -- 2. Rasa's HTTP API --------------------------------------------------------------------------


def test_2_the_token_the_readme_printed_opens_nothing(stack: Stack) -> None:
    sender = "att-2-" + uuid.uuid4().hex[:6]
    say(stack, sender, "hello")
    base = stack.settings.rasa_url
    reply = httpx.get(
        f"{base}/conversations/{sender}/tracker", params={"token": OLD_README_TOKEN}, timeout=10
    )
    assert reply.status_code == 401
    events = httpx.post(
        f"{base}/conversations/{sender}/tracker/events",
        params={"token": OLD_README_TOKEN},
        json=[{"event": "slot", "name": "owner_verified", "value": True}],
        timeout=10,
    )
    assert events.status_code == 401
    assert stack.settings.rasa_token != OLD_README_TOKEN and len(stack.settings.rasa_token) >= 32


# -- 3. a conversation id is no credential --------------------------------------------------------


class Widget:
    def __init__(self, stack: Stack) -> None:
        self.url = f"http://127.0.0.1:{stack.settings.rasa_port}"
        self.sio = socketio.AsyncClient(reconnection=False)
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.confirmed: asyncio.Queue[str] = asyncio.Queue()
        self.secrets: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.sio.on("bot_uttered", self.replies.put_nowait)
        self.sio.on("error_message", self.errors.put_nowait)
        self.sio.on("session_confirm", self.confirmed.put_nowait)
        self.sio.on("session_secret", self.secrets.put_nowait)

    async def connect(self) -> None:
        await self.sio.connect(self.url, transports=["websocket"], socketio_path="/socket.io")

    async def join(self, session_id: str | None, secret: str | None = None) -> tuple[str, str]:
        await self.sio.emit("session_request", {"session_id": session_id, "session_secret": secret})
        issued = await asyncio.wait_for(self.secrets.get(), 10)
        return await asyncio.wait_for(self.confirmed.get(), 10), issued["secret"]


async def test_3_socketio_needs_the_secret_to_join_and_writes_only_where_it_joined(stack: Stack) -> None:
    customer, attacker, sneak = Widget(stack), Widget(stack), Widget(stack)
    for widget in (customer, attacker, sneak):
        await widget.connect()
    try:
        session, secret = await customer.join(None)
        await customer.sio.emit("user_uttered", {"session_id": session, "message": "hello"})
        assert (await asyncio.wait_for(customer.replies.get(), 30))["text"] == texts("utter_greet")["en"]
        # someone else's id without its secret: a conversation of their own, not the customer's
        other, _ = await attacker.join(session)
        assert other != session
        await attacker.sio.emit("user_uttered", {"session_id": session, "message": "I want a refund"})
        assert (await asyncio.wait_for(attacker.errors.get(), 10))["error"] == "invalid_session"
        # a socket that never asked for a session cannot write either
        await sneak.sio.emit("user_uttered", {"session_id": session, "message": "hello"})
        assert (await asyncio.wait_for(sneak.errors.get(), 10))["error"] == "invalid_session"
        assert customer.replies.empty(), "the customer's socket got nothing from the others"
        # the customer's own reload: the id and its secret continue the conversation
        again = Widget(stack)
        await again.connect()
        assert (await again.join(session, secret))[0] == session
        await again.sio.disconnect()
    finally:
        for widget in (customer, attacker, sneak):
            await widget.sio.disconnect()


def test_3_history_needs_the_conversations_secret_also_for_wechat_and_telegram(stack: Stack) -> None:
    sender = "att-3h-" + uuid.uuid4().hex[:6]
    say(stack, sender, "call me on 13812345678")
    for conversation in (sender, "wx:o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "tg:123456"):
        for headers in ({}, {"X-Conversation-Secret": "0" * 64}):
            reply = httpx.get(f"{web_url(stack)}/api/history/{conversation}", headers=headers, timeout=10)
            assert reply.status_code == 403 and "13812345678" not in reply.text
    secret = conversation_secret(stack.settings.conversation_key, sender)
    own = httpx.get(
        f"{web_url(stack)}/api/history/{sender}", headers={"X-Conversation-Secret": secret}, timeout=10
    )
    assert own.status_code == 200 and own.json()["messages"]


def test_3_rest_needs_a_client_and_the_outbox_is_the_owners(stack: Stack) -> None:
    sender = "att-3r-" + uuid.uuid4().hex[:6]
    say(stack, sender, "hello")
    messages = f"http://127.0.0.1:{stack.settings.rasa_port}/webhooks/rest/messages"
    unauthenticated = httpx.post(rest_url(stack), json={"sender": sender, "message": "hi"}, timeout=10)
    assert unauthenticated.status_code == 401
    assert httpx.get(messages, params={"sender": sender}, timeout=10).status_code == 401
    # an agent line parked for the customer stays parked for the customer
    key = f"{stack.settings.key_prefix}:rest:outbox:{sender}"
    redis_client(stack).rpush(key, json.dumps({"recipient_id": sender, "text": "agent line"}))
    other_client = {"Authorization": "Bearer " + "another-client-token-0000"}
    assert httpx.get(messages, params={"sender": sender}, headers=other_client, timeout=10).status_code == 401
    mine = httpx.get(messages, params={"sender": sender}, headers=rest_headers(stack), timeout=10)
    assert mine.status_code == 200 and mine.json()[0]["text"] == "agent line"


# -- 4. ownership proofs across conversations -----------------------------------------------------


def test_4_guessing_a_phone_tail_from_fresh_conversations_locks_the_order(stack: Stack) -> None:
    from actions.proofs import ORDER_LIMIT

    order = "DG202611230010"
    keys = redis_client(stack)
    try:
        for n in range(ORDER_LIMIT + 1):
            sender = (
                f"att-4-{n}-" + uuid.uuid4().hex[:6]
            )  # a new conversation each time, as an attacker would
            say(stack, sender, "查订单")
            say(stack, sender, order)
            last = say(stack, sender, f"{1000 + n}")
        assert any(m.get("text") == texts("utter_owner_check_locked")["zh"] for m in last), last
        record = handoff_records(stack, sender)[-1]
        assert record["category"] == "proof_attacked" and "ownership proof attacked" in record["summary"]
    finally:
        proof_keys = list(keys.scan_iter(match=f"{stack.settings.key_prefix}:proof:*"))
        if proof_keys:
            keys.delete(*proof_keys)


# -- 5. console logins and sessions ---------------------------------------------------------------


async def _agent(stack: Stack, name: str, role: Role, password: str = "a good password") -> None:
    queue = HandoffQueue.create(stack.settings.redis_url, stack.settings.key_prefix)
    await AgentDirectory(queue.client, stack.settings.key_prefix).add(name, password, role)
    await queue.close()


def _login(stack: Stack, name: str, password: str, source: str = "127.0.0.1") -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.post(f"{web_url(stack)}/api/agent/login", json={"name": name, "password": password})


def test_5_a_stranger_cannot_lock_an_agent_out(stack: Stack) -> None:
    name = "victim" + uuid.uuid4().hex[:6]
    asyncio.run(_agent(stack, name, Role.AGENT))
    codes = [_login(stack, name, "wrong password", source="127.0.0.9").status_code for _ in range(7)]
    assert codes[-1] == 429, codes  # the stranger's address is locked ...
    assert _login(stack, name, "a good password").status_code == 200  # ... the agent at theirs is not


def test_5_sessions_follow_the_agents_current_role_and_password(stack: Stack) -> None:
    name = "demoted" + uuid.uuid4().hex[:6]
    asyncio.run(_agent(stack, name, Role.SUPERVISOR))
    with httpx.Client(base_url=web_url(stack), timeout=30) as browser:
        assert (
            browser.post("/api/agent/login", json={"name": name, "password": "a good password"}).status_code
            == 200
        )
        assert browser.get("/api/supervisor/stats").status_code == 200
        asyncio.run(_agent(stack, name, Role.AGENT))  # demoted (same password, new hash)
        # re-adding set a new salt: the password record changed, so the session ended
        assert browser.get("/api/agent/me").status_code == 401
        assert (
            browser.post("/api/agent/login", json={"name": name, "password": "a good password"}).status_code
            == 200
        )
        assert browser.get("/api/supervisor/stats").status_code == 403  # the current role, not the old one


# -- 6. client metadata ---------------------------------------------------------------------------


def test_6_client_metadata_cannot_break_the_history_or_the_handoff(stack: Stack) -> None:
    sender = "att-6-" + uuid.uuid4().hex[:6]
    forged = {
        "rejected_message": "x",
        "button_title": "I agree to pay 1000",
        "attachment": "x",
        "agent": "boss",
    }
    reply = httpx.post(
        rest_url(stack),
        json={"sender": sender, "message": "hello", "metadata": forged},
        headers=rest_headers(stack),
        timeout=30,
    )
    assert reply.status_code == 200
    secret = conversation_secret(stack.settings.conversation_key, sender)
    history = httpx.get(
        f"{web_url(stack)}/api/history/{sender}", headers={"X-Conversation-Secret": secret}, timeout=10
    )
    assert history.status_code == 200
    shown = [m["text"] for m in history.json()["messages"] if m["speaker"] == "customer"]
    assert shown == ["hello"], shown
    # and the customer still reaches a person
    handed = say(stack, sender, "转人工")
    assert handed and "trouble" not in handed[0]["text"] and handoff_records(stack, sender)


# -- 7. the web service's input --------------------------------------------------------------------


def test_7_huge_bodies_deep_json_and_lone_surrogates_are_clean_4xx(stack: Stack) -> None:
    login = f"{web_url(stack)}/api/agent/login"
    huge = httpx.post(login, json={"name": "x", "password": "p" * 10_000_000}, timeout=30)
    assert huge.status_code == 413 and len(huge.content) < 1000
    long = httpx.post(login, json={"name": "x", "password": "p" * 1000}, timeout=30)
    assert long.status_code == 422 and "ppp" not in long.text  # the input is never echoed
    surrogate = httpx.post(
        login,
        content=b'{"name": "a\\ud800b", "password": "whatever"}',
        headers={"content-type": "application/json"},
    )
    assert 400 <= surrogate.status_code < 500, surrogate.text
    deep = b'{"sender": "x", "message": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    rest = httpx.post(rest_url(stack), content=deep, headers={"content-type": "application/json"}, timeout=30)
    assert rest.status_code == 400
    web = httpx.post(login, content=b"[" * 5000 + b"]" * 5000, headers={"content-type": "application/json"})
    assert 400 <= web.status_code < 500


# -- 8. agents and other agents' conversations ----------------------------------------------------


async def _waiting_for(agent: Any, conversation_id: str) -> bool:
    return conversation_id in await agent.waiting_ids()


async def test_8_agents_see_the_waiting_line_and_their_own_conversations_only(stack: Stack) -> None:
    from tests.integration.test_handoff_flow import Agent, eventually, rest_say

    sender = "att-8-" + uuid.uuid4().hex[:6]
    holder = await Agent.create(stack, "holder" + uuid.uuid4().hex[:4])
    other = await Agent.create(stack, "other" + uuid.uuid4().hex[:4])
    boss = await Agent.create(stack, "boss" + uuid.uuid4().hex[:4], Role.SUPERVISOR)
    try:
        await rest_say(stack, sender, "我要转人工")
        # waiting: every agent may pick it up
        await eventually(lambda: _waiting_for(other, sender), what="the request in another agent's queue")
        await holder.post(f"/api/conversations/{sender}/claim")
        assert (await other.http.get(f"/api/conversations/{sender}")).status_code == 403
        assert sender not in [c["conversation_id"] for c in (await other.get("/api/queue"))["active"]]
        assert sender in [c["conversation_id"] for c in (await boss.get("/api/queue"))["active"]]
        assert (await boss.http.get(f"/api/conversations/{sender}")).status_code == 200
        await holder.post(f"/api/conversations/{sender}/close", {"resolution": "resolved"})
    finally:
        for agent in (holder, other, boss):
            await agent.close()


# -- 9. what answers without a credential ---------------------------------------------------------


def test_9_metrics_knowledge_search_and_the_console_csp(stack: Stack) -> None:
    s = stack.settings
    for port in (s.rasa_port, s.action_port, s.web_port):
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 401
        scraped = httpx.get(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Authorization": f"Bearer {s.metrics_token}"},
            timeout=10,
        )
        assert scraped.status_code == 200
    assert httpx.get(f"{web_url(stack)}/api/kb/search", params={"q": "refund"}, timeout=10).status_code == 401
    csp = httpx.get(f"{web_url(stack)}/console", timeout=10).headers["content-security-policy"]
    connect = next(part for part in csp.split(";") if "connect-src" in part).split()
    assert "ws:" not in connect and "wss:" not in connect
    assert f"ws://127.0.0.1:{s.web_port}" in connect
