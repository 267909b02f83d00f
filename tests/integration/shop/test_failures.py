"""A backend that is down or slow: ShopUnavailable within the timeout, never a hang or a raw error."""

from __future__ import annotations

import socket
import time

import pytest

from shop.backend import ShopUnavailable, create
from shop.http import HttpShopBackend
from shop.sql import SqlShopBackend

pytestmark = pytest.mark.integration


async def test_database_down() -> None:
    from scripts.stack import free_port

    backend = SqlShopBackend(f"postgresql://postgres@127.0.0.1:{free_port()}/test", timeout=1)
    started = time.monotonic()
    with pytest.raises(ShopUnavailable):
        await backend.get_order("DG202611200001")
    assert time.monotonic() - started < 3
    await backend.close()


async def test_api_that_never_answers_times_out() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never replies
    try:
        backend = HttpShopBackend(f"http://127.0.0.1:{silent.getsockname()[1]}", "t", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(ShopUnavailable, match=r"0\.5 s"):
            await backend.resend_card_code("K7QM-2XPA-9FTR-4WZD")
        assert time.monotonic() - started < 2
        await backend.close()
    finally:
        silent.close()


async def test_api_with_a_wrong_token_is_unavailable_not_empty(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import secrets

    from shop.api import create_app
    from shop.seed import seed
    from tests.integration.shop.conftest import _Server

    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    await asyncio.to_thread(seed, url)
    with _Server(create_app(SqlShopBackend(url), secrets.token_hex(8))) as server:
        backend = HttpShopBackend(f"http://127.0.0.1:{server.port}", "wrong", timeout=2)
        with pytest.raises(ShopUnavailable, match="401"):
            await backend.get_order("DG202611200001")
        await backend.close()


def test_factory_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_API_URL", "http://shop.example/api")
    monkeypatch.setenv("SHOP_TIMEOUT", "1.5")
    backend = create()
    assert isinstance(backend, HttpShopBackend) and backend.timeout == 1.5
    monkeypatch.delenv("SHOP_API_URL")
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    sql = create()
    assert isinstance(sql, SqlShopBackend) and sql.url.startswith("postgresql://")
