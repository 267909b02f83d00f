"""Conversation ids as customers' clients send them.

A conversation id ends up as a Redis key suffix and in URLs, so every entry
point (Rasa channels, the web service's history API) accepts the same shape.
"""

from __future__ import annotations

import re

_CONVERSATION_ID = re.compile(r"[A-Za-z0-9_.:@\-]{1,128}")


def valid_conversation_id(value: object) -> bool:
    """1-128 characters of A-Z a-z 0-9 _ . : @ -"""
    return isinstance(value, str) and _CONVERSATION_ID.fullmatch(value) is not None
