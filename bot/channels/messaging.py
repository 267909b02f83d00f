"""What the messaging-app channels (WeChat, Telegram) share.

Both receive webhooks that their platform retries, both send through an HTTP
API with a length limit and no HTML, and neither shows buttons the way the
widget does. The pieces here are the parts that are the same for both:

- ``Deduper``: a retried webhook is processed once (Redis ``SET NX`` with a
  TTL); a turn that fails gives the key back so the platform's retry is not
  lost;
- ``split_text``: cut a long reply at the platform's limit, preferring
  paragraph, line and sentence ends, never inside a surrogate pair;
- ``LanguageMemory``: the language of a customer's last text, for the turns
  that carry none (a subscribe event, a photo);
- ``report_delivery_failure``: a reply the platform refused (WeChat's 48-hour
  window, a blocked Telegram bot) is put on a Redis stream the handoff service
  shows the agent, so an agent never talks into the void without knowing;
- ``non_text_payload``: photos, voice and stickers become an intent payload
  the dialogue answers with a polite "text please", and their description
  stays on the event for the agent.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, Optional, Text

import aiohttp
from sanic import response
from sanic.response import HTTPResponse

from bot.channels.outbox import redis_client

logger = logging.getLogger(__name__)

# a photo gets the answer an empty message gets: "please type your question in words"
NON_TEXT_INTENT = "empty_message"
DEDUPE_TTL_SECONDS = 600
LANGUAGE_TTL_SECONDS = 30 * 24 * 3600
FAILURES_MAXLEN = 10_000
# what is kept of a failed message for the agent (the whole text is in the transcript)
FAILURE_PREVIEW_CHARS = 200


def key_prefix() -> str:
    return os.environ.get("CS_KEY_PREFIX", "cs")


_session: Optional[aiohttp.ClientSession] = None


def http_session() -> aiohttp.ClientSession:
    """One HTTP client per process for the platforms' APIs, created inside the running loop."""
    global _session
    if _session is None or _session.closed:
        _session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    return _session


def credential(credentials: Dict[Text, Any], name: str, env: str, default: str = "") -> str:
    """A channel setting: credentials.yml, else the environment, else the default."""
    return str(credentials.get(name) or os.environ.get(env) or default).strip()


def error_response(status: int, code: str, message: str) -> HTTPResponse:
    """The JSON error every webhook answers rejected input with."""
    return response.json({"error": code, "message": message}, status=status)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit Telegram counts its limits in."""
    return len(text.encode("utf-16-le")) // 2


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def split_text(text: str, limit: int, measure: Callable[[str], int] = len) -> List[str]:
    """Cut ``text`` into parts of at most ``limit`` (as ``measure`` counts) at natural breaks.

    Prefers a paragraph break, then a line break, then the end of a sentence
    (Chinese or Latin), then a space; a run without any break is cut at the
    limit on a character boundary, so no character is ever split.
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    text = text.strip()
    parts: List[str] = []
    while text:
        if measure(text) <= limit:
            parts.append(text)
            break
        cut = _longest_prefix(text, limit, measure)
        window = text[:cut]
        best = -1
        for separator in ("\n\n", "\n", "。", "！", "？", ". ", "! ", "? ", "；", "; ", "，", ", ", " "):
            position = window.rfind(separator)
            # a break in the first third makes a uselessly short part
            if position >= cut // 3:
                best = position + len(separator)
                break
        end = best if best > 0 else cut
        part = text[:end].rstrip()
        if part:
            parts.append(part)
        text = text[end:].lstrip()
    return parts


def _longest_prefix(text: str, limit: int, measure: Callable[[str], int]) -> int:
    """The number of characters of the longest prefix that measures at most ``limit``."""
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def numbered_choices(text: str, buttons: List[Dict[str, Any]]) -> str:
    """A message with buttons as plain text: the choices numbered, answerable with a digit."""
    lines = [text.rstrip()] if text and text.strip() else []
    for number, button in enumerate(buttons, start=1):
        lines.append(f"{number}. {button.get('title') or button.get('payload') or ''}")
    return "\n".join(lines)


def non_text_payload(language: Optional[str] = None) -> str:
    """``/empty_message``: what the dialogue receives for a photo, a voice note, ...

    What arrived travels in the message metadata (``attachment``), where the
    handoff service shows it to an agent; the payload only carries the language.
    """
    if language in ("zh", "en"):
        return f'/{NON_TEXT_INTENT}{{"language": "{language}"}}'
    return f"/{NON_TEXT_INTENT}"


class Deduper:
    """At most once per key and TTL, across processes; a failed turn releases its key."""

    def __init__(self, channel: str, ttl_seconds: int = DEDUPE_TTL_SECONDS) -> None:
        self.channel = channel
        self.ttl_seconds = ttl_seconds

    def key(self, token: str) -> str:
        return f"{key_prefix()}:{self.channel}:seen:{token}"

    async def claim(self, token: str) -> bool:
        """True for the first caller with this token; False for a retry of something already taken.

        Redis away: the message is processed (a duplicate answer beats a lost one).
        """
        try:
            return bool(
                await redis_client().set(self.key(token), str(time.time()), nx=True, ex=self.ttl_seconds)
            )
        except Exception as error:  # noqa: BLE001 - fail open, see above
            logger.warning("%s dedupe unavailable (%s): processing %s anyway", self.channel, error, token)
            return True

    async def release(self, token: str) -> None:
        try:
            await redis_client().delete(self.key(token))
        except Exception as error:  # noqa: BLE001 - the key expires on its own
            logger.warning("%s dedupe key %s not released: %s", self.channel, token, error)


class LanguageMemory:
    """The language of each customer's last text message, for turns without text."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def key(self, sender_id: str) -> str:
        return f"{key_prefix()}:{self.channel}:language:{sender_id}"

    async def remember(self, sender_id: str, language: str) -> None:
        try:
            await redis_client().set(self.key(sender_id), language, ex=LANGUAGE_TTL_SECONDS)
        except Exception as error:  # noqa: BLE001 - only a hint
            logger.debug("conversation %s: language not remembered: %s", sender_id, error)

    async def recall(self, sender_id: str) -> Optional[str]:
        try:
            value = await redis_client().get(self.key(sender_id))
        except Exception:  # noqa: BLE001 - only a hint
            return None
        if isinstance(value, bytes):
            value = value.decode()
        return value if value in ("zh", "en") else None


def failures_stream() -> str:
    return f"{key_prefix()}:channel:failures"


async def report_delivery_failure(
    conversation_id: Text, channel: Text, code: Text, detail: Text, text: Text = ""
) -> None:
    """Log a refused delivery and put it where the handoff service tells the agent."""
    logger.error(
        "conversation %s: %s did not deliver a message: %s %s", conversation_id, channel, code, detail
    )
    entry = {
        "conversation_id": conversation_id,
        "channel": channel,
        "code": str(code),
        "detail": detail[:300],
        "text": text[:FAILURE_PREVIEW_CHARS],
        "time": str(time.time()),
    }
    try:
        await redis_client().xadd(
            failures_stream(), {"failure": json.dumps(entry, ensure_ascii=False)}, maxlen=FAILURES_MAXLEN
        )
    except Exception as error:  # noqa: BLE001 - the log line above is the record then
        logger.warning("conversation %s: delivery failure not recorded: %s", conversation_id, error)
