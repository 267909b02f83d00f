"""Socket.IO channel for the web widget, with session persistence.

Stock ``SocketIOInput`` forwards any payload as is. This one applies the same
input checks as the REST channel, validates the session id the browser keeps
(it names the conversation, so it must be a safe Redis key suffix), and
always persists sessions so a page reload continues the same conversation.

An id alone is no credential: a new session gets an id and a secret (an HMAC
of the id, common/secrets.py) in a ``session_secret`` event before
``session_confirm``; rejoining an id needs its secret, otherwise the socket
gets a new conversation. A socket writes only into the session it joined.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import uuid
from typing import Any, Awaitable, Callable, Dict, Optional, Text
from urllib.parse import quote

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.socketio import SocketBlueprint, SocketIOInput, SocketIOOutput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from socketio import AsyncRedisManager, AsyncServer

from bot.channels.guard import CLIENT_ADDRESS_KEY, inspect_message, valid_sender_id
from bot.channels.ratelimit import notice, sender_limit
from bot.observability import refused, timed
from common.masking import default_sealer
from common.secrets import address_tag, conversation_secret, conversation_secret_ok
from common.settings import Settings

logger = logging.getLogger(__name__)


def allowed_origins() -> list[str]:
    """CS_ALLOWED_ORIGINS, comma separated (the run command always sets it)."""
    return [o.strip().rstrip("/") for o in os.environ.get("CS_ALLOWED_ORIGINS", "").split(",") if o.strip()]


def client_address(environ: Dict[str, Any]) -> str:
    """The customer's address: the peer, or what a proxy on loopback (nginx of run-replicas) forwarded."""
    peer = str(environ.get("REMOTE_ADDR") or "")
    forwarded = str(environ.get("HTTP_X_FORWARDED_FOR") or "")
    if forwarded and (peer.startswith("127.") or peer == "::1"):
        return forwarded.split(",")[-1].strip()[:64]
    return peer[:64] or "unknown"


def shared_manager() -> Optional[AsyncRedisManager]:
    """With CS_SOCKETIO_REDIS=1 every emit goes through Redis pub/sub to the replica holding the socket.

    Behind a load balancer an agent line posted through the tracker API lands on any Rasa
    replica, but the customer's socket lives on one; without this the line is stored and
    never shown. Off for a single Rasa (one process needs no detour through Redis).
    """
    if os.environ.get("CS_SOCKETIO_REDIS", "0").lower() not in ("1", "true", "yes"):
        return None
    host = os.environ.get("REDIS_HOST", "127.0.0.1")
    port = os.environ.get("REDIS_PORT", "6379")
    db = os.environ.get("REDIS_DB", "0")
    password = os.environ.get("REDIS_PASSWORD", "")
    auth = f":{quote(password, safe='')}@" if password else ""
    prefix = os.environ.get("CS_KEY_PREFIX", "cs")
    # connects on first use, not here
    return AsyncRedisManager(f"redis://{auth}{host}:{port}/{db}", channel=f"{prefix}:socketio")


class WidgetOutput(SocketIOOutput):
    """Stock socket.io output, plus who is speaking: ``agent`` on the lines a person wrote.

    Agent lines reach Rasa as bot events with ``metadata.agent`` (handoff/rasa_api.py); Rasa
    hands that metadata to the output channel, which stock drops. The widget uses it to label
    the line and to stop showing "the assistant is typing" while a person holds the chat.
    """

    _agent: Optional[str] = None

    async def _send_message(self, socket_id: Text, response: Any) -> None:
        if self._agent and isinstance(response, dict):
            response = {**response, "agent": self._agent}
        await super()._send_message(socket_id, response)

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        # one output object per turn or API call, used one message at a time
        self._agent = str(kwargs["agent"]) if kwargs.get("agent") else None
        try:
            await super().send_text_message(recipient_id, text, **kwargs)
        finally:
            self._agent = None

    async def send_text_with_buttons(
        self, recipient_id: Text, text: Text, buttons: Any, **kwargs: Any
    ) -> None:
        self._agent = str(kwargs["agent"]) if kwargs.get("agent") else None
        try:
            await super().send_text_with_buttons(recipient_id, text, buttons, **kwargs)
        finally:
            self._agent = None


class WidgetSocketChannel(SocketIOInput):
    """The channel behind the web chat widget (``name() == "socketio"``)."""

    @classmethod
    def name(cls) -> Text:
        return "socketio"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = credentials or {}
        channel = cls(
            credentials.get("user_message_evt", "user_uttered"),
            credentials.get("bot_message_evt", "bot_uttered"),
            credentials.get("namespace"),
            True,
            credentials.get("socketio_path", "/socket.io"),
        )
        default = int(os.environ.get("MAX_MESSAGE_CHARS", "2000"))
        channel.max_message_chars = int(credentials.get("max_message_chars") or default)
        return channel

    max_message_chars: int = 2000

    def get_output_channel(self) -> Optional[OutputChannel]:
        # what Rasa's tracker events API (output_channel=latest) sends agent lines through
        if self.sio is None:
            return None
        return WidgetOutput(self.sio, self.bot_message_evt)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        on_new_message = timed(self.name(), on_new_message)
        # cors_allowed_origins=[]: engine.io adds no CORS headers of its own (Rasa's --cors adds
        # them to polling responses; both would make two Access-Control-Allow-Origin headers,
        # which browsers refuse). The Origin check is done in connect() instead.
        sio = AsyncServer(async_mode="sanic", cors_allowed_origins=[], client_manager=shared_manager())
        origins = allowed_origins()
        key = Settings.from_env().conversation_key
        socketio_webhook = SocketBlueprint(sio, self.socketio_path, "socketio_webhook", __name__)
        self.sio = sio

        @socketio_webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @sio.on("connect", namespace=self.namespace)
        async def connect(sid: Text, environ: Dict, auth: Optional[Dict]) -> bool:
            # Browsers do not apply CORS to websockets: this check is what stops another site's
            # page from opening a customer's conversation. Clients without an Origin header
            # (curl, the Python client) are not browsers and cannot be fooled into sending one.
            origin = environ.get("HTTP_ORIGIN")
            if origin and origin.rstrip("/") not in origins:
                logger.warning("socket %s refused: origin %r is not in CS_ALLOWED_ORIGINS", sid, origin)
                return False
            address = address_tag(key, client_address(environ))
            await sio.save_session(sid, {"address": address}, namespace=self.namespace)
            return True

        @sio.on("session_request", namespace=self.namespace)
        async def session_request(sid: Text, data: Any) -> None:
            requested = data.get("session_id") if isinstance(data, dict) else None
            secret = data.get("session_secret") if isinstance(data, dict) else None
            if valid_sender_id(requested) and conversation_secret_ok(key, str(requested), secret):
                session_id = str(requested)
            else:
                session_id = uuid.uuid4().hex
                if requested:
                    logger.warning("socket %s asked for a session without its secret; issued a new one", sid)
            state = await sio.get_session(sid, namespace=self.namespace)
            await sio.save_session(sid, {**state, "session_id": session_id}, namespace=self.namespace)
            # python-socketio >= 5.12 made enter_room a coroutine; stock Rasa 3.6 does not
            # await it, so its replies never reach the room. Support both.
            joined = sio.enter_room(sid, session_id)
            if inspect.isawaitable(joined):
                await joined
            # the secret first: the widget keeps it with the id and shows it to fetch the history
            await sio.emit(
                "session_secret",
                {"session_id": session_id, "secret": conversation_secret(key, session_id)},
                room=sid,
            )
            await sio.emit("session_confirm", session_id, room=sid)

        @sio.on(self.user_message_evt, namespace=self.namespace)
        async def handle_message(sid: Text, data: Any) -> None:
            state = await sio.get_session(sid, namespace=self.namespace)
            joined = state.get("session_id")
            # only into the conversation this socket joined with its secret
            if not isinstance(data, dict) or joined is None or data.get("session_id") != joined:
                logger.warning("socket %s sent a message outside the session it joined", sid)
                await sio.emit(
                    "error_message",
                    {"error": "invalid_session", "message": "send session_request first"},
                    room=sid,
                )
                return
            session_id: str = data["session_id"]
            verdict = await sender_limit().check(session_id)
            if not verdict.allowed:
                refused(self.name(), "rate_limited")
                # said to this socket only, every time: the widget shows why nothing else came
                await sio.emit(
                    self.bot_message_evt,
                    {"text": notice(data.get("message"), verdict.retry_after), "rate_limited": True},
                    room=sid,
                )
                return
            metadata = data.get(self.metadata_key) or {}
            if isinstance(metadata, str):
                try:
                    metadata = json.loads(metadata)
                except ValueError:
                    metadata = {}
            if not isinstance(metadata, dict):
                metadata = {}
            inspected = inspect_message(
                data.get("message"), self.max_message_chars, default_sealer(), metadata
            )
            metadata = {**inspected.metadata, CLIENT_ADDRESS_KEY: state.get("address", "unknown")}
            output = WidgetOutput(sio, self.bot_message_evt)
            try:
                await on_new_message(
                    UserMessage(
                        inspected.text,
                        output,
                        session_id,
                        input_channel=self.name(),
                        metadata=metadata or None,
                    )
                )
            except Exception:
                logger.exception("conversation %s: message processing failed", session_id)
                await sio.emit(
                    "error_message",
                    {"error": "unavailable", "message": "the assistant is unavailable, please retry"},
                    room=session_id,
                )

        return socketio_webhook
