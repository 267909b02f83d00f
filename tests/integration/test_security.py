"""Security points of issue 10 against the real stack (Redis, Rasa, action server, web service).

Rate limit per sender, browser origins (socket.io and CORS), security headers on
every page and response of the web service, and logs that are JSON lines with
the conversation id and no personal data.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import socketio

from scripts.stack import Stack
from tests.integration.helpers import redis_client, rest_headers, rest_url, say, texts

pytestmark = pytest.mark.integration

FOREIGN = "http://evil.example"


def web(stack: Stack, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{stack.settings.web_port}{path}", headers=headers, timeout=10)


def allowed_origin(stack: Stack) -> str:
    return stack.settings.allowed_origins[0]


# -- rate limit ---------------------------------------------------------------------------------


def test_a_sender_over_the_limit_gets_a_polite_429_and_others_go_on(stack: Stack) -> None:
    sender = "it-flood-" + uuid.uuid4().hex[:8]
    assert say(stack, sender, "你好")[0]["text"] == texts("utter_greet")["zh"]
    # fill this sender's burst window the way its earlier messages would have
    key = f"{stack.settings.key_prefix}:ratelimit:10:{sender}"
    redis_client(stack).set(key, stack.settings.rate_limit_burst, ex=10)
    refused = httpx.post(
        rest_url(stack), json={"sender": sender, "message": "你好"}, headers=rest_headers(stack), timeout=30
    )
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited" and "秒后" in refused.json()["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    other = "it-calm-" + uuid.uuid4().hex[:8]
    assert say(stack, other, "hello")[0]["text"] == texts("utter_greet")["en"]
    # the refused message never became a turn
    tracker = httpx.get(
        f"{stack.settings.rasa_url}/conversations/{sender}/tracker",
        params={"token": stack.settings.rasa_token},
        timeout=10,
    ).json()
    assert [e["text"] for e in tracker["events"] if e["event"] == "user"] == ["你好"]


# -- browser origins ----------------------------------------------------------------------------


async def _connect(stack: Stack, origin: str) -> bool:
    client = socketio.AsyncClient(reconnection=False)
    try:
        await client.connect(
            f"http://127.0.0.1:{stack.settings.rasa_port}",
            transports=["websocket"],
            headers={"Origin": origin},
            wait_timeout=10,
        )
    except socketio.exceptions.ConnectionError:
        return False
    await client.disconnect()
    return True


def test_socketio_accepts_the_allowed_origin_and_refuses_others(stack: Stack) -> None:
    assert asyncio.run(_connect(stack, allowed_origin(stack)))
    assert not asyncio.run(_connect(stack, FOREIGN))


def test_rasa_cors_names_only_allowed_origins(stack: Stack) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            rest_url(stack),
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            timeout=10,
        )

    assert preflight(allowed_origin(stack)).headers.get("access-control-allow-origin") == allowed_origin(
        stack
    )
    assert "access-control-allow-origin" not in preflight(FOREIGN).headers


def test_web_cors_names_only_allowed_origins(stack: Stack) -> None:
    path = "/api/history/it-cors-" + uuid.uuid4().hex[:8]
    good = web(stack, path, Origin=allowed_origin(stack))
    assert good.headers.get("access-control-allow-origin") == allowed_origin(stack)
    assert "access-control-allow-origin" not in web(stack, path, Origin=FOREIGN).headers


# -- security headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/console", "/widget.js", "/static/console.js", "/api/history/x1", "/healthz", "/nope"]
)
def test_every_response_carries_the_security_headers(stack: Stack, path: str) -> None:
    headers = web(stack, path).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert "camera=()" in headers["permissions-policy"]
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert "script-src 'self';" in csp or "default-src 'none'" in csp


def test_pages_have_a_strict_script_policy_and_the_widget_can_be_embedded(stack: Stack) -> None:
    demo = web(stack, "/").headers["content-security-policy"]
    rasa = f"http://127.0.0.1:{stack.settings.rasa_port}"
    assert "script-src 'self';" in demo and f"connect-src 'self' {rasa} ws://127.0.0.1:" in demo
    assert web(stack, "/widget.js").headers["cross-origin-resource-policy"] == "cross-origin"
    assert web(stack, "/console").headers["cross-origin-resource-policy"] == "same-origin"
    assert web(stack, "/api/history/x2").headers["cache-control"] == "no-store"


# -- logs ---------------------------------------------------------------------------------------


def test_logs_are_json_lines_with_the_conversation_id_and_no_personal_data(stack: Stack) -> None:
    sender = "it-logs-" + uuid.uuid4().hex[:8]
    phone, email = "13812345678", "wang.wu@example.com"
    say(stack, sender, f"我的手机 {phone}，邮箱 {email}")
    key = f"{stack.settings.key_prefix}:ratelimit:10:{sender}"
    redis_client(stack).set(key, stack.settings.rate_limit_burst, ex=10)
    httpx.post(
        rest_url(stack),
        json={"sender": sender, "message": f"call {phone}"},
        headers=rest_headers(stack),
        timeout=30,
    )
    # a login attempt with an address as the name: the web service logs the failure with the name
    httpx.post(
        f"http://127.0.0.1:{stack.settings.web_port}/api/agent/login",
        json={"name": email, "password": "wrong"},
        timeout=10,
    )

    def json_lines(name: str) -> list[dict[str, object]]:
        text = (stack.log_dir / f"{name}.log").read_text(errors="replace")
        return [json.loads(raw) for raw in text.splitlines() if raw.startswith("{")]

    rasa_lines, web_lines = json_lines("rasa"), json_lines("web")
    assert any(
        line.get("conversation_id") == sender and "rate limited" in str(line["message"])
        for line in rasa_lines
    ), "the rate-limit line names its conversation"
    assert any("failed console login for 'w***@example.com'" in str(line["message"]) for line in web_lines)
    assert json_lines("actions"), "the action server writes JSON lines too"
    everything = "\n".join(path.read_text(errors="replace") for path in stack.log_dir.glob("*.log"))
    assert phone not in everything and email not in everything
