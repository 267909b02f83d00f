"""`python -m rasa_sdk` with the project's logging: how scripts/stack.py starts the action server.

    .venv/bin/python -m actions --actions actions --port 5055

rasa-sdk installs coloured text logging; this replaces that one step with
common.logs (JSON lines, personal data redacted), adds /metrics, /healthz and
/readyz to its app (actions/metrics.py), answers only requests that carry the
secret Rasa sends (``Authorization: Bearer $ACTION_SERVER_TOKEN``, endpoints.yml;
rasa-sdk has no authentication of its own) and otherwise runs rasa-sdk unchanged.
It listens on ACTION_HOST (127.0.0.1), which scripts/stack.py hands to rasa-sdk as SANIC_HOST.
"""

from __future__ import annotations

from typing import Any

# what a probe or a scraper calls without the action server's secret (/metrics checks its own)
OPEN_PATHS = frozenset({"/health", "/healthz", "/readyz", "/metrics"})


def require_secret(app: Any, token: str) -> None:
    """Refuse every request but the probes without ``Authorization: Bearer <token>`` (401)."""
    from sanic import response

    from common.secrets import bearer_matches

    @app.on_request
    async def check(request: Any) -> Any:
        if request.path in OPEN_PATHS or bearer_matches(request.headers.get("authorization"), token):
            return None
        return response.json({"error": "unauthorized"}, status=401)


def main() -> None:
    import rasa_sdk.endpoint
    import rasa_sdk.utils
    from rasa_sdk.__main__ import main as sdk_main

    from actions.metrics import add_routes, time_actions
    from common.logs import configure
    from common.settings import Settings

    action_token = Settings.from_env().action_token

    def project_logging(loglevel: Any) -> None:
        configure("actions", loglevel or "INFO")

    original_create_app = rasa_sdk.endpoint.create_app

    def create_app(action_executor: Any, *args: Any, **kwargs: Any) -> Any:
        time_actions(action_executor)
        app = original_create_app(action_executor, *args, **kwargs)
        require_secret(app, action_token)
        add_routes(app)
        return app

    rasa_sdk.utils.configure_colored_logging = project_logging
    rasa_sdk.endpoint.create_app = create_app
    sdk_main()


if __name__ == "__main__":
    main()
