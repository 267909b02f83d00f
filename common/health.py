"""/metrics, /healthz and /readyz on a Sanic app: the Rasa server's and the action server's.

Both run Sanic (Rasa and rasa-sdk), in different environments; this module is
the one place the three routes are written. ``readiness`` returns named checks
(``{"redis": True, "model": False}``); any False makes /readyz answer 503, which
is what a load balancer or an orchestrator routes on.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

Readiness = Callable[[Any], Awaitable[dict[str, bool]]]


def add_health_routes(app: Any, readiness: Readiness) -> None:
    """``readiness(request)`` decides /readyz; /metrics is prometheus_client's default registry."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from sanic import response

    @app.get("/metrics")
    async def metrics(_: Any) -> Any:
        return response.raw(generate_latest(), content_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz(_: Any) -> Any:
        return response.json({"status": "ok"})

    @app.get("/readyz")
    async def readyz(request: Any) -> Any:
        checks = await readiness(request)
        ready = all(checks.values())
        return response.json(
            {"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503
        )
