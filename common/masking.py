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
from dataclasses import dataclass
from pathlib import Path

# XXXX-XXXX-XXXX-XXXX; customers also type spaces or nothing between the groups
CARD_CODE_RE = re.compile(
    r"(?<![A-Za-z0-9*])([A-Za-z0-9]{4})([- ]?)"
    r"([A-Za-z0-9]{4})\2([A-Za-z0-9]{4})\2([A-Za-z0-9]{4})(?![A-Za-z0-9*])"
)
# what a masked code looks like once it is in the tracker
MASKED_CODE_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{4}-\*{4}-\*{4}-[A-Za-z0-9]{4}(?![A-Za-z0-9])")
SEALED_CODES_KEY = "sealed_card_codes"  # message metadata key; the channels own it
SEAL_TTL_SECONDS = 24 * 3600
CARD_CODE_KEY_ENV = "CS_CARD_CODE_KEY"


def _is_code(groups: tuple[str, ...]) -> bool:
    """Dashed groups are always a code; a bare 16-character run must mix letters and digits."""
    joined = "".join(groups[0:1] + groups[2:])
    if groups[1] == "-":
        return True
    return any(c.isdigit() for c in joined) and any(c.isalpha() for c in joined)


def canonical(groups: tuple[str, ...]) -> str:
    return "-".join(g.upper() for g in (groups[0], groups[2], groups[3], groups[4]))


def mask(code: str) -> str:
    """K7QM-2XPA-9FTR-4WZD -> K7QM-****-****-4WZD."""
    return f"{code[:4].upper()}-****-****-{code[-4:].upper()}"


def find_card_codes(text: str) -> list[str]:
    """Every full card code in text, canonical (upper case, dashed), in order."""
    return [canonical(m.groups()) for m in CARD_CODE_RE.finditer(text) if _is_code(m.groups())]


def mask_card_codes(text: str) -> str:
    """Replace the middle of every card code: K7QM-2XPA-9FTR-4WZD -> K7QM-****-****-4WZD."""

    def replace(match: re.Match[str]) -> str:
        if not _is_code(match.groups()):
            return match.group(0)
        return mask(canonical(match.groups()))

    return CARD_CODE_RE.sub(replace, text)


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
