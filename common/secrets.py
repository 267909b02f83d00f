"""Secrets shared by the processes: demo values generated under var/secrets/, and their checks.

A deployment sets every secret in the environment (or .env.local). Left unset, the
run command's processes share a per-install DEMO value generated once into
``var/secrets/<name>``: good on one machine, and the run command refuses to
bind anything but loopback while one is in use (scripts/stack.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


def demo_secret(var_dir: Path, filename: str) -> str:
    """The DEMO secret ``var/secrets/<filename>``, created (0600) on first use.

    Two processes starting at once: the first link wins and both read the winner.
    """
    path = var_dir / "secrets" / filename
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        candidate = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        candidate.write_text(secrets.token_urlsafe(32), encoding="ascii")
        candidate.chmod(0o600)
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    return path.read_text(encoding="ascii").strip()


def bearer_matches(header: str | None, expected: str) -> bool:
    """``Authorization: Bearer <expected>``, compared in constant time; an empty secret matches nothing."""
    if not expected or not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8", "replace"), expected.encode("utf-8"))


def conversation_secret(key: str, conversation_id: str) -> str:
    """The secret the server issues with a conversation id: an HMAC of the id.

    Stateless, so every replica of Rasa and the web service checks it without a
    lookup; only holders of CS_CONVERSATION_KEY can make one.
    """
    if not key:
        raise ValueError("CS_CONVERSATION_KEY is not set")
    digest = hmac.new(key.encode("utf-8"), b"conversation:" + conversation_id.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()


def conversation_secret_ok(key: str, conversation_id: str, secret: object) -> bool:
    """Whether ``secret`` is the one issued with ``conversation_id`` (constant time)."""
    if not key or not isinstance(secret, str) or len(secret) != 64:
        return False
    return hmac.compare_digest(conversation_secret(key, conversation_id), secret)


def parse_clients(text: str) -> dict[str, str]:
    """``name=token,name2=token2`` (CS_REST_CLIENTS) -> {token: name}."""
    clients: dict[str, str] = {}
    for item in text.split(","):
        name, sep, token = item.strip().partition("=")
        if not sep:
            continue
        name, token = name.strip(), token.strip()
        if not name or len(token) < 16:
            raise ValueError(f"CS_REST_CLIENTS: client {name!r} needs a token of at least 16 characters")
        clients[token] = name
    return clients


def client_for(header: str | None, clients: dict[str, str]) -> str | None:
    """The REST client a ``Bearer`` header names, or None (constant time per known token)."""
    found = None
    for token, name in clients.items():
        if bearer_matches(header, token):
            found = name
    return found


def address_tag(key: str, address: str) -> str:
    """A client address as the trackers keep it: a keyed hash, enough to count attempts, not an IP."""
    digest = hmac.new(key.encode("utf-8"), b"address:" + address.encode("utf-8", "replace"), hashlib.sha256)
    return digest.hexdigest()[:20]
