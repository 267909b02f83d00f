"""The web service on its own port (demo page, widget, history, metrics)."""

from __future__ import annotations

import httpx
import pytest

from common.secrets import conversation_secret
from scripts.stack import Stack

pytestmark = pytest.mark.integration


def web(stack: Stack, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{stack.settings.web_port}{path}", headers=headers, timeout=10)


def test_demo_page_embeds_the_widget_with_one_tag(stack: Stack) -> None:
    page = web(stack, "/")
    assert page.status_code == 200
    assert f'<script src="/widget.js" data-server="http://127.0.0.1:{stack.settings.rasa_port}"' in page.text


def test_widget_script_and_socketio_client_are_served_locally(stack: Stack) -> None:
    assert "attachShadow" in web(stack, "/widget.js").text
    assert web(stack, "/static/vendor/socket.io.min.js").status_code == 200


def test_history_of_an_unknown_conversation_is_empty(stack: Stack) -> None:
    secret = conversation_secret(stack.settings.conversation_key, "never-seen-before")
    reply = web(stack, "/api/history/never-seen-before", **{"X-Conversation-Secret": secret})
    assert reply.status_code == 200 and reply.json()["messages"] == []


def test_history_rejects_bad_ids(stack: Stack) -> None:
    assert web(stack, "/api/history/bad%20id").status_code == 400


def test_health_and_metrics(stack: Stack) -> None:
    assert web(stack, "/healthz").json() == {"status": "ok"}
    web(stack, "/")
    assert (
        "web_http_requests_total"
        in web(stack, "/metrics", Authorization=f"Bearer {stack.settings.metrics_token}").text
    )
