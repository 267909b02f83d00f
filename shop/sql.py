"""ShopBackend over SQLAlchemy 2: SQLite by default, PostgreSQL through DATABASE_URL.

SQLAlchemy's sessions are synchronous; each call runs in a worker thread so the
action server's event loop never blocks, bounded by ShopBackend.call's timeout.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta, timezone
from typing import Callable, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from shop.backend import (
    REFUND_DAYS_UNREDEEMED,
    RESEND_WINDOW_SECONDS,
    RESENDS_PER_CUSTOMER_PER_HOUR,
    CardCode,
    CodeStatus,
    Order,
    OrderItem,
    OrderStatus,
    RefundDecision,
    ResendOutcome,
    ResendResult,
    ShopBackend,
)
from shop.database import make_engine
from shop.schema import CardCodeRow, CustomerRow, OrderRow, OutboxRow, RefundTicketRow, ResendRow

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    # SQLite hands back naive datetimes; everything we store is UTC
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    value = _utc(moment)
    return value.isoformat() if value else None


def mask_contact(contact: str) -> str:
    if "@" in contact:
        name, _, domain = contact.partition("@")
        return f"{name[:1]}***@{domain}"
    return f"{contact[:3]}****{contact[-4:]}" if len(contact) >= 7 else "****"


def _code(row: CardCodeRow) -> CardCode:
    return CardCode(
        code=row.code,
        order_id=row.order_id,
        product=row.product,
        status=CodeStatus(row.status),
        delivered_at=_iso(row.delivered_at),
        redeemed_at=_iso(row.redeemed_at),
        expires_at=_iso(row.expires_at),
        product_zh=row.product_zh,
    )


def _order(row: OrderRow) -> Order:
    return Order(
        order_id=row.id,
        customer_id=row.customer_id,
        status=OrderStatus(row.status),
        items=tuple(
            OrderItem(
                sku=i.sku,
                name=i.name,
                kind=i.kind,
                quantity=i.quantity,
                unit_price=f"{i.unit_price:.2f}",
                name_zh=i.name_zh,
            )
            for i in row.items
        ),
        total=f"{row.total:.2f}",
        currency=row.currency,
        paid_at=_iso(row.paid_at),
        delivered_at=_iso(row.delivered_at),
        codes=tuple(_code(c) for c in row.codes),
    )


def _reference(prefix: str) -> str:
    return prefix + secrets.token_hex(4).upper()


def _load_order(session: Session, order_id: str) -> OrderRow | None:
    return session.scalar(
        select(OrderRow)
        .where(OrderRow.id == order_id.upper())
        .options(selectinload(OrderRow.items), selectinload(OrderRow.codes), selectinload(OrderRow.customer))
    )


class SqlShopBackend(ShopBackend):
    def __init__(self, url: str, timeout: float = 2.0, clock: Callable[[], datetime] = utcnow) -> None:
        self.url = url
        self.timeout = timeout
        self.clock = clock
        self._engine = None

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        if self._engine is None:  # created on first use: no connections at import time
            self._engine = make_engine(self.url, self.timeout)
        return self._engine

    async def _run(self, work: Callable[[Session], T]) -> T:
        def in_thread() -> T:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                return work(session)

        return await self.call(asyncio.to_thread(in_thread))

    async def get_order(self, order_id: str) -> Order | None:
        def work(session: Session) -> Order | None:
            row = _load_order(session, order_id)
            return _order(row) if row else None

        return await self._run(work)

    async def verify_owner(self, order_id: str, proof: str) -> bool:
        proof = proof.strip()

        def work(session: Session) -> bool:
            row = _load_order(session, order_id)
            if row is None or not proof:
                return False
            customer = row.customer
            if "@" in proof:
                return secrets.compare_digest(proof.lower(), customer.email.lower())
            digits = "".join(ch for ch in customer.phone if ch.isdigit())
            return len(proof) == 4 and proof.isdigit() and secrets.compare_digest(proof, digits[-4:])

        return await self._run(work)

    async def find_card_code(self, code: str) -> CardCode | None:
        def work(session: Session) -> CardCode | None:
            row = session.get(CardCodeRow, code.upper())
            return _code(row) if row else None

        return await self._run(work)

    async def resend_card_code(self, code: str) -> ResendResult:
        now = self.clock()
        code = code.upper()

        def work(session: Session) -> ResendResult:
            row = session.get(CardCodeRow, code)
            if row is None:
                return ResendResult(ResendOutcome.NOT_FOUND)
            if row.status not in (CodeStatus.PENDING.value, CodeStatus.DELIVERED.value):
                return ResendResult(ResendOutcome.NOT_RESENDABLE)
            order = session.get(OrderRow, row.order_id)
            assert order is not None
            customer = session.get(CustomerRow, order.customer_id)
            assert customer is not None
            recent = session.scalar(
                select(func.count())
                .select_from(ResendRow)
                .where(ResendRow.customer_id == customer.id, ResendRow.created_at >= now - timedelta(hours=1))
            )
            if (recent or 0) >= RESENDS_PER_CUSTOMER_PER_HOUR:
                return ResendResult(ResendOutcome.RATE_LIMITED)
            window_start = now - timedelta(seconds=RESEND_WINDOW_SECONDS)
            # claim the window atomically: of two concurrent resends, one updates the row
            claimed: int = session.execute(  # type: ignore[attr-defined]
                update(CardCodeRow)
                .where(CardCodeRow.code == code)
                .where((CardCodeRow.last_resend_at.is_(None)) | (CardCodeRow.last_resend_at < window_start))
                .values(last_resend_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if not claimed:
                earlier = session.scalar(
                    select(ResendRow)
                    .where(ResendRow.code == code)
                    .order_by(ResendRow.created_at.desc())
                    .limit(1)
                )
                return ResendResult(
                    ResendOutcome.ALREADY_SENT,
                    reference=earlier.reference if earlier else None,
                    sent_to=mask_contact(earlier.sent_to) if earlier else None,
                )
            reference = _reference("RS")
            session.add(
                ResendRow(
                    reference=reference,
                    code=code,
                    customer_id=customer.id,
                    sent_to=customer.email,
                    created_at=now,
                )
            )
            session.add(
                OutboxRow(
                    channel="email",
                    recipient=customer.email,
                    body=f"Your {row.product} code: {row.code} (order {row.order_id}, reference {reference})",
                    reference=reference,
                    created_at=now,
                )
            )
            return ResendResult(ResendOutcome.SENT, reference=reference, sent_to=mask_contact(customer.email))

        return await self._run(work)

    async def request_refund(self, order_id: str, reason: str) -> RefundDecision:
        now = self.clock()

        def work(session: Session) -> RefundDecision:
            order = _load_order(session, order_id)
            if order is None:
                return RefundDecision(False, None, "not_found")
            existing = session.scalar(select(RefundTicketRow).where(RefundTicketRow.order_id == order.id))
            if existing is not None:
                return RefundDecision(True, existing.reference, "already_requested")
            decision = refund_policy(_order(order), now)
            if not decision.accepted:
                return decision
            reference = _reference("RF")
            session.add(
                RefundTicketRow(reference=reference, order_id=order.id, reason=reason[:500], created_at=now)
            )
            return RefundDecision(True, reference, decision.reason)

        return await self._run(work)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def refund_policy(order: Order, now: datetime) -> RefundDecision:
    """The shop's refund rules (the refund-policy article says the same)."""
    if order.status is OrderStatus.REFUNDED:
        return RefundDecision(False, None, "already_refunded")
    if order.status is OrderStatus.CANCELLED:
        return RefundDecision(False, None, "cancelled")
    if order.status in (OrderStatus.PAID, OrderStatus.DELIVERING):
        return RefundDecision(True, None, "undelivered")
    if any(item.kind == "topup" for item in order.items):
        return RefundDecision(False, None, "topup_completed")
    if any(code.status is CodeStatus.REDEEMED for code in order.codes):
        return RefundDecision(False, None, "redeemed")
    paid = datetime.fromisoformat(order.paid_at) if order.paid_at else now
    if now - paid > timedelta(days=REFUND_DAYS_UNREDEEMED):
        return RefundDecision(False, None, "too_late")
    return RefundDecision(True, None, "within_policy")
