"""Metrics, health and response headers of the Rasa server (installed by ``bot.server``).

Rasa 3.6 has no Prometheus endpoint. ``install`` wraps ``rasa.server.create_app``
so the app Rasa builds also serves:

- ``GET /metrics``: turns, turn latency and failed turns per channel, and the
  messages the channels answered themselves (rate limit, empty, too long);
- ``GET /healthz``: the process answers; ``GET /readyz``: a model is loaded and
  Redis (trackers, locks, outbox) answers - what a load balancer should route on;
- the same security headers as the web service on every response (it serves
  JSON and socket.io, no pages: no framing, no sniffing, no referrer).

The channels count their turns through ``timed``; nothing here blocks the loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable

from prometheus_client import Counter, Histogram
from rasa.core.channels.channel import UserMessage
from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse

from common.health import add_health_routes

logger = logging.getLogger(__name__)

TURNS = Counter("cs_turns_total", "Customer messages Rasa processed", ["channel"])
TURN_FAILURES = Counter("cs_turn_failures_total", "Customer messages whose turn raised", ["channel"])
TURN_SECONDS = Histogram(
    "cs_turn_seconds",
    "Time from a customer message reaching Rasa to its turn finishing",
    ["channel"],
    buckets=(0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0),
)
REFUSED = Counter(
    "cs_messages_refused_total", "Messages a channel answered without Rasa", ["channel", "reason"]
)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


def timed(channel: str, on_new_message: OnNewMessage) -> OnNewMessage:
    """``on_new_message`` counted and timed under ``channel``."""

    async def handle(message: UserMessage) -> Any:
        started = time.perf_counter()
        try:
            return await on_new_message(message)
        except BaseException:
            TURN_FAILURES.labels(channel).inc()
            raise
        finally:
            TURNS.labels(channel).inc()
            TURN_SECONDS.labels(channel).observe(time.perf_counter() - started)

    return handle


def refused(channel: str, reason: str) -> None:
    REFUSED.labels(channel, reason).inc()


async def _redis_ok() -> bool:
    from bot.channels.outbox import redis_client

    try:
        return bool(await redis_client().ping())
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"
        logger.warning("readiness: Redis does not answer: %s", error)
        return False


async def _readiness(request: Request) -> dict[str, bool]:
    agent = getattr(request.app.ctx, "agent", None)
    return {"model": bool(agent is not None and agent.is_ready()), "redis": await _redis_ok()}


def add_routes(app: Sanic, metrics_token: str | None = None) -> None:
    """/metrics (behind METRICS_TOKEN), /healthz, /readyz and the response headers, on an app Rasa created."""
    add_health_routes(app, _readiness, metrics_token)

    @app.on_response
    async def security_headers(_: Request, reply: HTTPResponse) -> None:
        if reply is None:  # a websocket upgrade has no response object
            return
        for name, value in HEADERS.items():
            reply.headers.setdefault(name, value)


def install() -> None:
    """Make every app ``rasa.server.create_app`` builds carry the routes above."""
    import rasa.server

    original = rasa.server.create_app
    if getattr(original, "_cs_observability", False):
        return

    def create_app(*args: Any, **kwargs: Any) -> Sanic:
        app = original(*args, **kwargs)
        add_routes(app)
        return app

    create_app._cs_observability = True  # type: ignore[attr-defined]
    rasa.server.create_app = create_app
