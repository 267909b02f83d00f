"""Agents, passwords and console sessions.

Passwords are hashed with scrypt (standard library) and a per-agent salt;
sessions are random tokens in Redis with a TTL, carried in an HttpOnly,
SameSite=Strict cookie, plus a CSRF token the console sends as a header on
every state-changing request. Repeated failed logins lock that name for the
address they came from (and an address that tries many names), never the name
everywhere: a stranger cannot lock a named agent out. A session is checked
against the agent's current record on every use: a changed password ends it,
a changed role applies at once.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

logger = logging.getLogger(__name__)

SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
MAX_FAILURES = 5  # per agent name and client address
MAX_ADDRESS_FAILURES = 20  # per client address, whatever the names
LOCKOUT_SECONDS = 15 * 60


class Role(str, Enum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class Agent:
    name: str
    role: Role
    password_hash: str

    def to_json(self) -> str:
        data = asdict(self)
        data["role"] = self.role.value
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str) -> Agent:
        data = json.loads(raw)
        return cls(name=data["name"], role=Role(data["role"]), password_hash=data["password_hash"])


@dataclass(frozen=True)
class Session:
    token: str
    agent: str
    role: Role
    csrf: str


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = hash_password(password, base64.b64decode(salt_b64)).split("$")[2]
    return hmac.compare_digest(expected, digest_b64)


class LockedOut(Exception):
    pass


@dataclass
class AgentDirectory:
    # redis.asyncio.Redis with decode_responses=True; its stubs cannot express str replies
    client: Any
    prefix: str
    session_ttl_seconds: int = 8 * 3600

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, "handoff", *parts))

    async def add(self, name: str, password: str, role: Role) -> Agent:
        if not name or len(name) > 64 or not all(c.isalnum() or c in "._-" for c in name):
            raise ValueError("agent names are 1-64 letters, digits, '.', '_' or '-'")
        if len(password) < 8:
            raise ValueError("passwords need at least 8 characters")
        agent = Agent(name=name, role=role, password_hash=hash_password(password))
        await self.client.hset(self.key("agents"), name, agent.to_json())
        return agent

    async def remove(self, name: str) -> bool:
        return bool(await self.client.hdel(self.key("agents"), name))

    async def get(self, name: str) -> Agent | None:
        raw = await self.client.hget(self.key("agents"), name)
        return Agent.from_json(raw) if raw else None

    async def all(self) -> list[Agent]:
        return [Agent.from_json(raw) for raw in (await self.client.hgetall(self.key("agents"))).values()]

    async def login(self, name: str, password: str, client: str = "unknown") -> Session | None:
        """Check a login from ``client`` (the peer's address); LockedOut after too many failures from it."""
        failures_key = self.key("login-failures", client[:64], name[:64])
        address_key = self.key("login-failures-address", client[:64])
        # count the attempt before checking it, so parallel guesses cannot all slip under the limit;
        # the window starts at the first failure and is not extended by later ones
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(failures_key)
            pipe.expire(failures_key, LOCKOUT_SECONDS, nx=True)
            pipe.incr(address_key)
            pipe.expire(address_key, LOCKOUT_SECONDS, nx=True)
            attempts, _, address_attempts, _ = await pipe.execute()
        if int(attempts) > MAX_FAILURES or int(address_attempts) > MAX_ADDRESS_FAILURES:
            raise LockedOut(name)
        agent = await self.get(name)
        # scrypt is deliberately slow: keep it off the event loop. Unknown names are checked
        # against a dummy hash so timing does not reveal who exists.
        stored = agent.password_hash if agent else _dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, stored)
        if not ok or agent is None:
            logger.warning("failed console login for %r", name[:64])
            return None
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(failures_key)
            pipe.decr(address_key)  # a good login does not count against its address
            await pipe.execute()
        session = Session(
            token=secrets.token_urlsafe(32), agent=agent.name, role=agent.role, csrf=secrets.token_urlsafe(24)
        )
        await self.client.set(
            self.key("session", session.token),
            json.dumps(
                {
                    "agent": session.agent,
                    "csrf": session.csrf,
                    "password": password_fingerprint(agent.password_hash),
                }
            ),
            ex=self.session_ttl_seconds,
        )
        logger.info("agent %s logged in", agent.name)
        return session

    async def session(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        raw = await self.client.get(self.key("session", token))
        if raw is None:
            return None
        data = json.loads(raw)
        agent = await self.get(data["agent"])
        # removed since, or the password changed (the usual answer to a leaked one): the session ends
        if agent is None or not hmac.compare_digest(
            str(data.get("password", "")), password_fingerprint(agent.password_hash)
        ):
            await self.client.delete(self.key("session", token))
            return None
        # the role is the agent's current one: a demoted supervisor is an agent from the next request on
        return Session(token=token, agent=agent.name, role=agent.role, csrf=data["csrf"])

    async def logout(self, token: str) -> None:
        await self.client.delete(self.key("session", token))


def password_fingerprint(password_hash: str) -> str:
    """What a session remembers of the password it was opened with (not the hash itself)."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:32]


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password("not-a-real-password")
