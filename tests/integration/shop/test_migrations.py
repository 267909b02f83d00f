"""Migrations build the schema from empty; seeding twice adds nothing the second time."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from shop.database import make_engine
from shop.seed import seed

pytestmark = pytest.mark.integration
TABLES = {
    "customers",
    "orders",
    "order_items",
    "card_codes",
    "resends",
    "outbox",
    "refund_tickets",
    "alembic_version",
}


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_schema_from_empty_and_idempotent_seed(request: pytest.FixtureRequest, database: str) -> None:
    url = request.getfixturevalue("sqlite_url" if database == "sqlite" else "pg_url")
    first = seed(url)
    assert first == {"customers": 3, "orders": 10, "card_codes": 7}
    assert seed(url) == {"customers": 0, "orders": 0, "card_codes": 0}
    engine = make_engine(url)
    assert TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_a_shop_seeded_before_0002_gets_chinese_names(sqlite_url: str) -> None:
    from sqlalchemy import text

    from shop.database import migrate
    from shop.seed import ORDERS

    migrate(sqlite_url, "0001")
    engine = make_engine(sqlite_url)
    with engine.begin() as connection:
        # an old demo shop: one order with its item and code, no Chinese names
        order_id, customer, status, _, items, codes = ORDERS[0]
        connection.execute(
            text("INSERT INTO customers VALUES ('C1001', 'Li Wei', '+86 138 0013 8000', 'liwei@example.com')")
        )
        connection.execute(
            text(
                "INSERT INTO orders (id, customer_id, status, total, currency)"
                " VALUES (:o, :c, :s, 100, 'CNY')"
            ),
            {"o": order_id, "c": customer, "s": status},
        )
        connection.execute(
            text(
                "INSERT INTO order_items (order_id, sku, name, kind, quantity, unit_price)"
                " VALUES (:o, :sku, :n, 'card_code', 1, 100)"
            ),
            {"o": order_id, "sku": items[0][0], "n": items[0][1]},
        )
        connection.execute(
            text(
                "INSERT INTO card_codes (code, order_id, product, status) VALUES (:code, :o, :p, 'delivered')"
            ),
            {"code": codes[0][0], "o": order_id, "p": items[0][1]},
        )
    engine.dispose()
    seed(sqlite_url)  # migrates to head, then fills in what is missing
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        names = (
            connection.execute(text("SELECT name_zh FROM order_items WHERE sku = 'STEAM-100'"))
            .scalars()
            .all()
        )
        products = connection.execute(text("SELECT product_zh FROM card_codes")).scalars().all()
    engine.dispose()
    assert names == ["Steam 钱包充值卡 100 元"] and None not in products
