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
