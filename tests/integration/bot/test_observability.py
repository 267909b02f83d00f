"""bot.observability on a local Sanic app (Redis real; no Rasa model, so /readyz says not ready)."""

from __future__ import annotations

import asyncio
import secrets
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from rasa.core.channels.channel import UserMessage
from sanic import Sanic, response

from bot.observability import TURN_FAILURES, TURNS, add_routes, timed
from tests.integration.bot.local_sanic import running


async def _serve_and_get(
    app: Sanic, paths: list[str], headers: dict[str, str] | None = None
) -> list[tuple[int, dict[str, str], str]]:
    results = []
    async with running(app) as port, aiohttp.ClientSession() as http:
        for path in paths:
            async with http.get(f"http://127.0.0.1:{port}{path}", headers=headers or {}) as reply:
                results.append((reply.status, dict(reply.headers), await reply.text()))
    return results


def test_timed_counts_turns_and_failures() -> None:
    channel = "test-" + secrets.token_hex(3)

    async def ok(_: UserMessage) -> None:
        return None

    async def broken(_: UserMessage) -> None:
        raise RuntimeError("Rasa fell over")

    async def scenario() -> None:
        await timed(channel, ok)(UserMessage("hi", sender_id="u1"))
        with pytest.raises(RuntimeError):
            await timed(channel, broken)(UserMessage("hi", sender_id="u1"))

    asyncio.run(scenario())
    assert TURNS.labels(channel)._value.get() == 2
    assert TURN_FAILURES.labels(channel)._value.get() == 1


def test_routes_and_headers_on_a_rasa_like_app(redis_prefix: str) -> None:
    app = Sanic("obs" + secrets.token_hex(4))
    app.ctx.agent = SimpleNamespace(is_ready=lambda: False)  # Rasa before a model is loaded

    @app.get("/")
    async def hello(_: Any) -> Any:
        return response.text("Hello from Rasa")

    token = secrets.token_urlsafe(24)
    add_routes(app, metrics_token=token)
    TURNS.labels("rest").inc(0)  # the family appears once any channel has counted
    (metrics, healthz, readyz, hello_reply, anonymous) = asyncio.run(
        _serve_and_get(app, ["/metrics", "/healthz", "/readyz", "/"], {"Authorization": f"Bearer {token}"})
    ) + asyncio.run(_serve_and_get(app, ["/metrics"]))
    # issue 23: the metrics say how busy the shop is; a scraper without the token gets nothing
    assert anonymous[0] == 401 and "cs_turns_total" not in anonymous[2]
    assert metrics[0] == 200 and "cs_turns_total" in metrics[2] and "cs_turn_seconds_bucket" in metrics[2]
    assert healthz[0] == 200
    assert readyz[0] == 503 and '"model":false' in readyz[2] and '"redis":true' in readyz[2]
    for _, headers, _ in (metrics, healthz, readyz, hello_reply):
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
