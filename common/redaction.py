"""Personal data out of everything that is not the conversation itself.

Support conversations carry phone numbers, e-mail addresses, card codes, bank
card numbers and Chinese resident ID numbers. Logs, metrics labels, analytics,
exports and the event stream are read by more people and kept longer than a
chat, so they get ``redact(text)``: each value keeps just enough to be
recognised by the customer it belongs to (the last digits, the mail domain)
and nothing an attacker could use.

What counts as a value is deliberately strict where a false match would hurt
an agent: a 16-19 digit run is a bank card only when its Luhn check passes, an
18-character run is an ID number only when its ISO 7064 check character is
right, so order ids (DG + 12 digits) and timestamps survive.
"""

from __future__ import annotations

import re
from typing import Any

from common.masking import mask_card_codes

# no letter or digit glued to either side: DG202611230017 is an order id, not a phone number
_NB = r"(?<![0-9A-Za-z\uff10-\uff19])"
_NA = r"(?![0-9A-Za-z\uff10-\uff19])"

EMAIL_RE = re.compile(r"(?<![\w.+-])([\w.+-]{1,64})@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)")
# mainland ID: 6 region + 8 birth date + 3 sequence + check (digit or X)
CN_ID_RE = re.compile(
    _NB + r"(\d{6}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx])" + _NA
)
# bank cards: 13-19 digits, optionally grouped by spaces or dashes; issuers' numbers start with 2-6
# (Mastercard 2/5, Amex and JCB 3, Visa 4, UnionPay 62), so millisecond timestamps (1...) are left alone
BANK_CARD_RE = re.compile(
    _NB + r"([2-6]\d{12,18}|[2-6]\d{3}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|3[47]\d{2}[ -]\d{6}[ -]\d{5})" + _NA
)
# mainland mobile (optionally +86), then any other international number written with a +
CN_MOBILE_RE = re.compile(_NB + r"((?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4})" + _NA)
INTL_PHONE_RE = re.compile(r"(?<![\w+])(\+\d{1,3}(?:[ -]?\d){6,12})" + _NA)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def luhn_valid(digits: str) -> bool:
    """The check every bank card number carries (ISO/IEC 7812)."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def cn_id_valid(number: str) -> bool:
    """GB 11643 check character of an 18-character resident ID number."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(int(number[i]) * _ID_WEIGHTS[i] for i in range(17))
    return _ID_CHECK[total % 11] == number[17].upper()


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _mask_id(match: re.Match[str]) -> str:
    number = match.group(1)
    return f"{number[:1]}{'*' * 13}{number[-4:]}" if cn_id_valid(number) else number


def _mask_bank_card(match: re.Match[str]) -> str:
    raw = match.group(1)
    digits = _digits(raw)
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return f"**** **** **** {digits[-4:]}"
    # "4111 1111 1111 1111 123": a card followed by another short number
    head, _, tail = raw.rpartition(" " if " " in raw else "-")
    if head and len(tail) < 4 and luhn_valid(_digits(head)):
        return f"**** **** **** {_digits(head)[-4:]}{raw[len(head) :]}"
    return raw


def _mask_cn_mobile(match: re.Match[str]) -> str:
    digits = _digits(match.group(1))[-11:]
    return f"{digits[:3]}****{digits[-4:]}"


def _mask_intl_phone(match: re.Match[str]) -> str:
    raw = match.group(1)
    digits = _digits(raw)
    return f"+{'*' * max(len(digits) - 4, 1)}{digits[-4:]}"


def _mask_email(match: re.Match[str]) -> str:
    local, domain = match.group(1), match.group(2)
    return f"{local[:1]}***@{domain}"


# every value above needs a digit, an "@" or a dash (a card code of letters only is dash-separated)
_MAYBE_RE = re.compile(r"[0-9@\-\u2010-\u2015\u2212\uff0d\uff10-\uff19]")


def redact(text: str) -> str:
    """``text`` with every phone number, e-mail, card code, bank card and ID number masked.

    Idempotent: redacting redacted text changes nothing. Most strings (intent names, plain
    sentences) have none of the characters a value needs and are returned at once.
    """
    if not text or not _MAYBE_RE.search(text):
        return text
    # card codes first: they contain digit groups the number patterns would otherwise half-match
    text = mask_card_codes(text)
    text = CN_ID_RE.sub(_mask_id, text)
    text = BANK_CARD_RE.sub(_mask_bank_card, text)
    text = CN_MOBILE_RE.sub(_mask_cn_mobile, text)
    text = INTL_PHONE_RE.sub(_mask_intl_phone, text)
    return EMAIL_RE.sub(_mask_email, text)


def redact_value(value: Any) -> Any:
    """``redact`` applied to every string inside JSON-like data (dict keys stay as they are)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item) for item in value]
    return value
