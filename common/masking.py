"""Card codes: finding them in customer text, masking them, sealing them.

A card code is money. The full code may appear in exactly two places: the
customer's own chat bubble and the registered contact the shop resends it to.
Everywhere else (bot messages, tracker events, logs, handoff transcripts) it is
masked to its first and last four characters.

The channels mask a code before Rasa sees the message, so the tracker store
never holds it. The action that checks the code still needs it: the channel
puts it into the message metadata *sealed* (Fernet: AES-128-CBC + HMAC-SHA256)
with a key the Rasa and action servers share. A sealed code in Redis is
useless without the key, cannot be forged, and expires (SEAL_TTL_SECONDS).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

# XXXX-XXXX-XXXX-XXXX. Customers also type spaces, dots, other dashes or nothing between the groups,
# and Chinese input methods produce full-width letters, digits and dashes (Ｋ７ＱＭ－...).
_CH = "[A-Za-z0-9\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]"
_SEP = "(?:[ \u3000]*[-\u2010-\u2015\u2212\uff0d.\uff0e][ \u3000]*|[ \u3000]+)?"
CARD_CODE_RE = re.compile(
    f"(?<![A-Za-z0-9\uff10-\uff19\uff21-\uff3a\uff41-\uff5a])({_CH}{{4}})({_SEP})({_CH}{{4}})({_SEP})"
    f"({_CH}{{4}})({_SEP})({_CH}{{4}})(?![A-Za-z0-9\uff10-\uff19\uff21-\uff3a\uff41-\uff5a])"
)
_DASHES = set("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d")
# what a masked code looks like once it is in the tracker
MASKED_CODE_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{4}-\*{4}-\*{4}-[A-Za-z0-9]{4}(?![A-Za-z0-9])")
SEALED_CODES_KEY = "sealed_card_codes"  # message metadata key; the channels own it
SEAL_TTL_SECONDS = 24 * 3600
CARD_CODE_KEY_ENV = "CS_CARD_CODE_KEY"


def _parts(match: re.Match[str]) -> tuple[list[str], list[str]]:
    groups = match.groups()
    return [groups[0], groups[2], groups[4], groups[6]], [groups[1], groups[3], groups[5]]


def _is_code(match: re.Match[str]) -> bool:
    """Dash-separated groups are always a code. Other separators (spaces, dots, none) need a digit in
    every group and a letter somewhere: four English words or a bank card number are not card codes."""
    chunks, separators = _parts(match)
    if all(any(ch in _DASHES for ch in sep) for sep in separators):
        return True
    normal = [unicodedata.normalize("NFKC", chunk) for chunk in chunks]
    return all(any(c.isdigit() for c in chunk) for chunk in normal) and any(
        c.isalpha() for c in "".join(normal)
    )


def _matches(text: str) -> list[re.Match[str]]:
    """Every card code in text, left to right. A rejected candidate ("code K7QM-2XPA-9FTR" in front of
    a real code) only moves the search on by one character, so it cannot hide the code after it."""
    found: list[re.Match[str]] = []
    position = 0
    while True:
        match = CARD_CODE_RE.search(text, position)
        if match is None:
            return found
        if _is_code(match):
            found.append(match)
            position = match.end()
        else:
            position = match.start() + 1


def canonical(match: re.Match[str]) -> str:
    chunks, _ = _parts(match)
    return "-".join(unicodedata.normalize("NFKC", chunk).upper() for chunk in chunks)


def mask(code: str) -> str:
    """K7QM-2XPA-9FTR-4WZD -> K7QM-****-****-4WZD."""
    return f"{code[:4].upper()}-****-****-{code[-4:].upper()}"


def find_card_codes(text: str) -> list[str]:
    """Every full card code in text, canonical (upper case, dashed), in order."""
    return [canonical(m) for m in _matches(text)]


def mask_card_codes(text: str) -> str:
    """Replace the middle of every card code: K7QM-2XPA-9FTR-4WZD -> K7QM-****-****-4WZD."""
    pieces: list[str] = []
    last = 0
    for match in _matches(text):
        pieces += [text[last : match.start()], mask(canonical(match))]
        last = match.end()
    return "".join([*pieces, text[last:]])


@dataclass(frozen=True)
class SealedMessage:
    text: str  # masked
    sealed: list[str]  # one sealed code per code found, in order


class CodeSealer:
    """Seal and unseal full card codes with a key shared by Rasa and the action server."""

    def __init__(self, secret: str) -> None:
        from cryptography.fernet import Fernet

        # any secret string works; Fernet wants 32 url-safe base64 bytes
        key = base64.urlsafe_b64encode(hashlib.sha256(secret.encode("utf-8")).digest())
        self._fernet = Fernet(key)

    def seal(self, code: str) -> str:
        return self._fernet.encrypt(code.encode("ascii")).decode("ascii")

    def unseal(self, token: str, ttl: int = SEAL_TTL_SECONDS, now: float | None = None) -> str | None:
        """The code, or None when the token is forged, corrupt or older than ttl seconds."""
        from cryptography.fernet import InvalidToken

        try:
            raw = token.encode("ascii")
            if now is None:
                return self._fernet.decrypt(raw, ttl=ttl).decode("ascii")
            return self._fernet.decrypt_at_time(raw, ttl=ttl, current_time=int(now)).decode("ascii")
        except (InvalidToken, UnicodeError, ValueError):
            return None

    def seal_message(self, text: str) -> SealedMessage:
        codes = find_card_codes(text)
        if not codes:
            return SealedMessage(text, [])
        return SealedMessage(mask_card_codes(text), [self.seal(code) for code in codes])


def card_code_secret(var_dir: Path) -> str:
    """CS_CARD_CODE_KEY, else a per-install DEMO key generated once under var/secrets/.

    The generated key only works while Rasa and the action server share a disk
    (the run command's single machine); a deployment sets CS_CARD_CODE_KEY.
    """
    from common.settings import load_env_file

    configured = os.environ.get(CARD_CODE_KEY_ENV) or load_env_file().get(CARD_CODE_KEY_ENV)
    if configured:
        return configured
    path = var_dir / "secrets" / "card-code.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        candidate = path.with_suffix(f".{os.getpid()}.tmp")
        candidate.write_text(secrets.token_urlsafe(32), encoding="ascii")
        candidate.chmod(0o600)
        # two processes starting at once: the first link wins, both read the winner
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    return path.read_text(encoding="ascii").strip()


_sealer: CodeSealer | None = None


def default_sealer() -> CodeSealer:
    """The process-wide sealer, created on first use from the environment (no import-time I/O)."""
    global _sealer
    if _sealer is None:
        from common.settings import Settings

        _sealer = CodeSealer(card_code_secret(Settings.from_env().var_dir))
    return _sealer
