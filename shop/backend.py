"""The ShopBackend interface, the records it returns, and the factory.

Records are dataclasses because they cross a process boundary (the HTTP
backend sends them as JSON). Every call is bounded by a timeout; a backend
that fails or is too slow raises ShopUnavailable, which the actions turn into
an apology and a handoff, never a stack trace.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Awaitable, TypeVar

from common.settings import PROJECT_ROOT, load_env_file

T = TypeVar("T")

DEFAULT_TIMEOUT = 2.0
RESEND_WINDOW_SECONDS = 600  # one resend per code per 10 minutes
RESENDS_PER_CUSTOMER_PER_HOUR = 5
REFUND_DAYS_UNREDEEMED = 7


class OrderStatus(str, Enum):
    PAID = "paid"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


class CodeStatus(str, Enum):
    PENDING = "pending"  # paid, not delivered yet (or delayed)
    DELIVERED = "delivered"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    FROZEN = "frozen"
    INVALID = "invalid"


class ResendOutcome(str, Enum):
    SENT = "sent"
    ALREADY_SENT = "already_sent"  # within the window: the earlier resend stands
    RATE_LIMITED = "rate_limited"
    NOT_RESENDABLE = "not_resendable"
    NOT_FOUND = "not_found"


class ShopUnavailable(RuntimeError):
    """The backend failed or did not answer in time."""


@dataclass(frozen=True)
class OrderItem:
    sku: str
    name: str
    kind: str  # card_code | topup | membership
    quantity: int
    unit_price: str  # decimal as text, never a float
    name_zh: str | None = None  # optional; without it Chinese customers see the English name

    def title(self, language: str) -> str:
        return self.name_zh if language == "zh" and self.name_zh else self.name


@dataclass(frozen=True)
class CardCode:
    code: str
    order_id: str
    product: str
    status: CodeStatus
    delivered_at: str | None = None
    redeemed_at: str | None = None
    expires_at: str | None = None
    product_zh: str | None = None

    def product_in(self, language: str) -> str:
        return self.product_zh if language == "zh" and self.product_zh else self.product

    @property
    def masked(self) -> str:
        return f"{self.code[:4]}-****-****-{self.code[-4:]}"


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str
    status: OrderStatus
    items: tuple[OrderItem, ...]
    total: str
    currency: str
    paid_at: str | None
    delivered_at: str | None = None
    codes: tuple[CardCode, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ResendResult:
    outcome: ResendOutcome
    reference: str | None = None
    sent_to: str | None = None  # masked contact


@dataclass(frozen=True)
class RefundDecision:
    accepted: bool
    reference: str | None
    # policy code: within_policy, undelivered, redeemed, topup_completed, too_late, already_refunded, ...
    reason: str


def to_json(record: Any) -> dict[str, Any]:
    data = asdict(record)
    for key, value in list(data.items()):
        if isinstance(value, Enum):
            data[key] = value.value
    return data


class ShopBackend(ABC):
    """Orders and card codes; what the self-service actions may do, nothing more."""

    timeout: float = DEFAULT_TIMEOUT

    async def call(self, awaitable: Awaitable[T]) -> T:
        """Bound a backend call by the timeout; every failure becomes ShopUnavailable."""
        try:
            return await asyncio.wait_for(awaitable, self.timeout)
        except ShopUnavailable:
            raise
        except (asyncio.TimeoutError, TimeoutError) as error:
            raise ShopUnavailable(f"shop backend did not answer within {self.timeout} s") from error
        except Exception as error:  # any backend error means "unavailable" to the caller
            raise ShopUnavailable(f"shop backend failed: {type(error).__name__}") from error

    @abstractmethod
    async def get_order(self, order_id: str) -> Order | None: ...

    @abstractmethod
    async def verify_owner(self, order_id: str, proof: str) -> bool:
        """True when proof is the last 4 digits of the order's phone or its e-mail (case-insensitive)."""

    @abstractmethod
    async def find_card_code(self, code: str) -> CardCode | None: ...

    @abstractmethod
    async def resend_card_code(self, code: str) -> ResendResult:
        """Send the full code again to the customer's registered contact (idempotent per 10 minutes)."""

    @abstractmethod
    async def request_refund(self, order_id: str, reason: str) -> RefundDecision: ...

    async def close(self) -> None:
        return None


def create(config: dict[str, str] | None = None) -> ShopBackend:
    """The backend the environment asks for: SHOP_API_URL -> HTTP, else SQL (DATABASE_URL or var/ SQLite)."""
    extra = load_env_file()
    env = {**extra, **os.environ, **(config or {})}
    timeout = float(env.get("SHOP_TIMEOUT") or DEFAULT_TIMEOUT)
    if env.get("SHOP_API_URL"):
        from shop.http import HttpShopBackend

        return HttpShopBackend(env["SHOP_API_URL"], env.get("SHOP_API_TOKEN", ""), timeout=timeout)
    from shop.sql import SqlShopBackend

    return SqlShopBackend(env.get("DATABASE_URL") or default_database_url(env), timeout=timeout)


def default_database_url(env: dict[str, str] | None = None) -> str:
    var_dir = Path((env or {}).get("CS_VAR_DIR") or PROJECT_ROOT / "var")
    return f"sqlite:///{var_dir / 'shop.sqlite3'}"
