"""One seeded shop per test, on SQLite, on PostgreSQL and behind the HTTP API.

PostgreSQL: the machine's server (127.0.0.1:5432, database `test`, trust auth,
TEST_DATABASE_URL to change it); each test gets its own schema and drops only
that schema. HTTP: shop/api.py served by uvicorn on a free port in a thread,
over a seeded SQLite shop, with a random token.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from shop.backend import ShopBackend
from shop.http import HttpShopBackend
from shop.seed import seed
from shop.sql import SqlShopBackend

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
START = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


class Clock:
    """The shop's idea of now; tests move it forward instead of sleeping."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shop.sqlite3'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = "shop_test_" + secrets.token_hex(4)
    try:
        with _pg_admin() as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
    except Exception as error:
        pytest.fail(f"PostgreSQL at {PG_URL} is needed for the backend tests: {error}")
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with _pg_admin() as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


class _Server:
    def __init__(self, app: Any) -> None:
        import uvicorn

        from scripts.stack import free_port

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the shop API test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(params=["sqlite", "postgres", "http"])
async def backend(request: pytest.FixtureRequest, clock: Clock, tmp_path: Path) -> AsyncIterator[ShopBackend]:
    kind = request.param
    if kind == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'shop.sqlite3'}"
    await asyncio.to_thread(seed, url, START)
    sql = SqlShopBackend(url, timeout=5, clock=clock)
    if kind != "http":
        yield sql
        await sql.close()
        return
    from shop.api import create_app

    token = secrets.token_hex(8)
    with _Server(create_app(sql, token)) as server:
        remote = HttpShopBackend(f"http://127.0.0.1:{server.port}", token, timeout=5)
        yield remote
        await remote.close()
    await sql.close()
