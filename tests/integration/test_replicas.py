"""Two Rasa replicas and two action servers behind nginx (scripts/replicas.py), real processes.

Starts its own private redis-server (AOF), 2 action servers, 2 Rasa servers,
nginx (Debian's package) and the web service on free loopback ports, with a
key prefix of its own; nothing outside the test's processes is touched.

- 20 conversations x 10 messages at once, spread over both replicas: every
  transcript in order, each message exactly once, no two turns interleaved.
- Socket.IO: agent lines posted to either replica reach the widget's socket.
- kill -9 one Rasa replica under traffic: the conversations go on on the other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from common.secrets import conversation_secret
from scripts.replicas import ReplicaStack, render_nginx_conf
from scripts.stack import StackError, private_settings
from tests.integration.helpers import rest_headers

pytestmark = pytest.mark.integration

CONVERSATIONS = 20
MESSAGES = 10
# the kinds of turn the widget sees most; each carries its number so the transcript shows order
LINES = ["hello {n}", "how do I top up my account {n}", "thanks {n}", "what payment methods do you take {n}"]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaStack]:
    var = tmp_path_factory.mktemp("replicas")
    settings = private_settings(var, "r", rate_limit_burst=0, rate_limit_per_minute=0)
    stack = ReplicaStack(settings=settings, log_dir=var / "log", start_redis=True, quiet=True)
    try:
        stack.start()
    except StackError as error:
        stack.stop()
        pytest.fail(f"the replica stack did not start: {error}")
    yield stack
    stack.stop()


def rest(stack: ReplicaStack) -> str:
    return f"http://127.0.0.1:{stack.settings.rasa_port}/webhooks/rest/webhook"


def tracker_events(stack: ReplicaStack, sender: str) -> list[dict[str, Any]]:
    reply = httpx.get(
        f"http://127.0.0.1:{stack.settings.rasa_port}/conversations/{sender}/tracker",
        params={"token": stack.settings.rasa_token, "include_events": "ALL"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return list(reply.json()["events"])


def assert_turns_in_order(events: list[dict[str, Any]], sent: list[str]) -> None:
    said = [e["text"] for e in events if e.get("event") == "user"]
    assert said == sent, f"lost, duplicated or reordered messages: {said}"
    # one turn at a time: every customer line comes after the previous turn ended listening, and every
    # turn ends listening. Bot lines between turns are fine (queue notices arrive through the tracker API).
    marks = [
        "user" if e["event"] == "user" else "listen"
        for e in events
        if e.get("event") == "user" or (e.get("event") == "action" and e.get("name") == "action_listen")
    ]
    first = marks.index("user")
    expected = ["user", "listen"] * len(sent)
    assert marks[first:] == expected, f"turns interleaved: {marks}"


def test_the_nginx_config_names_every_replica_and_keeps_nginx_variables(tmp_path: Path) -> None:
    text = render_nginx_conf(tmp_path, "127.0.0.1", 5005, 5055, [7001, 7002], [7101, 7102])
    assert text.count("server 127.0.0.1:7001") == 2  # REST and Socket.IO upstreams
    assert "server 127.0.0.1:7102" in text and "listen 127.0.0.1:5005;" in text
    assert "hash $remote_addr consistent;" in text and "$http_upgrade" in text
    assert "${" not in text


async def test_twenty_conversations_of_ten_messages_across_two_replicas_stay_in_order(
    replicas: ReplicaStack,
) -> None:
    before = list(replicas.turns_per_replica().values())
    senders = [f"rep-{i}-" + uuid.uuid4().hex[:6] for i in range(CONVERSATIONS)]
    sent: dict[str, list[str]] = {s: [] for s in senders}
    failures: list[str] = []

    async def conversation(http: httpx.AsyncClient, sender: str) -> None:
        for n in range(MESSAGES):
            text = LINES[n % len(LINES)].format(n=n)
            sent[sender].append(text)
            reply = await http.post(
                rest(replicas), json={"sender": sender, "message": text}, headers=rest_headers(replicas)
            )
            if reply.status_code != 200 or not reply.json():
                failures.append(f"{sender} #{n}: {reply.status_code} {reply.text[:100]}")

    async with httpx.AsyncClient(timeout=120) as http:
        await asyncio.gather(*(conversation(http, s) for s in senders))
    assert failures == []
    for sender in senders:
        assert_turns_in_order(tracker_events(replicas, sender), sent[sender])
    after = list(replicas.turns_per_replica().values())
    served = [b - a for a, b in zip(before, after, strict=True)]
    assert sum(served) == CONVERSATIONS * MESSAGES
    assert all(count > 0 for count in served), f"one replica served nothing: {served}"


async def test_messages_of_one_conversation_sent_at_once_to_both_replicas_take_turns(
    replicas: ReplicaStack,
) -> None:
    """The lock store's job: two messages of one conversation on two replicas never run together."""
    ports = replicas.replica_ports("rasa")
    senders = [f"rep-burst-{i}-" + uuid.uuid4().hex[:6] for i in range(CONVERSATIONS)]

    async def burst(http: httpx.AsyncClient, sender: str) -> list[int]:
        lines = [f"hello {sender} {n}" for n in range(4)]
        replies = await asyncio.gather(
            *(
                http.post(
                    f"http://127.0.0.1:{ports[n % len(ports)]}/webhooks/rest/webhook",
                    json={"sender": sender, "message": line},
                    headers=rest_headers(replicas),
                )
                for n, line in enumerate(lines)
            )
        )
        return [r.status_code for r in replies]

    async with httpx.AsyncClient(timeout=120) as http:
        statuses = await asyncio.gather(*(burst(http, s) for s in senders))
    assert all(code == 200 for codes in statuses for code in codes), statuses
    for sender in senders:
        events = tracker_events(replicas, sender)
        said = [e["text"] for e in events if e.get("event") == "user"]
        # sent at once, so any order is right; each exactly once, one turn at a time
        assert sorted(said) == sorted(f"hello {sender} {n}" for n in range(4))
        assert_turns_in_order(events, said)


async def test_agent_lines_posted_to_either_replica_reach_the_widget_socket(replicas: ReplicaStack) -> None:
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    confirmed: asyncio.Queue[str] = asyncio.Queue()
    client = socketio.AsyncClient(reconnection=False)
    client.on("bot_uttered", received.put_nowait)
    client.on("session_confirm", confirmed.put_nowait)
    session = "rep-sock-" + uuid.uuid4().hex[:8]
    await client.connect(
        f"http://127.0.0.1:{replicas.settings.rasa_port}",
        transports=["websocket"],
        socketio_path="/socket.io",
    )
    try:
        secret = conversation_secret(replicas.settings.conversation_key, session)
        await client.emit("session_request", {"session_id": session, "session_secret": secret})
        assert await asyncio.wait_for(confirmed.get(), 10) == session
        await client.emit("user_uttered", {"session_id": session, "message": "hello"})
        assert (await asyncio.wait_for(received.get(), 30))["text"]
        # what the handoff service does for an agent line, once through each replica
        async with httpx.AsyncClient(timeout=30) as http:
            for number, port in enumerate(replicas.replica_ports("rasa") * 2):
                reply = await http.post(
                    f"http://127.0.0.1:{port}/conversations/{session}/tracker/events",
                    params={
                        "token": replicas.settings.rasa_token,
                        "output_channel": "latest",
                        "execute_side_effects": "true",
                        "include_events": "NONE",
                    },
                    json=[{"event": "bot", "text": f"agent line {number}", "metadata": {"agent": "alice"}}],
                )
                assert reply.status_code == 200, reply.text
        got = [(await asyncio.wait_for(received.get(), 10))["text"] for _ in range(4)]
        assert sorted(got) == [f"agent line {n}" for n in range(4)]
    finally:
        await client.disconnect()


async def test_killing_one_rasa_replica_under_traffic_the_conversations_go_on(replicas: ReplicaStack) -> None:
    senders = [f"rep-kill-{i}-" + uuid.uuid4().hex[:6] for i in range(10)]
    answered: dict[str, list[str]] = {s: [] for s in senders}
    failed_at_kill: list[str] = []
    killed = asyncio.Event()

    async def conversation(http: httpx.AsyncClient, sender: str) -> None:
        for n in range(8):
            text = f"hello {n}"
            reply = await http.post(
                rest(replicas), json={"sender": sender, "message": text}, headers=rest_headers(replicas)
            )
            if reply.status_code == 200 and reply.json():
                answered[sender].append(text)
            elif not killed.is_set() or len(failed_at_kill) >= len(senders):
                raise AssertionError(f"{sender} #{n}: {reply.status_code} {reply.text[:100]}")
            else:
                failed_at_kill.append(sender)  # in flight on the replica that died: the widget resends

    async def kill_midway() -> None:
        await asyncio.sleep(1.5)
        replicas.kill_service("rasa-1")
        killed.set()

    try:
        async with httpx.AsyncClient(timeout=120) as http:
            await asyncio.gather(kill_midway(), *(conversation(http, s) for s in senders))
        # each conversation was answered after the kill, by the replica that is left
        for sender in senders:
            assert len(answered[sender]) >= 8 - failed_at_kill.count(sender)
            said = [e["text"] for e in tracker_events(replicas, sender) if e.get("event") == "user"]
            assert [t for t in said if t in answered[sender]] == answered[sender]
        assert len(failed_at_kill) <= len(senders)  # at most the turns in flight at the moment of the kill
    finally:
        replicas.restart_service("rasa-1")
    # the restarted replica serves the same conversations again (their trackers are in Redis)
    port = replicas.replica_ports("rasa")[0]
    reply = httpx.post(
        f"http://127.0.0.1:{port}/webhooks/rest/webhook",
        json={"sender": senders[0], "message": "thanks"},
        headers=rest_headers(replicas),
        timeout=60,
    )
    assert reply.status_code == 200 and reply.json()
    said = [e["text"] for e in tracker_events(replicas, senders[0]) if e.get("event") == "user"]
    assert said[-1] == "thanks"
    assert [t for t in said[:-1] if t in answered[senders[0]]] == answered[senders[0]]
