"""The knowledge base over HTTP: GET /api/kb/search, mounted by the web service.

The agent console uses it for article suggestions; anything else that wants
the same answers the bot gives (and their confidence band) can use it too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import Any, Callable

from fastapi import APIRouter, HTTPException, Query

from common.language import detect_language
from knowledge.retriever import ReloadingRetriever

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = 500


def band(confidence: float, answer_at: float, suggest_at: float) -> str:
    if confidence >= answer_at:
        return "answer"
    if confidence >= suggest_at:
        return "suggest"
    return "handoff"


def create_router(retriever: Callable[[], ReloadingRetriever]) -> APIRouter:
    router = APIRouter(prefix="/api/kb", tags=["knowledge"])

    @router.get("/search")
    async def search(
        q: str = Query(..., min_length=1, max_length=MAX_QUERY_CHARS, description="the customer's question"),
        language: str | None = Query(
            None, pattern="^(zh|en)$", description="zh or en; detected when omitted"
        ),
        k: int = Query(3, ge=1, le=10),
        method: str = Query("hybrid", pattern="^(hybrid|dense|bm25)$"),
    ) -> dict[str, Any]:
        if not q.strip():
            raise HTTPException(status_code=422, detail="q is blank")
        holder = retriever()
        try:
            current = await asyncio.to_thread(holder.get)
        except FileNotFoundError as error:
            raise HTTPException(status_code=503, detail="knowledge index not built yet") from error
        if method != current.method:
            from knowledge.retriever import create

            current = create(current.snapshot, method)
        lang = language or detect_language(q)
        hits = await asyncio.to_thread(current.search, q, lang, k)
        confidence = current.confidence(hits, lang)
        answer_at, suggest_at = holder.thresholds(current, lang)
        return {
            "query": q,
            "language": lang,
            "method": method,
            "build_id": current.snapshot.build_id,
            "confidence": round(confidence, 4),
            "band": band(confidence, answer_at, suggest_at),
            "thresholds": {"answer": answer_at, "suggest": suggest_at},
            "hits": [asdict(hit) for hit in hits],
        }

    return router
