"""The same behaviour from every ShopBackend: SQLite, PostgreSQL and the HTTP API in front of them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from shop.backend import CodeStatus, OrderStatus, ResendOutcome, ShopBackend
from tests.integration.shop.conftest import Clock

pytestmark = pytest.mark.integration

DELIVERED = "DG202611200001"  # C1001, Steam CNY 100, code delivered, paid 1 day ago
REDEEMED = "DG202611200002"
DELIVERING = "DG202611210003"  # C1002, code pending
TOPUP_PAID = "DG202611220004"
EXPIRED = "DG202610010005"  # paid 50 days ago
TOPUP_DONE = "DG202611230010"
REFUNDED = "DG202611190008"
CANCELLED = "DG202611190009"
PENDING_CODE = "P4XJ-7NWE-3GHU-6CZA"
DELIVERED_CODE = "K7QM-2XPA-9FTR-4WZD"
REDEEMED_CODE = "H3LN-8VQC-5RTY-2KMB"


async def test_orders(backend: ShopBackend) -> None:
    order = await backend.get_order(DELIVERED)
    assert order is not None and order.status is OrderStatus.DELIVERED
    assert order.customer_id == "C1001" and order.total == "100.00" and order.currency == "CNY"
    assert [i.name for i in order.items] == ["Steam Wallet Card CNY 100"]
    assert [i.title("zh") for i in order.items] == ["Steam 钱包充值卡 100 元"]
    assert order.codes[0].product_in("zh") == "Steam 钱包充值卡 100 元"
    assert order.codes[0].product_in("en") == "Steam Wallet Card CNY 100"
    assert [(c.masked, c.status) for c in order.codes] == [("K7QM-****-****-4WZD", CodeStatus.DELIVERED)]
    assert order.paid_at and order.delivered_at
    assert (await backend.get_order(DELIVERED.lower())) == order
    assert await backend.get_order("DG000000000000") is None
    statuses = {(await backend.get_order(o)).status for o in (DELIVERING, TOPUP_PAID, REFUNDED, CANCELLED)}  # type: ignore[union-attr]
    assert statuses == {OrderStatus.DELIVERING, OrderStatus.PAID, OrderStatus.REFUNDED, OrderStatus.CANCELLED}


async def test_ownership(backend: ShopBackend) -> None:
    assert await backend.verify_owner(DELIVERED, "8000")  # +86 138 0013 8000
    assert await backend.verify_owner(DELIVERED, "LiWei@Example.com")
    for wrong in ("0000", "800", "80000", "", "emma.clarke@example.com", "8000 "):
        assert await backend.verify_owner(DELIVERED, wrong) is (wrong == "8000 ")
    assert not await backend.verify_owner("DG000000000000", "8000")


async def test_card_codes_in_every_state(backend: ShopBackend) -> None:
    found = {
        code: (await backend.find_card_code(code)).status  # type: ignore[union-attr]
        for code in (
            PENDING_CODE,
            DELIVERED_CODE,
            REDEEMED_CODE,
            "X9TB-4MRV-8QPL-3DEF",
            "N2WS-6KJH-7YUP-5RTG",
            "G8CV-3BNM-4LKJ-9HQW",
        )
    }
    assert set(found.values()) == set(CodeStatus)
    redeemed = await backend.find_card_code(REDEEMED_CODE.lower())
    assert redeemed is not None and redeemed.redeemed_at
    assert await backend.find_card_code("ABCD-EFGH-JKLM-NPQR") is None


async def test_resend_is_idempotent_for_ten_minutes(backend: ShopBackend, clock: Clock) -> None:
    first = await backend.resend_card_code(PENDING_CODE)
    assert first.outcome is ResendOutcome.SENT and first.reference and first.reference.startswith("RS")
    assert first.sent_to == "e***@example.com"
    again = await backend.resend_card_code(PENDING_CODE)
    assert again.outcome is ResendOutcome.ALREADY_SENT and again.reference == first.reference
    clock.now += timedelta(minutes=9, seconds=59)
    assert (await backend.resend_card_code(PENDING_CODE)).outcome is ResendOutcome.ALREADY_SENT
    clock.now += timedelta(seconds=2)
    later = await backend.resend_card_code(PENDING_CODE)
    assert later.outcome is ResendOutcome.SENT and later.reference != first.reference


async def test_concurrent_resends_send_once(backend: ShopBackend) -> None:
    results = await asyncio.gather(*(backend.resend_card_code(DELIVERED_CODE) for _ in range(6)))
    outcomes = sorted(r.outcome.value for r in results)
    assert outcomes.count("sent") == 1 and outcomes.count("already_sent") == 5


async def test_resend_rules(backend: ShopBackend, clock: Clock) -> None:
    assert (await backend.resend_card_code(REDEEMED_CODE)).outcome is ResendOutcome.NOT_RESENDABLE
    assert (await backend.resend_card_code("X9TB-4MRV-8QPL-3DEF")).outcome is ResendOutcome.NOT_RESENDABLE
    assert (await backend.resend_card_code("ABCD-EFGH-JKLM-NPQR")).outcome is ResendOutcome.NOT_FOUND
    # per customer: five resends an hour, then a pause
    outcomes = []
    for _ in range(6):
        outcomes.append((await backend.resend_card_code(DELIVERED_CODE)).outcome)
        clock.now += timedelta(minutes=10, seconds=1)
    assert outcomes[:5] == [ResendOutcome.SENT] * 5 and outcomes[5] is ResendOutcome.RATE_LIMITED


@pytest.mark.parametrize(
    ("order_id", "accepted", "reason"),
    [
        (DELIVERED, True, "within_policy"),
        (DELIVERING, True, "undelivered"),
        (TOPUP_PAID, True, "undelivered"),
        (REDEEMED, False, "redeemed"),
        (TOPUP_DONE, False, "topup_completed"),
        (EXPIRED, False, "too_late"),
        (REFUNDED, False, "already_refunded"),
        (CANCELLED, False, "cancelled"),
        ("DG000000000000", False, "not_found"),
    ],
)
async def test_refund_policy(backend: ShopBackend, order_id: str, accepted: bool, reason: str) -> None:
    decision = await backend.request_refund(order_id, "changed my mind")
    assert (decision.accepted, decision.reason) == (accepted, reason)
    assert (decision.reference or "").startswith("RF") is accepted
    if accepted:
        again = await backend.request_refund(order_id, "again")
        assert (
            again.accepted and again.reference == decision.reference and again.reason == "already_requested"
        )
