"""Fixtures for the self-service actions: a real seeded SQLite shop, a silent one, a sealer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from common.masking import CodeSealer
from shop.seed import seed
from shop.sql import SqlShopBackend


@pytest.fixture
async def shop(tmp_path: Path) -> Any:
    """The demo shop, freshly seeded in this test's own directory (no network)."""
    url = f"sqlite:///{tmp_path / 'shop.sqlite3'}"
    await asyncio.to_thread(seed, url)
    backend = SqlShopBackend(url)
    yield backend
    await backend.close()


class SilentShop(SqlShopBackend):
    """A shop that never answers: every call runs into the timeout."""

    def __init__(self) -> None:
        super().__init__("sqlite://", timeout=0.2)

    async def get_order(self, order_id: str) -> Any:
        return await self.call(asyncio.sleep(10))

    async def verify_owner(self, order_id: str, proof: str) -> bool:
        return bool(await self.call(asyncio.sleep(10)))

    async def find_card_code(self, code: str) -> Any:
        return await self.call(asyncio.sleep(10))

    async def request_refund(self, order_id: str, reason: str) -> Any:
        return await self.call(asyncio.sleep(10))


@pytest.fixture
def sealer() -> CodeSealer:
    return CodeSealer("unit-test-key")
