"""`rasa` with bot.speedups installed: how scripts/stack.py starts the Rasa server.

.venv-rasa/bin/python -m bot.server run --model ... (any `rasa` arguments)
"""

from __future__ import annotations

from bot import speedups


def main() -> None:
    speedups.install()
    from rasa.__main__ import main as rasa_main

    rasa_main()


if __name__ == "__main__":
    main()
