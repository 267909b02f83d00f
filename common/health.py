"""/metrics, /healthz and /readyz on a Sanic app: the Rasa server's and the action server's.

Both run Sanic (Rasa and rasa-sdk), in different environments; this module is
the one place the three routes are written. ``readiness`` returns named checks
(``{"redis": True, "model": False}``); any False makes /readyz answer 503, which
is what a load balancer or an orchestrator routes on. /metrics answers only a
scraper with ``Authorization: Bearer $METRICS_TOKEN`` (401 otherwise).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

Readiness = Callable[[Any], Awaitable[dict[str, bool]]]


def add_health_routes(app: Any, readiness: Readiness, metrics_token: str | None = None) -> None:
    """``readiness(request)`` decides /readyz; /metrics is prometheus_client's default registry.

    ``metrics_token`` defaults to the settings' METRICS_TOKEN.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from sanic import response

    from common.secrets import bearer_matches

    if metrics_token is None:
        from common.settings import Settings

        metrics_token = Settings.from_env().metrics_token

    @app.get("/metrics")
    async def metrics(request: Any) -> Any:
        # turn counts and queue figures say how busy the shop is: scrapers only
        if not bearer_matches(request.headers.get("authorization"), metrics_token):
            return response.json({"error": "unauthorized"}, status=401)
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
