"""What the supervisor's analytics show, recorded in Redis as things happen.

- containment: distinct conversations with a customer message per day
  (HyperLogLog) against distinct conversations handed to the queue that day;
- handoffs by reason per day;
- first response: the wait from the handoff request to the first claim, and
  whether it met the SLA (the first claim only: a transfer is not a response);
- CSAT per day;
- unanswered questions: what the knowledge base could not answer (masked,
  common.redaction), grouped by meaning with the knowledge base's encoder so
  the editor sees "27 people asked this" instead of 27 lines; a group becomes a
  prefilled article draft with one click.

Per-day keys expire after ``DAY_KEY_TTL``; the question stream is trimmed by
age with the other streams (handoff/retention.py).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from common.redaction import redact

DAY_KEY_TTL = 400 * 86400
UNANSWERED_MAXLEN = 5000
WAITS_KEPT = 2000  # per day, for the median
QUESTION_CHARS = 300


def day_of(timestamp: float | None = None) -> str:
    moment = time.time() if timestamp is None else timestamp
    return datetime.fromtimestamp(moment, tz=timezone.utc).date().isoformat()


@dataclass
class Analytics:
    # redis.asyncio.Redis with decode_responses=True
    client: Any
    prefix: str

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, "analytics", *parts))

    # -- recording -------------------------------------------------------------------------------
    async def saw_customer(self, conversation_id: str, timestamp: float | None = None) -> None:
        key = self.key("conversations", day_of(timestamp))
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.pfadd(key, conversation_id)
            pipe.expire(key, DAY_KEY_TTL)
            await pipe.execute()

    async def handed_off(self, conversation_id: str, reason: str, timestamp: float | None = None) -> None:
        day = day_of(timestamp)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.pfadd(self.key("handoffs", day), conversation_id)
            pipe.hincrby(self.key("reasons", day), reason, 1)
            for key in (self.key("handoffs", day), self.key("reasons", day)):
                pipe.expire(key, DAY_KEY_TTL)
            await pipe.execute()

    async def first_response(
        self, wait_seconds: float, within_sla: bool, timestamp: float | None = None
    ) -> None:
        day = day_of(timestamp)
        counts, waits = self.key("first-response", day), self.key("first-waits", day)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hincrby(counts, "count", 1)
            pipe.hincrby(counts, "within_sla", int(within_sla))
            pipe.rpush(waits, f"{max(wait_seconds, 0.0):.1f}")
            pipe.ltrim(waits, -WAITS_KEPT, -1)
            pipe.expire(counts, DAY_KEY_TTL)
            pipe.expire(waits, DAY_KEY_TTL)
            await pipe.execute()

    async def rated(self, rating: int, timestamp: float | None = None) -> None:
        key = self.key("ratings", day_of(timestamp))
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, str(rating), 1)
            pipe.expire(key, DAY_KEY_TTL)
            await pipe.execute()

    async def unanswered(self, text: str, language: str, outcome: str) -> None:
        """A question the knowledge base could not answer; stored masked."""
        masked = redact(" ".join(text.split()))[:QUESTION_CHARS]
        if not masked:
            return
        await self.client.xadd(
            self.key("unanswered"),
            {"text": masked, "language": language, "outcome": outcome, "time": f"{time.time():.0f}"},
            maxlen=UNANSWERED_MAXLEN,
            approximate=True,
        )

    # -- reading ---------------------------------------------------------------------------------
    async def report(self, days: int = 14, today: date | None = None) -> dict[str, Any]:
        """One row per day (oldest first) and the period's totals."""
        last = today or datetime.now(timezone.utc).date()
        rows = []
        for offset in range(days - 1, -1, -1):
            rows.append(await self._day(last - timedelta(days=offset)))
        conversations = sum(r["conversations"] for r in rows)
        handoffs = sum(r["handoffs"] for r in rows)
        responded = sum(r["first_response"]["count"] for r in rows)
        within = sum(r["first_response"]["within_sla"] for r in rows)
        rated = sum(r["csat"]["count"] for r in rows)
        stars = sum((r["csat"]["average"] or 0) * r["csat"]["count"] for r in rows)
        reasons: dict[str, int] = {}
        for row in rows:
            for reason, count in row["handoffs_by_reason"].items():
                reasons[reason] = reasons.get(reason, 0) + count
        return {
            "days": rows,
            "totals": {
                "conversations": conversations,
                "handoffs": handoffs,
                "containment": _ratio(conversations - handoffs, conversations),
                "first_response_within_sla": _ratio(within, responded),
                "first_responses": responded,
                "csat_average": round(stars / rated, 2) if rated else None,
                "ratings": rated,
                "handoffs_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            },
        }

    async def _day(self, day: date) -> dict[str, Any]:
        name = day.isoformat()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.pfcount(self.key("conversations", name))
            pipe.pfcount(self.key("handoffs", name))
            pipe.hgetall(self.key("reasons", name))
            pipe.hgetall(self.key("first-response", name))
            pipe.lrange(self.key("first-waits", name), 0, -1)
            pipe.hgetall(self.key("ratings", name))
            conversations, handoffs, reasons, first, waits, ratings = await pipe.execute()
        # a conversation handed off is one the customer wrote in, even if the count missed it
        conversations = max(int(conversations), int(handoffs))
        counts = {int(k): int(v) for k, v in ratings.items()}
        rated = sum(counts.values())
        seconds = sorted(float(w) for w in waits)
        return {
            "date": name,
            "conversations": conversations,
            "handoffs": int(handoffs),
            "containment": _ratio(conversations - int(handoffs), conversations),
            "handoffs_by_reason": {k: int(v) for k, v in reasons.items()},
            "first_response": {
                "count": int(first.get("count", 0)),
                "within_sla": int(first.get("within_sla", 0)),
                "median_seconds": seconds[len(seconds) // 2] if seconds else None,
            },
            "csat": {
                "count": rated,
                "average": round(sum(k * v for k, v in counts.items()) / rated, 2) if rated else None,
            },
        }

    async def unanswered_questions(self, limit: int = 500) -> list[dict[str, str]]:
        entries = await self.client.xrevrange(self.key("unanswered"), count=limit)
        return [dict(fields) for _, fields in entries]


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# -- grouping by meaning -------------------------------------------------------------------------


def group_by_meaning(
    questions: list[dict[str, str]], vectors: np.ndarray, threshold: float = 0.72, top: int = 10
) -> list[dict[str, Any]]:
    """Greedy grouping: each question joins the most similar group whose centroid it is close to.

    ``vectors`` are the questions' sentence embeddings (one row each). Groups are
    returned largest first; each names the question nearest its centroid.
    """
    if not questions:
        return []
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    members: list[list[int]] = []
    sums: list[np.ndarray] = []
    for index, vector in enumerate(unit):
        best, best_score = -1, threshold
        for group, total in enumerate(sums):
            centroid = total / max(np.linalg.norm(total), 1e-9)
            score = float(centroid @ vector)
            if score >= best_score:
                best, best_score = group, score
        if best < 0:
            members.append([index])
            sums.append(vector.copy())
        else:
            members[best].append(index)
            sums[best] += vector
    groups: list[dict[str, Any]] = []
    for indexes, total in zip(members, sums, strict=True):
        centroid = total / max(np.linalg.norm(total), 1e-9)
        central = max(indexes, key=lambda i: float(unit[i] @ centroid))
        texts = list(dict.fromkeys(questions[i]["text"] for i in indexes))
        languages: dict[str, int] = {}
        for i in indexes:
            language = questions[i].get("language", "")
            languages[language] = languages.get(language, 0) + 1
        groups.append(
            {
                "question": questions[central]["text"],
                "count": len(indexes),
                "language": max(languages, key=lambda k: languages[k]),
                "examples": texts[:6],
            }
        )
    groups.sort(key=lambda g: -g["count"])
    return groups[:top]


# -- drafts --------------------------------------------------------------------------------------

_SLUG_RE = re.compile(r"[^a-z0-9]+")


def slug_for(title: str) -> str:
    ascii_words = _SLUG_RE.sub("-", title.lower()).strip("-")[:48].strip("-")
    return ascii_words or "question"


def draft_article(
    drafts_dir: Path, title: str, language: str, questions: list[str], category: str = "general"
) -> tuple[Path, str]:
    """A new article file, prefilled from a group of unanswered questions; returns its path and text.

    The file passes the knowledge base's article checks (knowledge/articles.py) once the answer is
    written, so an editor moves it into knowledge/articles/<language>/ and rebuilds the index.
    """
    if language not in ("zh", "en"):
        raise ValueError("language must be zh or en")
    title = " ".join(redact(title).split())[:120] or "New article"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    slug = f"draft-{stamp}-{slug_for(title)}"
    # "--" would end the HTML comment the questions sit in
    asked = "\n".join(
        f"- {redact(' '.join(q.split()))[:QUESTION_CHARS].replace('--', '- -')}" for q in questions[:20]
    )
    placeholder = (
        "（在这里写答案：先用一两句话直接回答，再列出步骤。）"
        if language == "zh"
        else "(Write the answer here: one or two sentences that answer the question, then the steps.)"
    )
    heading = "顾客这样问" if language == "zh" else "How customers asked"
    text = (
        "---\n"
        f"id: {slug}\n"
        f"title: {json.dumps(title, ensure_ascii=False)}\n"
        f"language: {language}\n"
        f"category: {category}\n"
        "tags: []\n"
        f"updated: {datetime.now(timezone.utc).date().isoformat()}\n"
        "---\n"
        f"# {title}\n\n{placeholder}\n\n"
        f"<!-- {heading} (masked; delete this block before publishing):\n{asked}\n-->\n"
    )
    target = drafts_dir / language / f"{slug}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target, text
