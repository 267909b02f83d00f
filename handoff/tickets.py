"""Tickets: the message a customer leaves when no agent is on duty.

The entrance never closes: when nobody is online the customer can leave a
message and a way to reach them; it shows up in the console's Tickets tab and
an agent answers it later. The reply goes into ``{prefix}:handoff:ticket-outbox``,
which stands for the mail/SMS sender like the shop's outbox does.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    conversation_id: str
    language: str
    contact: str
    message: str
    created: str
    state: str = "open"  # open | answered | closed
    reply: str | None = None
    agent: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


class TicketNotFound(KeyError):
    pass


class TicketClosed(Exception):
    """Already answered or closed."""


@dataclass
class TicketBook:
    # redis.asyncio.Redis with decode_responses=True; its stubs cannot express str replies
    client: Any
    prefix: str

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, "handoff", *parts))

    async def create(self, conversation_id: str, language: str, contact: str, message: str) -> Ticket:
        ticket = Ticket(
            ticket_id="T" + secrets.token_hex(4).upper(),
            conversation_id=conversation_id,
            language=language,
            contact=contact[:254],
            message=message[:4000],
            created=datetime.now(timezone.utc).isoformat(),
        )
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key("tickets"), ticket.ticket_id, ticket.to_json())
            pipe.zadd(self.key("ticket-order"), {ticket.ticket_id: datetime.now(timezone.utc).timestamp()})
            await pipe.execute()
        logger.info("conversation %s: ticket %s left", conversation_id, ticket.ticket_id)
        return ticket

    async def get(self, ticket_id: str) -> Ticket:
        raw = await self.client.hget(self.key("tickets"), ticket_id)
        if raw is None:
            raise TicketNotFound(ticket_id)
        return Ticket(**json.loads(raw))

    async def all(self) -> list[Ticket]:
        ids = await self.client.zrevrange(self.key("ticket-order"), 0, 499)
        raws = await self.client.hmget(self.key("tickets"), ids) if ids else []
        return [Ticket(**json.loads(raw)) for raw in raws if raw]

    async def answer(self, ticket_id: str, agent: str, reply: str) -> Ticket:
        current = await self.get(ticket_id)
        if current.state != "open":
            # a second click or a second agent must not mail the customer twice
            raise TicketClosed(ticket_id)
        ticket = replace(current, state="answered", reply=reply[:4000], agent=agent)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key("tickets"), ticket_id, ticket.to_json())
            pipe.rpush(
                self.key("ticket-outbox"),
                json.dumps({"to": ticket.contact, "ticket": ticket_id, "text": reply}, ensure_ascii=False),
            )
            await pipe.execute()
        logger.info("ticket %s answered by %s", ticket_id, agent)
        return ticket

    async def close(self, ticket_id: str, agent: str) -> Ticket:
        ticket = replace(await self.get(ticket_id), state="closed", agent=agent)
        await self.client.hset(self.key("tickets"), ticket_id, ticket.to_json())
        return ticket
