"""Hardened REST channel (replaces Rasa's built-in ``rest`` at the same URL).

Differences from stock Rasa, each answering a measured problem:
- a request without a valid ``sender`` is rejected with 400 instead of joining
  the shared "default" conversation where customers read each other's replies;
- invalid JSON, a non-object body or a non-string message get a 400 with a
  machine-readable error, never a stack trace;
- empty and over-long messages get an answer in the customer's language
  (see ``guard``);
- a sender over the rate limit (bot/channels/ratelimit.py) gets 429 with
  Retry-After and a polite line in their language; Rasa never sees the flood;
- a failure while processing returns 503 instead of an empty 200, so a client
  knows to retry (the Redis lock store keeps retries in order);
- agents' lines and queue updates, which arrive between requests, are parked
  (bot/channels/outbox.py) and delivered with the next reply or by polling
  GET /webhooks/rest/messages?sender=...;
- every request authenticates as a client (``Authorization: Bearer <token>`` of
  CS_REST_CLIENTS, else 401), and a conversation belongs to the client that
  started it: another client's request for it is a 403 (issue 23: a sender id
  alone let anyone write into a conversation and take its agent's lines).
"""

from __future__ import annotations

import json
import logging
import os
from asyncio import CancelledError
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.guard import CLIENT_ADDRESS_KEY, inspect_message, valid_sender_id
from bot.channels.messaging import error_response
from bot.channels.outbox import OUTBOX_TTL_SECONDS, RedisOutbox, drain, redis_client, restore
from bot.channels.ratelimit import notice, sender_limit
from bot.observability import refused, timed
from common.masking import default_sealer
from common.secrets import client_for
from common.settings import Settings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
INVALID_SENDER = "'sender' must be 1-128 characters of A-Z a-z 0-9 _ . : @ - (not starting wx: or tg:)"


class RestChannel(InputChannel):
    """POST /webhooks/rest/webhook with {"sender": ..., "message": ...}."""

    @classmethod
    def name(cls) -> Text:
        return "rest"

    def __init__(self, max_message_chars: int = 2000, clients: Optional[Dict[str, str]] = None) -> None:
        self.max_message_chars = max_message_chars
        # {token: client name}; none configured means no request gets in
        self.clients = clients if clients is not None else Settings.from_env().rest_clients

    async def _owner_check(self, request: Request, sender: str) -> HTTPResponse | str:
        """The client this request authenticates as, if it may use ``sender``; else the refusal."""
        client = client_for(request.headers.get("authorization"), self.clients)
        if client is None:
            return error_response(401, "unauthorized", "send Authorization: Bearer <your REST client token>")
        key = f"{os.environ.get('CS_KEY_PREFIX', 'cs')}:rest:client:{sender}"
        try:
            # two single commands, not a MULTI: redis-py 4.6 retries a command on a connection a
            # Redis restart broke, never a pipeline; SET NX then GET reads whoever claimed it first
            await redis_client().set(key, client, nx=True, ex=OUTBOX_TTL_SECONDS * 5)
            owner = await redis_client().get(key)
        except Exception as error:  # noqa: BLE001 - without Redis there is no conversation to protect
            logger.warning("conversation %s: REST owner unknown: %s", sender, error)
            return error_response(503, "unavailable", "the assistant is unavailable, please retry")
        owner_name = owner.decode() if isinstance(owner, bytes) else str(owner)
        if owner_name != client:
            logger.warning("conversation %s: REST client %s refused, it belongs to another", sender, client)
            return error_response(403, "forbidden", "this conversation belongs to another client")
        return client

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = credentials or {}
        default = int(os.environ.get("MAX_MESSAGE_CHARS", "2000"))
        return cls(int(credentials.get("max_message_chars") or default))

    def _parse(self, request: Request) -> Dict[Text, Any] | HTTPResponse:
        body = request.body or b""
        if len(body) > MAX_BODY_BYTES:
            return error_response(413, "body_too_large", f"request body over {MAX_BODY_BYTES} bytes")
        try:
            payload = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: 5,000-deep JSON
            return error_response(400, "invalid_json", "request body must be a JSON object")
        if not isinstance(payload, dict):
            return error_response(400, "invalid_json", "request body must be a JSON object")
        sender = payload.get("sender")
        if sender is None:
            return error_response(400, "missing_sender", "'sender' is required: one id per customer")
        if not valid_sender_id(sender):
            return error_response(400, "invalid_sender", INVALID_SENDER)
        message = payload.get("message")
        if message is not None and not isinstance(message, str):
            return error_response(400, "invalid_message", "'message' must be a string")
        metadata = payload.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            return error_response(400, "invalid_metadata", "'metadata' must be an object")
        return payload

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        on_new_message = timed(self.name(), on_new_message)
        webhook = Blueprint("hardened_rest_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            parsed = self._parse(request)
            if isinstance(parsed, HTTPResponse):
                return parsed
            sender_id: str = parsed["sender"]
            client = await self._owner_check(request, sender_id)
            if isinstance(client, HTTPResponse):
                return client
            verdict = await sender_limit().check(sender_id)
            if not verdict.allowed:
                refused(self.name(), "rate_limited")
                refusal = error_response(
                    429, "rate_limited", notice(parsed.get("message"), verdict.retry_after)
                )
                refusal.headers["Retry-After"] = str(verdict.retry_after)
                return refusal
            inspected = inspect_message(
                parsed.get("message"), self.max_message_chars, default_sealer(), parsed.get("metadata")
            )
            # ownership proofs are counted per client address (actions/orders.py); for REST the client
            metadata = {**inspected.metadata, CLIENT_ADDRESS_KEY: f"rest:{client}"}
            if inspected.rejected:
                logger.info(
                    "conversation %s: %s message answered with a prompt", sender_id, inspected.rejected
                )
            # what agents or the queue said since the last request comes first; what arrives
            # while this turn runs waits for the next request, so replies never interleave
            earlier = await drain(sender_id)
            collector = CollectingOutputChannel()
            try:
                await on_new_message(
                    UserMessage(
                        inspected.text,
                        collector,
                        sender_id,
                        input_channel=self.name(),
                        metadata=metadata or None,
                    )
                )
            except CancelledError:
                logger.error("conversation %s: message timed out", sender_id)
                await restore(sender_id, earlier)
                return error_response(503, "timeout", "the assistant did not answer in time, please retry")
            except Exception:
                logger.exception("conversation %s: message processing failed", sender_id)
                await restore(sender_id, earlier)
                return error_response(503, "unavailable", "the assistant is unavailable, please retry")
            return response.json([*earlier, *collector.messages])

        @webhook.route("/messages", methods=["GET"])
        async def pending(request: Request) -> HTTPResponse:
            sender = request.args.get("sender")
            if not valid_sender_id(sender):
                return error_response(400, "invalid_sender", INVALID_SENDER)
            client = await self._owner_check(request, str(sender))
            if isinstance(client, HTTPResponse):
                return client
            return response.json(await drain(str(sender)))

        return webhook

    def get_output_channel(self) -> Optional[OutputChannel]:
        """Where Rasa puts messages sent to a REST conversation from outside a request."""
        return RedisOutbox()
