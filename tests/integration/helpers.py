"""Small helpers for tests that talk to the running stack."""

from __future__ import annotations

import re
from typing import Any

import httpx

from scripts.stack import Stack
from tests.conftest import load_domain

HAN = re.compile(r"[\u4e00-\u9fff]")


def texts(response: str) -> dict[str, str]:
    """{"zh": ..., "en": ...} of a domain response."""
    variations = load_domain()["responses"][response]
    return {"zh": variations[0]["text"], "en": variations[1]["text"]}


def rest_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.rasa_port}/webhooks/rest/webhook"


def rest_headers(stack: Stack) -> dict[str, str]:
    """How the stack's REST integration authenticates (its first CS_REST_CLIENTS token)."""
    token = next(iter(stack.settings.rest_clients))
    return {"Authorization": f"Bearer {token}"}


def say(stack: Stack, sender: str, message: Any, timeout: float = 30) -> list[dict[str, Any]]:
    reply = httpx.post(
        rest_url(stack),
        json={"sender": sender, "message": message},
        headers=rest_headers(stack),
        timeout=timeout,
    )
    assert reply.status_code == 200, reply.text
    return list(reply.json())


def redis_client(stack: Stack) -> Any:
    import redis

    return redis.Redis.from_url(stack.settings.redis_url, decode_responses=True)


def is_chinese(text: str) -> bool:
    return bool(HAN.search(text))


def is_kb_answer(text: str, language: str) -> bool:
    """A knowledge-base answer: an article section followed by its source line."""
    if language == "zh":
        return bool(re.search(r"\S\s*\n\s*（来源：[^\n]+）$", text))
    return bool(re.search(r"\S\s*\n\s*\(Source: [^\n]+\)$", text))


def handoff_records(stack: Stack, sender: str) -> list[dict[str, Any]]:
    """The handoff requests recorded for one conversation (the request stream in Redis)."""
    import json

    entries = redis_client(stack).xrange(f"{stack.settings.key_prefix}:handoff:requests")
    found = [json.loads(fields["record"]) for _, fields in entries]
    return [record for record in found if record["conversation_id"] == sender]


def is_handoff(text: str, language: str) -> bool:
    """The handoff announcement: the usual one, or the one for when no agent is online.

    Which one a test sees depends on whether an agent of another test is still online.
    """
    return text in (texts("utter_handoff")[language], texts("utter_handoff_no_agent")[language])


_agent_cookies: dict[str, dict[str, str]] = {}


def agent_cookies(stack: Stack) -> dict[str, str]:
    """A logged-in agent's session cookie (the knowledge search answers agents only, issue 23)."""
    if stack.settings.key_prefix not in _agent_cookies:
        import asyncio

        from handoff.auth import AgentDirectory, Role
        from handoff.queue import HandoffQueue

        async def add() -> None:
            queue = HandoffQueue.create(stack.settings.redis_url, stack.settings.key_prefix)
            await AgentDirectory(queue.client, stack.settings.key_prefix).add(
                "kbreader", "kb reader pw", Role.AGENT
            )
            await queue.close()

        asyncio.run(add())
        reply = httpx.post(
            f"http://127.0.0.1:{stack.settings.web_port}/api/agent/login",
            json={"name": "kbreader", "password": "kb reader pw"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        _agent_cookies[stack.settings.key_prefix] = dict(reply.cookies)
    return _agent_cookies[stack.settings.key_prefix]
