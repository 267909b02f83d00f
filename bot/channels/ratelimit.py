"""Per-sender rate limit shared by every channel and every Rasa replica (Redis).

A customer, a stuck client or a script hammering one conversation must not
take turns from everybody else. Each sender gets two fixed windows: a short
burst window and a one-minute window. A message over either is not sent to
Rasa; the channel answers with ``notice()`` in the customer's language, once
per window (a flood answered line by line would be a flood back), and tells
web clients when to retry.

Redis away: the limit fails open. A customer must never be refused because the
limiter cannot count.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from bot.channels.outbox import redis_client
from common.language import detect_language

logger = logging.getLogger(__name__)

BURST_WINDOW_SECONDS = 10


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until the window that refused it ends
    notify: bool = False  # the first refusal in this window: tell the customer


ALLOWED = Verdict(allowed=True)

_NOTICE = {
    "zh": "您的消息发得有点快啦，请 {seconds} 秒后再发送刚才那条消息，我们一定会看到。",
    "en": "You're sending messages a little fast. Please send that last message again in "
    "{seconds} seconds - we'll see it then.",
}


def notice(text: object, retry_after: int, language: str | None = None) -> str:
    """The polite "slow down" line, in the language of the refused message (else the hint, else en)."""
    written = text.strip() if isinstance(text, str) else ""
    chosen = detect_language(written) if written else (language or "en")
    return _NOTICE.get(chosen, _NOTICE["en"]).format(seconds=max(retry_after, 1))


class SenderRateLimit:
    """At most ``burst`` messages per 10 s and ``per_minute`` per 60 s for one sender."""

    def __init__(self, burst: int, per_minute: int, prefix: str | None = None) -> None:
        self.burst = burst
        self.per_minute = per_minute
        self.prefix = prefix if prefix is not None else os.environ.get("CS_KEY_PREFIX", "cs")

    @classmethod
    def from_env(cls) -> SenderRateLimit:
        return cls(
            burst=int(os.environ.get("RATE_LIMIT_BURST", "8")),
            per_minute=int(os.environ.get("RATE_LIMIT_PER_MINUTE", "30")),
        )

    def key(self, sender_id: str, window: int) -> str:
        return f"{self.prefix}:ratelimit:{window}:{sender_id}"

    async def check(self, sender_id: str) -> Verdict:
        """Count this message and say whether it may go on to Rasa."""
        if self.burst <= 0 and self.per_minute <= 0:
            return ALLOWED
        windows = [(BURST_WINDOW_SECONDS, self.burst), (60, self.per_minute)]
        try:
            async with redis_client().pipeline(transaction=True) as pipe:
                for window, _ in windows:
                    pipe.incr(self.key(sender_id, window))
                    # the window starts with its first message; later ones do not extend it
                    pipe.expire(self.key(sender_id, window), window, nx=True)
                    pipe.ttl(self.key(sender_id, window))
                replies = await pipe.execute()
        except Exception as error:  # noqa: BLE001 - fail open, see the module docstring
            logger.warning(
                "conversation %s: rate limit unavailable (%s); message let through", sender_id, error
            )
            return ALLOWED
        for index, (_, limit) in enumerate(windows):
            count, ttl = int(replies[index * 3]), int(replies[index * 3 + 2])
            if 0 < limit < count:
                logger.info("conversation %s: rate limited (%d messages, limit %d)", sender_id, count, limit)
                return Verdict(allowed=False, retry_after=max(ttl, 1), notify=count == limit + 1)
        return ALLOWED


_limit: SenderRateLimit | None = None


def sender_limit() -> SenderRateLimit:
    """The process-wide limit, read from the environment on first use."""
    global _limit
    if _limit is None:
        _limit = SenderRateLimit.from_env()
    return _limit
