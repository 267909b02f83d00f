"""Checks every channel applies to a customer message before Rasa sees it.

Stock Rasa answers an empty message with silence and lets a REST request
without ``sender`` join a shared conversation called "default". Both are
unacceptable for a support product, so every channel routes input through
``inspect_message`` and ``valid_sender_id``.

Rejected input is not dropped: it becomes an intent payload that the dialogue
answers in the customer's language, and the metadata on the resulting
UserUttered event keeps what was rejected so an agent can still see it.

Card codes are masked here, before Rasa sees the text, and travel on sealed in
the metadata (common.masking; channels pass ``default_sealer()``): the tracker
store and Rasa's logs never hold a full code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from common.ids import valid_conversation_id
from common.language import detect_language
from common.masking import SEALED_CODES_KEY, CodeSealer, mask_card_codes

EMPTY_MESSAGE_INTENT = "empty_message"
TOO_LONG_INTENT = "message_too_long"
PREVIEW_CHARS = 280
# metadata only the channels themselves set: a web client claiming them would fool the agent
# (an "attachment" shown in the console), replay sealed card codes, or break the history
ATTACHMENT_KEY = "attachment"
CLIENT_ADDRESS_KEY = "client_address"
RESERVED_METADATA = frozenset({SEALED_CODES_KEY, ATTACHMENT_KEY, CLIENT_ADDRESS_KEY, "rejected_message"})
MAX_BUTTON_TITLE_CHARS = 200


def _ui_language(value: object) -> object:
    return value if value in ("zh", "en") else None


def _button_title(value: object) -> object:
    return value[:MAX_BUTTON_TITLE_CHARS] if isinstance(value, str) and value.strip() else None


def _automatic(value: object) -> object:
    return True if value is True else None


# The only metadata a client may send, each with its check; anything else never reaches Rasa
# (a client's {"rejected_message": "x"} once broke the history and every later handoff).
CLIENT_METADATA = {"ui_language": _ui_language, "button_title": _button_title, "automatic": _automatic}


def allowed_client_metadata(raw: dict[str, Any] | None) -> dict[str, Any]:
    """The allow-listed, well-formed part of what a client attached to its message."""
    kept: dict[str, Any] = {}
    for key, check in CLIENT_METADATA.items():
        value = check((raw or {}).get(key))
        if value is not None:
            kept[key] = value
    return kept


@dataclass(frozen=True)
class InspectedMessage:
    """What a channel hands to Rasa after the checks."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None  # None, "empty" or "too_long"


# conversation ids of the messaging channels (bot/channels/wechat.py, telegram.py): a web client
# using one would write into a WeChat or Telegram customer's conversation and take their replies
RESERVED_SENDER_PREFIXES = ("wx:", "tg:")


def valid_sender_id(sender: object) -> bool:
    """A sender id a web client may use: a short printable token (a Redis key suffix), not a channel's."""
    return valid_conversation_id(sender) and not str(sender).startswith(RESERVED_SENDER_PREFIXES)


def inspect_message(
    text: object,
    max_chars: int,
    sealer: CodeSealer | None = None,
    client_metadata: dict[str, Any] | None = None,
) -> InspectedMessage:
    """Turn raw customer input into the text and metadata Rasa should process.

    ``text`` may be anything a client sent (None, a number, a huge string).
    ``client_metadata`` is what the client attached; a client cannot supply
    sealed codes (they would be replays at best) or an attachment of its own.
    """
    inspected = _inspect(text, max_chars)
    metadata = allowed_client_metadata(client_metadata)
    metadata.update(inspected.metadata)
    if inspected.rejected:
        return InspectedMessage(inspected.text, metadata, inspected.rejected)
    if sealer is None:
        return InspectedMessage(mask_card_codes(inspected.text), metadata)
    sealed = sealer.seal_message(inspected.text)
    if sealed.sealed:
        metadata[SEALED_CODES_KEY] = sealed.sealed
    return InspectedMessage(sealed.text, metadata)


def _inspect(text: object, max_chars: int) -> InspectedMessage:
    if text is None:
        text = ""
    if not isinstance(text, str):
        text = str(text)
    stripped = text.strip()
    if not stripped:
        return InspectedMessage(text=f"/{EMPTY_MESSAGE_INTENT}", rejected="empty")
    if len(stripped) > max_chars:
        language = detect_language(stripped[:max_chars])
        payload = json.dumps({"language": language})
        return InspectedMessage(
            text=f"/{TOO_LONG_INTENT}{payload}",
            metadata={
                "rejected_message": {
                    "reason": "too_long",
                    "chars": len(stripped),
                    "max_chars": max_chars,
                    "preview": mask_card_codes(stripped[:PREVIEW_CHARS]),
                }
            },
            rejected="too_long",
        )
    return InspectedMessage(text=stripped)
