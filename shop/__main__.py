"""`python -m shop migrate | seed` against DATABASE_URL (default: SQLite under var/)."""

from __future__ import annotations

import argparse
import os
import sys

from shop.backend import default_database_url
from shop.database import migrate
from shop.seed import seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shop")
    parser.add_argument("command", choices=["migrate", "seed"])
    parser.add_argument(
        "--url", default=os.environ.get("DATABASE_URL") or default_database_url(dict(os.environ))
    )
    args = parser.parse_args(argv)
    if args.command == "migrate":
        migrate(args.url)
        print("shop schema is up to date")
        return 0
    added = seed(args.url)
    print("demo shop seeded: " + ", ".join(f"{v} {k} added" for k, v in added.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
