"""Telegram channel (replaces Rasa's built-in ``telegram`` at /webhooks/telegram/webhook).

Rasa's own Telegram channel trusts any POST (no webhook secret), calls getMe
on every message, processes an update Telegram retries twice and cuts
nothing to length. This one:

- checks ``X-Telegram-Bot-Api-Secret-Token`` against TELEGRAM_WEBHOOK_SECRET
  (constant-time) before reading anything: wrong or missing -> 403;
- processes each ``update_id`` once (``Deduper``); a failed turn gives the id
  back and answers 503, so Telegram's retry is not lost;
- makes no API call per message beyond sending (and ``answerCallbackQuery``,
  which stops the spinner on a pressed button);
- renders buttons as inline keyboards and handles their callback queries
  (payloads over Telegram's 64-byte ``callback_data`` limit are kept in Redis
  under a short reference);
- splits replies at 4096 UTF-16 code units and honours 429 ``retry_after``.

Webhook registration is a command (``python -m scripts.channels telegram
set-webhook URL``), not something done at every start. The API base URL is
configuration (TELEGRAM_API_URL), which is also how the tests point the
channel at a local server speaking the Bot API.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Text

import aiohttp
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.guard import inspect_message
from bot.channels.messaging import (
    Deduper,
    credential,
    error_response,
    http_session,
    key_prefix,
    non_text_payload,
    report_delivery_failure,
    split_text,
    utf16_len,
)
from bot.channels.outbox import redis_client
from bot.channels.ratelimit import notice, sender_limit
from bot.observability import refused, timed
from common.language import normalise_language
from common.masking import default_sealer

logger = logging.getLogger(__name__)

CHANNEL = "telegram"
SENDER_PREFIX = "tg:"
MAX_BODY_BYTES = 256 * 1024
TEXT_LIMIT_UTF16 = 4096
CALLBACK_DATA_BYTES = 64
CALLBACK_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_API_URL = "https://api.telegram.org"
MAX_RETRY_AFTER_SECONDS = 30.0
SEND_ATTEMPTS = 3
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
NON_TEXT_FIELDS = (
    "photo",
    "voice",
    "audio",
    "video",
    "video_note",
    "document",
    "sticker",
    "location",
    "contact",
)


class TelegramApiError(RuntimeError):
    def __init__(self, code: int | str, description: str) -> None:
        super().__init__(f"{code} {description}")
        self.code = code
        self.description = description


def sender_id_for(chat_id: int) -> str:
    return f"{SENDER_PREFIX}{chat_id}"


def chat_id_of(sender_id: str) -> str:
    return sender_id[len(SENDER_PREFIX) :] if sender_id.startswith(SENDER_PREFIX) else sender_id


class BotApi:
    """Calls of the Telegram Bot API, with 429 retry_after honoured."""

    def __init__(self, api_url: str, bot_token: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.bot_token = bot_token

    async def call(self, method: str, payload: Dict[str, Any]) -> Any:
        url = f"{self.api_url}/bot{self.bot_token}/{method}"
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                async with http_session().post(url, json=payload) as reply:
                    body = await reply.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
                raise TelegramApiError("unreachable", str(error) or type(error).__name__) from error
            if isinstance(body, dict) and body.get("ok"):
                return body.get("result")
            code = body.get("error_code", "error") if isinstance(body, dict) else "error"
            description = str(body.get("description", "")) if isinstance(body, dict) else ""
            retry_after = (
                ((body.get("parameters") or {}).get("retry_after")) if isinstance(body, dict) else None
            )
            if code == 429 and attempt < SEND_ATTEMPTS and isinstance(retry_after, (int, float)):
                wait = min(float(retry_after), MAX_RETRY_AFTER_SECONDS)
                logger.warning("telegram: %s rate-limited, retrying after %.1f s", method, wait)
                await asyncio.sleep(wait)
                continue
            raise TelegramApiError(code, description)
        raise AssertionError("unreachable")  # pragma: no cover


class CallbackPayloads:
    """Button payloads too long for ``callback_data``, kept under a short reference."""

    PREFIX = "ref:"

    def key(self, reference: str) -> str:
        return f"{key_prefix()}:telegram:callback:{reference}"

    async def encode(self, payload: str) -> str:
        if len(payload.encode("utf-8")) <= CALLBACK_DATA_BYTES and not payload.startswith(self.PREFIX):
            return payload
        reference = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]
        await redis_client().set(self.key(reference), payload, ex=CALLBACK_TTL_SECONDS)
        return self.PREFIX + reference

    async def decode(self, data: str) -> Optional[str]:
        if not data.startswith(self.PREFIX):
            return data
        raw = await redis_client().get(self.key(data[len(self.PREFIX) :]))
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)


class TelegramOutput(OutputChannel):
    """Sends a bot message to a chat: split at the limit, buttons as an inline keyboard."""

    @classmethod
    def name(cls) -> Text:
        return CHANNEL

    def __init__(self, api: Optional[BotApi], callbacks: Optional[CallbackPayloads] = None) -> None:
        self.api = api
        self.callbacks = callbacks or CallbackPayloads()

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        text = str(message.get("text") or "")
        buttons = [
            b for b in (message.get("buttons") or message.get("quick_replies") or []) if isinstance(b, dict)
        ]
        try:
            if text.strip() or buttons:
                await self._send_text(recipient_id, text or "…", buttons)
            if message.get("image"):
                await self._call(recipient_id, "sendPhoto", {"photo": str(message["image"])})
            if message.get("attachment"):
                await self._send_text(recipient_id, str(message["attachment"]), [])
        except TelegramApiError as error:
            await report_delivery_failure(recipient_id, CHANNEL, str(error.code), error.description, text)
        except Exception as error:  # noqa: BLE001 - Redis away while keeping a payload, ...
            await report_delivery_failure(recipient_id, CHANNEL, "error", repr(error), text)

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        await self.send_response(recipient_id, {"text": text})

    async def _send_text(self, recipient_id: str, text: str, buttons: List[Dict[str, Any]]) -> None:
        parts = split_text(text, TEXT_LIMIT_UTF16, utf16_len) or ["…"]
        keyboard = await self._keyboard(buttons) if buttons else None
        for index, part in enumerate(parts):
            payload: Dict[str, Any] = {"text": part}
            # the keyboard goes under the last part, where the customer's eyes are
            if keyboard and index == len(parts) - 1:
                payload["reply_markup"] = keyboard
            await self._call(recipient_id, "sendMessage", payload)

    async def _keyboard(self, buttons: List[Dict[str, Any]]) -> Dict[str, Any]:
        rows = []
        for button in buttons:
            title = str(button.get("title") or button.get("payload") or "?")[:64]
            if button.get("url"):
                rows.append([{"text": title, "url": str(button["url"])}])
                continue
            payload = str(button.get("payload") or title)
            rows.append([{"text": title, "callback_data": await self.callbacks.encode(payload)}])
        return {"inline_keyboard": rows}

    async def _call(self, recipient_id: str, method: str, payload: Dict[str, Any]) -> None:
        if self.api is None:
            raise TelegramApiError("not_configured", "TELEGRAM_BOT_TOKEN unset")
        await self.api.call(method, {"chat_id": chat_id_of(recipient_id), **payload})


class TelegramChannel(InputChannel):
    """POST /webhooks/telegram/webhook from Telegram's servers."""

    @classmethod
    def name(cls) -> Text:
        return CHANNEL

    def __init__(
        self,
        bot_token: str,
        webhook_secret: str,
        api_url: str = DEFAULT_API_URL,
        max_message_chars: int = 2000,
    ) -> None:
        self.bot_token = bot_token
        self.webhook_secret = webhook_secret
        self.max_message_chars = max_message_chars
        self.api = BotApi(api_url, bot_token) if bot_token else None
        self.callbacks = CallbackPayloads()
        self.dedupe = Deduper(CHANNEL)
        self._background: Set["asyncio.Future[Any]"] = set()

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = credentials or {}

        def value(name: str, env: str, default: str = "") -> str:
            return credential(credentials, name, env, default)

        return cls(
            bot_token=value("bot_token", "TELEGRAM_BOT_TOKEN"),
            webhook_secret=value("webhook_secret", "TELEGRAM_WEBHOOK_SECRET"),
            api_url=value("api_url", "TELEGRAM_API_URL", DEFAULT_API_URL),
            max_message_chars=int(value("max_message_chars", "MAX_MESSAGE_CHARS", "2000")),
        )

    def get_output_channel(self) -> Optional[OutputChannel]:
        return TelegramOutput(self.api, self.callbacks)

    def _secret_ok(self, request: Request) -> bool:
        given = request.headers.get(SECRET_HEADER) or ""
        return bool(given) and hmac.compare_digest(given.encode(), self.webhook_secret.encode())

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        on_new_message = timed(self.name(), on_new_message)
        webhook = Blueprint("hardened_telegram_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json(
                {"status": "ok" if self.bot_token and self.webhook_secret else "not_configured"}
            )

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if not (self.bot_token and self.webhook_secret):
                return error_response(
                    503, "not_configured", "set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET"
                )
            if not self._secret_ok(request):
                logger.warning("telegram: update with a wrong secret token from %s", request.ip)
                return error_response(403, "invalid_secret", f"{SECRET_HEADER} does not match")
            body = request.body or b""
            if len(body) > MAX_BODY_BYTES:
                return error_response(413, "body_too_large", f"request body over {MAX_BODY_BYTES} bytes")
            try:
                update = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                return error_response(400, "invalid_json", "body must be a JSON update")
            if not isinstance(update, dict) or not _is_int(update.get("update_id")):
                return error_response(400, "invalid_update", "an update needs an integer update_id")
            turn = _read_update(update)
            if isinstance(turn, str):
                return error_response(400, "invalid_update", turn)
            if turn is None:
                return response.json({"ok": True, "ignored": True})
            token = str(update["update_id"])
            if not await self.dedupe.claim(token):
                logger.info("conversation %s: Telegram retry of update %s ignored", turn.sender_id, token)
                return response.json({"ok": True, "duplicate": True})
            verdict = await sender_limit().check(turn.sender_id)
            if not verdict.allowed:
                refused(CHANNEL, "rate_limited")
                if verdict.notify and self.api is not None:
                    # one notice per window, not one per message of a flood
                    text = notice(turn.text, verdict.retry_after, turn.language)
                    await TelegramOutput(self.api, self.callbacks).send_text_message(turn.sender_id, text)
                return response.json({"ok": True, "rate_limited": True})
            # the turn runs on even if this request is cut off (a long 429 wait, Telegram giving up):
            # half a turn is worse than a late one, and its failure must free the update_id
            task = asyncio.create_task(self._run(turn, on_new_message))
            self._keep(task, token)
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("conversation %s: update %s failed", turn.sender_id, token)
                # not 2xx: Telegram delivers the update again
                return error_response(503, "unavailable", "the assistant is unavailable, please retry")
            return response.json({"ok": True})

        return webhook

    def _keep(self, task: "asyncio.Task[Any]", token: str) -> None:
        self._background.add(task)

        def finished(done: "asyncio.Task[Any]") -> None:
            self._background.discard(done)
            if done.cancelled() or done.exception() is not None:
                release = asyncio.ensure_future(self.dedupe.release(token))
                self._background.add(release)
                release.add_done_callback(self._background.discard)

        task.add_done_callback(finished)

    async def _run(self, turn: "Turn", on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        metadata: Dict[str, Any] = {"telegram": {"chat_id": turn.chat_id, "update": turn.kind}}
        if turn.language:
            metadata["language_hint"] = turn.language
        if turn.callback_id and self.api is not None:
            try:
                await self.api.call("answerCallbackQuery", {"callback_query_id": turn.callback_id})
            except TelegramApiError as error:  # an old button: the press still counts
                logger.info("conversation %s: answerCallbackQuery: %s", turn.sender_id, error)
        if turn.kind == "callback":
            payload = await self.callbacks.decode(turn.text)
            if payload is None:
                logger.info("conversation %s: expired button reference %s", turn.sender_id, turn.text)
                return
            # callback_data is whatever the client sends: the same checks as typed text
            inspected = inspect_message(payload, self.max_message_chars, default_sealer(), metadata)
            text, metadata = inspected.text, dict(inspected.metadata)
        elif turn.attachment and turn.attachment.get("caption"):
            # a photo with words: the words are the question, the agent sees both
            inspected = inspect_message(
                turn.attachment["caption"], self.max_message_chars, default_sealer(), metadata
            )
            text, metadata = inspected.text, {**inspected.metadata, "attachment": turn.attachment}
        elif turn.attachment:
            metadata["attachment"] = turn.attachment
            text = non_text_payload(turn.language)
        elif turn.text.strip() == "/start":
            text = f'/greet{{"language": "{turn.language or "en"}"}}'
        else:
            inspected = inspect_message(turn.text, self.max_message_chars, default_sealer(), metadata)
            text, metadata = inspected.text, dict(inspected.metadata)
        await on_new_message(
            UserMessage(
                text,
                TelegramOutput(self.api, self.callbacks),
                turn.sender_id,
                input_channel=CHANNEL,
                metadata=metadata,
            )
        )


class Turn:
    """What one update asks of the assistant."""

    def __init__(
        self,
        chat_id: int,
        kind: str,
        text: str = "",
        language: Optional[str] = None,
        callback_id: Optional[str] = None,
        attachment: Optional[Dict[str, str]] = None,
    ) -> None:
        self.chat_id = chat_id
        self.sender_id = sender_id_for(chat_id)
        self.kind = kind
        self.text = text
        self.language = language
        self.callback_id = callback_id
        self.attachment = attachment


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _language(user: object) -> Optional[str]:
    code = user.get("language_code") if isinstance(user, dict) else None
    if isinstance(code, str) and code.lower().startswith(("zh", "en")):
        return normalise_language(code)
    return None


def _read_update(update: Dict[str, Any]) -> "Turn | str | None":
    """A Turn, an error message for a malformed update, or None for updates that need no turn."""
    callback = update.get("callback_query")
    if isinstance(callback, dict):
        message = callback.get("message")
        chat = message.get("chat") if isinstance(message, dict) else None
        chat_id = chat.get("id") if isinstance(chat, dict) else None
        data = callback.get("data")
        if not _is_int(chat_id) or not isinstance(data, str) or not isinstance(callback.get("id"), str):
            return "callback_query without id, data or message.chat.id"
        return Turn(chat_id, "callback", data, _language(callback.get("from")), callback_id=callback["id"])
    message = update.get("message")
    if message is None:
        # edited messages, channel posts, member updates: nothing to answer
        return None
    if not isinstance(message, dict):
        return "message must be an object"
    chat = message.get("chat")
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    if not _is_int(chat_id):
        return "message.chat.id must be an integer"
    language = _language(message.get("from"))
    text = message.get("text")
    if isinstance(text, str):
        return Turn(chat_id, "message", text, language)
    if text is not None:
        return "message.text must be a string"
    for name in NON_TEXT_FIELDS:
        if name in message:
            attachment = {"type": name}
            caption = message.get("caption")
            if isinstance(caption, str) and caption:
                attachment["caption"] = caption[:500]
            return Turn(chat_id, "message", "", language, attachment=attachment)
    return None
