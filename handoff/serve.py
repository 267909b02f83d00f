"""Start the handoff service under uvicorn with the project's logging (JSON lines, redacted).

python -m handoff.serve --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import argparse
import os

from common.logs import dict_config, install_redaction


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m handoff.serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    install_redaction()
    uvicorn.run(
        "handoff.web:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_config=dict_config("web", level),
        log_level=level.lower(),
    )


if __name__ == "__main__":
    main()
