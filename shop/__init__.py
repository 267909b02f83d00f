"""The shop behind the self-service flows: orders, card codes, resends, refunds.

Actions talk only to `shop.backend.ShopBackend`; `shop.backend.create()` picks
the SQL implementation (SQLite under var/ by default, PostgreSQL through
DATABASE_URL) or the HTTP one (a real shop's API, SHOP_API_URL).
"""
