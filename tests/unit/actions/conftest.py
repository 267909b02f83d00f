"""Fixtures for the actions: a real seeded SQLite shop, a silent one, a sealer, a small knowledge base.

The forms ask the knowledge base about a question typed where they wanted an order id or a proof
(actions.knowledge.answer_aside); in these tests that knowledge base is the small test corpus and
is never sure, unless a test hands a form one that is.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actions.knowledge import ActionAnswerFromKnowledge
from actions.orders import OwnedOrderForm
from common.masking import CodeSealer
from knowledge.config import KnowledgeConfig
from knowledge.index import build
from knowledge.retriever import ReloadingRetriever
from shop.seed import seed
from shop.sql import SqlShopBackend
from tests.unit.knowledge.conftest import write_corpus


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


class FakeQueue:
    """The few queue calls the handoff actions make, in memory."""

    def __init__(self, online: list[str] | None = None, state: Any = None) -> None:
        self.online = online or []
        self.state = state
        self.ended: list[Any] = []
        self.ratings: list[int] = []

    async def online_agents(self) -> list[str]:
        return self.online

    async def get(self, conversation_id: str) -> Any:
        if self.state is None:
            return None
        return type("C", (), {"state": self.state})()

    async def end(self, conversation_id: str, state: Any, *args: Any, **kwargs: Any) -> bool:
        self.ended.append(state)
        return True

    async def rate(self, conversation_id: str, rating: int) -> bool:
        if not 1 <= rating <= 5:
            raise ValueError(rating)
        self.ratings.append(rating)
        return True


@pytest.fixture(autouse=True)
def no_network_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Actions that ask who is on duty get an in-memory queue with one agent online (no Redis)."""
    monkeypatch.setattr("actions.handoff.default_queue", lambda: FakeQueue(["agent-on-duty"]))


@pytest.fixture
def sealer() -> CodeSealer:
    return CodeSealer("unit-test-key")


class MemoryProofLimiter:
    """actions.proofs.ProofLimiter in memory (the Redis one is tested against the real stack)."""

    def __init__(self) -> None:
        from collections import Counter

        self.orders: Counter[str] = Counter()
        self.addresses: Counter[str] = Counter()
        self.conversations: dict[str, set[str]] = {}

    async def status(self, order_id: str, address: str) -> Any:
        from actions.proofs import ProofStatus

        seen = len(self.conversations.get(order_id, set()))
        return ProofStatus(self.orders[order_id], self.addresses[address], seen)

    async def failed(self, order_id: str, address: str, conversation_id: str) -> Any:
        self.orders[order_id] += 1
        self.addresses[address] += 1
        self.conversations.setdefault(order_id, set()).add(conversation_id)
        return await self.status(order_id, address)


@pytest.fixture(autouse=True)
def proof_limiter(monkeypatch: pytest.MonkeyPatch) -> MemoryProofLimiter:
    limiter = MemoryProofLimiter()
    monkeypatch.setattr("actions.orders.default_limiter", lambda: limiter)
    return limiter


@pytest.fixture(scope="session")
def kb_config(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeConfig:
    """An index of the small test corpus (real encoder, no network), built once."""
    root = tmp_path_factory.mktemp("kb")
    config = replace(
        KnowledgeConfig(),
        articles_dir=write_corpus(root / "articles"),
        eval_dir=root / "no-eval",
        index_root=root / "index",
    )
    build(config, show_progress=False)
    return config


def knowledge_action(config: KnowledgeConfig, answer_at: float) -> ActionAnswerFromKnowledge:
    action = ActionAnswerFromKnowledge()
    action.retriever = ReloadingRetriever(
        replace(config, answer_threshold=answer_at, suggest_threshold=answer_at)
    )
    return action


@pytest.fixture(autouse=True)
def forms_are_never_sure(kb_config: KnowledgeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OwnedOrderForm, "kb", knowledge_action(kb_config, 1.01))
