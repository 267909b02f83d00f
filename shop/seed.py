"""Demo data: customers, orders in every state and card codes in every state.

Idempotent: rows are keyed by fixed ids and inserted only when missing, so the
run command can seed on every start without duplicating anything. The codes
are made up (they redeem nowhere) and use the shop's alphabet (no O or I).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from shop.database import make_engine, migrate
from shop.schema import CardCodeRow, CustomerRow, OrderItemRow, OrderRow

CUSTOMERS = [
    ("C1001", "Li Wei", "+86 138 0013 8000", "liwei@example.com"),
    ("C1002", "Emma Clarke", "+44 7700 900123", "emma.clarke@example.com"),
    ("C1003", "Zhang Min", "+86 139 1234 5678", "zhangmin@example.com"),
]

# what the shop calls its products in Chinese
NAMES_ZH = {
    "STEAM-100": "Steam 钱包充值卡 100 元",
    "APPLE-200": "App Store 充值卡 200 元",
    "PSN-50": "PlayStation 商店充值卡 50 美元",
    "GENSHIN-6480": "原神 6480 创世结晶",
    "XBOX-100": "Xbox 礼品卡 100 元",
    "NS-300": "任天堂 eShop 充值卡 3000 日元",
    "GP-100": "Google Play 礼品卡 100 元",
    "STEAM-50": "Steam 钱包充值卡 50 元",
    "PLUS-1M": "星卡 Plus 会员 1 个月",
    "MLBB-500": "无尽对决 500 钻石",
}

# order id, customer, status, paid (days ago), items [(sku, name, kind, qty, price)], codes [(code, status)]
ORDERS = [
    (
        "DG202611200001",
        "C1001",
        "delivered",
        1,
        [("STEAM-100", "Steam Wallet Card CNY 100", "card_code", 1, "100.00")],
        [("K7QM-2XPA-9FTR-4WZD", "delivered")],
    ),
    (
        "DG202611200002",
        "C1001",
        "delivered",
        3,
        [("APPLE-200", "App Store Gift Card CNY 200", "card_code", 1, "200.00")],
        [("H3LN-8VQC-5RTY-2KMB", "redeemed")],
    ),
    (
        "DG202611210003",
        "C1002",
        "delivering",
        0,
        [("PSN-50", "PlayStation Store Card USD 50", "card_code", 1, "350.00")],
        [("P4XJ-7NWE-3GHU-6CZA", "pending")],
    ),
    (
        "DG202611220004",
        "C1002",
        "paid",
        0,
        [("GENSHIN-6480", "Genshin Impact 6480 Genesis Crystals", "topup", 1, "648.00")],
        [],
    ),
    (
        "DG202610010005",
        "C1003",
        "delivered",
        50,
        [("XBOX-100", "Xbox Gift Card CNY 100", "card_code", 1, "100.00")],
        [("X9TB-4MRV-8QPL-3DEF", "expired")],
    ),
    (
        "DG202611150006",
        "C1003",
        "delivered",
        8,
        [("NS-300", "Nintendo eShop Card JPY 3000", "card_code", 1, "150.00")],
        [("N2WS-6KJH-7YUP-5RTG", "frozen")],
    ),
    (
        "DG202611180007",
        "C1001",
        "delivered",
        5,
        [("GP-100", "Google Play Gift Card CNY 100", "card_code", 1, "100.00")],
        [("G8CV-3BNM-4LKJ-9HQW", "invalid")],
    ),
    (
        "DG202611190008",
        "C1002",
        "refunded",
        4,
        [("STEAM-50", "Steam Wallet Card CNY 50", "card_code", 1, "50.00")],
        [("S5DF-2GHJ-8KLZ-7XCV", "delivered")],
    ),
    (
        "DG202611190009",
        "C1003",
        "cancelled",
        4,
        [("PLUS-1M", "StarCard Plus 1 month", "membership", 1, "15.00")],
        [],
    ),
    (
        "DG202611230010",
        "C1003",
        "delivered",
        0,
        [("MLBB-500", "Mobile Legends 500 Diamonds", "topup", 1, "68.00")],
        [],
    ),
]


def seed(url: str, now: datetime | None = None) -> dict[str, int]:
    """Migrate, then insert what is missing; returns how many rows of each kind were added."""
    migrate(url)
    now = now or datetime.now(timezone.utc)
    added = {"customers": 0, "orders": 0, "card_codes": 0}
    engine = make_engine(url, timeout=30)
    with Session(engine) as session, session.begin():
        for customer_id, name, phone, email in CUSTOMERS:
            if session.get(CustomerRow, customer_id) is None:
                session.add(CustomerRow(id=customer_id, name=name, phone=phone, email=email))
                added["customers"] += 1
        session.flush()
        for order_id, customer_id, status, days_ago, items, codes in ORDERS:
            if session.get(OrderRow, order_id) is not None:
                continue
            paid = now - timedelta(days=days_ago, hours=1)
            delivered = paid + timedelta(minutes=1) if status in ("delivered", "refunded") else None
            total = sum(Decimal(price) * qty for _, _, _, qty, price in items)
            session.add(
                OrderRow(
                    id=order_id,
                    customer_id=customer_id,
                    status=status,
                    total=total,
                    currency="CNY",
                    paid_at=paid,
                    delivered_at=delivered,
                )
            )
            session.flush()
            for sku, name, kind, qty, price in items:
                session.add(
                    OrderItemRow(
                        order_id=order_id,
                        sku=sku,
                        name=name,
                        name_zh=NAMES_ZH.get(sku),
                        kind=kind,
                        quantity=qty,
                        unit_price=Decimal(price),
                    )
                )
            for code, code_status in codes:
                session.add(
                    CardCodeRow(
                        code=code,
                        order_id=order_id,
                        product=items[0][1],
                        product_zh=NAMES_ZH.get(items[0][0]),
                        status=code_status,
                        delivered_at=delivered if code_status != "pending" else None,
                        redeemed_at=paid + timedelta(hours=2) if code_status == "redeemed" else None,
                        expires_at=paid + timedelta(days=30)
                        if code_status == "expired"
                        else paid + timedelta(days=365),
                    )
                )
                added["card_codes"] += 1
            added["orders"] += 1
        _backfill_names(session)
    engine.dispose()
    return added


def _backfill_names(session: Session) -> None:
    """Demo shops seeded before migration 0002 get their Chinese names too."""
    for item in session.scalars(select(OrderItemRow).where(OrderItemRow.name_zh.is_(None))):
        item.name_zh = NAMES_ZH.get(item.sku)
    for code in session.scalars(select(CardCodeRow).where(CardCodeRow.product_zh.is_(None))):
        order = session.get(OrderRow, code.order_id)
        skus = [i.sku for i in order.items] if order else []
        code.product_zh = NAMES_ZH.get(skus[0]) if skus else None
