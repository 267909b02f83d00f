"""Engines and migrations for the SQL shop (SQLite file or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """postgresql:// URLs use psycopg 3 (the driver we ship)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, timeout: float = 2.0) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": timeout, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record):  # type: ignore[no-untyped-def]
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    # a slow query must not outlive the caller's timeout; keep any options the URL brings (search_path, ...)
    parsed = make_url(url)
    options = " ".join(
        filter(None, [str(parsed.query.get("options", "")), f"-c statement_timeout={int(timeout * 1000)}"])
    )
    return create_engine(
        parsed.difference_update_query(["options"]),
        pool_pre_ping=True,
        connect_args={"connect_timeout": max(1, int(timeout)), "options": options},
    )


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``, the newest by default (creates it from empty)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    engine = make_engine(url, timeout=30)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()
