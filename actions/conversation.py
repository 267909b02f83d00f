"""Helpers every action needs: the customer's language, texts, the transcript."""

from __future__ import annotations

import copy
import json
import logging
from datetime import datetime, timezone
from typing import Any

from rasa_sdk import Tracker
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.language import Language, normalise_language
from common.masking import mask_card_codes
from common.tracker_keys import events_key, window_start
from handoff.records import TranscriptLine, attachment_text


def customer_language(tracker: Tracker) -> Language:
    """The language of the conversation, kept in the ``language`` slot."""
    return normalise_language(tracker.get_slot("language"))


def response_text(domain: dict[str, Any], response: str, language: Language) -> str:
    """The text of a domain response in one language.

    Actions build some messages themselves (button titles); the words still live
    in domain.yml so every customer-facing text is in one place.
    """
    variations = domain.get("responses", {}).get(response, [])
    fallback = ""
    for variation in variations:
        conditions = variation.get("condition") or []
        wants = {c.get("name"): c.get("value") for c in conditions if c.get("type") == "slot"}
        if wants.get("language") == language:
            return str(variation.get("text", ""))
        if not conditions:
            fallback = str(variation.get("text", ""))
    return fallback


logger = logging.getLogger(__name__)


async def whole_conversation(tracker: Tracker, client: Redis, prefix: str) -> Tracker:
    """The tracker with the events Rasa did not send because they precede the turn window.

    Rasa loads only a conversation's latest events for a turn (bot.tracker_store);
    a transcript for an agent needs all of them. If Redis cannot be read, the
    window's events are what there is (logged), never a failed handoff.
    """
    start = window_start(tracker.events)
    if not start:
        return tracker
    try:
        stored = await client.lrange(events_key(prefix, tracker.sender_id), 0, start - 1)
    except RedisError as error:
        logger.warning("conversation %s: earlier events unavailable (%s)", tracker.sender_id, error)
        return tracker
    earlier = []
    for raw in stored:
        try:
            earlier.append(json.loads(raw))
        except ValueError:
            logger.warning("conversation %s: skipping an unreadable stored event", tracker.sender_id)
    whole = copy.copy(tracker)
    whole.events = earlier + list(tracker.events)
    return whole


def _iso(timestamp: float | None) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc) if timestamp else datetime.now(timezone.utc)
    return moment.isoformat()


def transcript(tracker: Tracker) -> list[TranscriptLine]:
    """Customer and bot lines of the whole conversation, card codes masked."""
    lines: list[TranscriptLine] = []
    for event in tracker.events:
        kind = event.get("event")
        if kind not in ("user", "bot"):
            continue
        text = event.get("text") or ""
        if kind == "user":
            metadata = event.get("metadata") or {}
            rejected = metadata.get("rejected_message")
            if attachment_text(metadata):
                text = str(attachment_text(metadata))
            elif isinstance(rejected, dict):  # set by the channels only; anything else is not theirs
                text = (
                    f"[{rejected.get('reason')}, {rejected.get('chars')} chars] {rejected.get('preview', '')}"
                )
            elif text.startswith("/"):
                # a button click: show what the customer chose, not the payload
                intent = (event.get("parse_data") or {}).get("intent", {}).get("name") or text
                text = f"[button] {intent}"
        if not text:
            continue
        lines.append(
            TranscriptLine(
                speaker="customer" if kind == "user" else "bot",
                text=mask_card_codes(text),
                time=_iso(event.get("timestamp")),
            )
        )
    return lines


def first_customer_question(tracker: Tracker) -> str:
    """The first substantial thing the customer wrote (skips greetings and clicks)."""
    for event in tracker.events:
        if event.get("event") != "user":
            continue
        text = (event.get("text") or "").strip()
        intent = (event.get("parse_data") or {}).get("intent", {}).get("name")
        if text and not text.startswith("/") and intent not in ("greet", "affirm", "deny", "thanks"):
            return mask_card_codes(text)
    return ""
