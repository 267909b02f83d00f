"""ShopBackend over a shop's JSON API, so a real shop plugs in by URL and token.

The API (docs/shop-api.md; shop/api.py serves it over any ShopBackend):
  GET  /orders/{order_id}                -> Order            404 when unknown
  POST /orders/{order_id}/verify          {"proof": "..."} -> {"owner": bool}
  POST /card-codes/lookup                {"code": "..."} -> CardCode   404 when unknown
  POST /card-codes/resend                {"code": "..."} -> ResendResult
Card codes travel in request bodies, never in URLs: paths end up in access logs.
  POST /orders/{order_id}/refunds         {"reason": "..."} -> RefundDecision
Every request carries `Authorization: Bearer <SHOP_API_TOKEN>`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from shop.backend import (
    CardCode,
    CodeStatus,
    Order,
    OrderItem,
    OrderStatus,
    RefundDecision,
    ResendOutcome,
    ResendResult,
    ShopBackend,
    ShopUnavailable,
)


def order_from_json(data: dict[str, Any]) -> Order:
    return Order(
        order_id=data["order_id"],
        customer_id=data["customer_id"],
        status=OrderStatus(data["status"]),
        items=tuple(item_from_json(item) for item in data.get("items", [])),
        total=str(data["total"]),
        currency=data["currency"],
        paid_at=data.get("paid_at"),
        delivered_at=data.get("delivered_at"),
        codes=tuple(code_from_json(c) for c in data.get("codes", [])),
    )


def item_from_json(data: dict[str, Any]) -> OrderItem:
    # a shop may send more than we read; unknown fields are not an error
    return OrderItem(
        sku=data["sku"],
        name=data["name"],
        kind=data["kind"],
        quantity=int(data["quantity"]),
        unit_price=str(data["unit_price"]),
        name_zh=data.get("name_zh"),
    )


def code_from_json(data: dict[str, Any]) -> CardCode:
    return CardCode(
        code=data["code"],
        order_id=data["order_id"],
        product=data["product"],
        status=CodeStatus(data["status"]),
        delivered_at=data.get("delivered_at"),
        redeemed_at=data.get("redeemed_at"),
        expires_at=data.get("expires_at"),
        product_zh=data.get("product_zh"),
    )


class HttpShopBackend(ShopBackend):
    def __init__(self, base_url: str, token: str, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # inside the running loop, on first use
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=self.timeout,
                headers={"Authorization": f"Bearer {self.token}"},
            )
        return self._client

    async def _request(
        self, method: str, path: str, json: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        async def go() -> dict[str, Any] | None:
            reply = await self.client().request(method, path, json=json)
            if reply.status_code == 404:
                return None
            if reply.status_code != 200:
                raise ShopUnavailable(f"shop API answered {reply.status_code} for {method} {path}")
            body = reply.json()
            if not isinstance(body, dict):
                raise ShopUnavailable(f"shop API sent a non-object for {method} {path}")
            return body

        return await self.call(go())

    async def get_order(self, order_id: str) -> Order | None:
        data = await self._request("GET", f"/orders/{quote(order_id, safe='')}")
        return order_from_json(data) if data else None

    async def verify_owner(self, order_id: str, proof: str) -> bool:
        data = await self._request("POST", f"/orders/{quote(order_id, safe='')}/verify", {"proof": proof})
        return bool(data and data.get("owner") is True)

    async def find_card_code(self, code: str) -> CardCode | None:
        data = await self._request("POST", "/card-codes/lookup", {"code": code})
        return code_from_json(data) if data else None

    async def resend_card_code(self, code: str) -> ResendResult:
        data = await self._request("POST", "/card-codes/resend", {"code": code})
        if data is None:
            return ResendResult(ResendOutcome.NOT_FOUND)
        return ResendResult(ResendOutcome(data["outcome"]), data.get("reference"), data.get("sent_to"))

    async def request_refund(self, order_id: str, reason: str) -> RefundDecision:
        data = await self._request("POST", f"/orders/{quote(order_id, safe='')}/refunds", {"reason": reason})
        if data is None:
            return RefundDecision(False, None, "not_found")
        return RefundDecision(bool(data["accepted"]), data.get("reference"), str(data["reason"]))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
