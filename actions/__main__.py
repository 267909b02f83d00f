"""`python -m rasa_sdk` with the project's logging: how scripts/stack.py starts the action server.

    .venv/bin/python -m actions --actions actions --port 5055

rasa-sdk installs coloured text logging; this replaces that one step with
common.logs (JSON lines, personal data redacted), adds /metrics, /healthz and
/readyz to its app (actions/metrics.py) and otherwise runs rasa-sdk unchanged.
"""

from __future__ import annotations

from typing import Any


def main() -> None:
    import rasa_sdk.endpoint
    import rasa_sdk.utils
    from rasa_sdk.__main__ import main as sdk_main

    from actions.metrics import add_routes, time_actions
    from common.logs import configure

    def project_logging(loglevel: Any) -> None:
        configure("actions", loglevel or "INFO")

    original_create_app = rasa_sdk.endpoint.create_app

    def create_app(action_executor: Any, *args: Any, **kwargs: Any) -> Any:
        time_actions(action_executor)
        app = original_create_app(action_executor, *args, **kwargs)
        add_routes(app)
        return app

    rasa_sdk.utils.configure_colored_logging = project_logging
    rasa_sdk.endpoint.create_app = create_app
    sdk_main()


if __name__ == "__main__":
    main()
