"""`rasa` with bot.speedups, .observability and .action_fallback installed: how scripts/stack.py starts Rasa.

.venv-rasa/bin/python -m bot.server run --model ... (any `rasa` arguments)

Rasa's coloured text logging is replaced by common.logs (JSON lines, personal
data redacted when a record is made, so Rasa's own lines are covered too).
"""

from __future__ import annotations

import os
from typing import Any

from bot import action_fallback, observability, speedups


def main() -> None:
    speedups.install()
    observability.install()
    action_fallback.install()
    import rasa.utils.io
    from rasa.__main__ import main as rasa_main

    from common.logs import configure, install_redaction

    install_redaction()

    def project_logging(loglevel: Any) -> None:
        configure("rasa", loglevel or os.environ.get("LOG_LEVEL", "INFO"))

    rasa.utils.io.configure_colored_logging = project_logging

    rasa_main()


if __name__ == "__main__":
    main()
