"""Masking of card codes wherever text leaves the customer's own chat bubble.

A card code is money: transcripts, logs and handoff records only ever show its
first and last four characters.
"""

from __future__ import annotations

import re

CARD_CODE_RE = re.compile(
    r"(?<![A-Za-z0-9])([A-Za-z0-9]{4})-([A-Za-z0-9]{4})-([A-Za-z0-9]{4})-([A-Za-z0-9]{4})(?![A-Za-z0-9])"
)


def mask_card_codes(text: str) -> str:
    """Replace the middle of every card code: K7QM-2XPA-9FTR-4WZD -> K7QM-****-****-4WZD."""
    return CARD_CODE_RE.sub(lambda m: f"{m.group(1)}-****-****-{m.group(4)}", text)
