"""Per-message language detection for the two languages the assistant speaks.

A customer's language is decided by script, not by a statistical model: the
shop serves Chinese and English only, so "does the text contain Han characters,
and do they carry the message" is both fast and right for mixed text such as
"我的steam卡密用不了".
"""

from __future__ import annotations

import re
from typing import Literal

Language = Literal["zh", "en"]
SUPPORTED: tuple[Language, ...] = ("zh", "en")
DEFAULT_LANGUAGE: Language = "en"

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff01-\uff5e]")
_IDEOGRAPH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def detect_language(text: str, default: Language = DEFAULT_LANGUAGE) -> Language:
    """Return "zh" or "en" for a customer message.

    Mixed messages count as Chinese unless the English words clearly outweigh
    the Chinese characters, because a Chinese writer often drops in a product
    name ("steam", "UID") while an English writer rarely types ideographs.
    Messages with neither (digits, an order id, emoji) return ``default`` so the
    caller can keep the conversation's previous language.
    """
    ideographs = len(_IDEOGRAPH.findall(text))
    latin_words = len(_LATIN_WORD.findall(text))
    if ideographs == 0 and latin_words == 0:
        # full-width punctuation alone ("？？") still hints at a Chinese keyboard
        return "zh" if _HAN.search(text) else default
    if ideographs == 0:
        return "en"
    # one ideograph is worth about half an English word of signal
    return "zh" if ideographs * 2 >= latin_words else "en"


def normalise_language(value: object, default: Language = DEFAULT_LANGUAGE) -> Language:
    """Map a slot value or header such as "zh-CN" to a supported language."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered.startswith("zh"):
            return "zh"
        if lowered.startswith("en"):
            return "en"
    return default
