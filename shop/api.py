"""The shop JSON API that shop.http speaks, served over any ShopBackend.

It documents the contract (FastAPI's OpenAPI at /docs) for a shop that wants
to plug in, and it is the local server the HTTP backend is tested against.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, Field

from shop.backend import ShopBackend, ShopUnavailable, to_json


class Proof(BaseModel):
    proof: str = Field(max_length=254)


class CodeRequest(BaseModel):
    code: str = Field(min_length=1, max_length=64)


class RefundRequest(BaseModel):
    reason: str = Field(default="", max_length=2000)


def create_app(backend: ShopBackend, token: str) -> FastAPI:
    app = FastAPI(title="StarCard shop API", version="1")

    def authorised(authorization: str = Header(default="")) -> None:
        if not secrets.compare_digest(authorization, f"Bearer {token}"):
            raise HTTPException(status_code=401, detail="bad token")

    async def guarded(call: Any) -> Any:
        try:
            return await call
        except ShopUnavailable as error:
            raise HTTPException(status_code=503, detail="shop unavailable") from error

    @app.get("/orders/{order_id}", dependencies=[Depends(authorised)])
    async def get_order(order_id: str) -> dict[str, Any]:
        order = await guarded(backend.get_order(order_id))
        if order is None:
            raise HTTPException(status_code=404, detail="unknown order")
        data = to_json(order)
        data["codes"] = [to_json(c) for c in order.codes]
        return data

    @app.post("/orders/{order_id}/verify", dependencies=[Depends(authorised)])
    async def verify(order_id: str, body: Proof) -> dict[str, bool]:
        return {"owner": await guarded(backend.verify_owner(order_id, body.proof))}

    @app.post("/card-codes/lookup", dependencies=[Depends(authorised)])
    async def get_code(body: CodeRequest) -> dict[str, Any]:
        found = await guarded(backend.find_card_code(body.code))
        if found is None:
            raise HTTPException(status_code=404, detail="unknown card code")
        return to_json(found)

    @app.post("/card-codes/resend", dependencies=[Depends(authorised)])
    async def resend(body: CodeRequest) -> dict[str, Any]:
        return to_json(await guarded(backend.resend_card_code(body.code)))

    @app.post("/orders/{order_id}/refunds", dependencies=[Depends(authorised)])
    async def refund(order_id: str, body: RefundRequest) -> dict[str, Any]:
        return to_json(await guarded(backend.request_refund(order_id, body.reason)))

    return app
