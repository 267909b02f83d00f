"""WeChat Official Account channel (a Rasa custom channel at /webhooks/wechat/webhook).

Rasa has no WeChat channel. This one follows the platform's rules:

- GET with ``signature``/``timestamp``/``nonce``/``echostr`` is the server
  verification: the signature over the token proves the caller is WeChat.
  Every POST is checked the same way before anything is read; a wrong
  signature is a 403 and nothing reaches Rasa.
- Plain and safe (AES) mode: wechatpy checks signatures, decrypts, parses and
  renders the XML; the body size is limited before that.
- WeChat gives a webhook five seconds and retries three times. The same MsgId
  (events: FromUserName + CreateTime) is processed once (``Deduper``). A turn
  finished within ``reply_deadline`` (4.5 s) is answered passively in the HTTP
  reply; a slower one is answered "success" at once and its messages follow
  through the customer-service message API, in order.
- access_token lives in Redis with one refresher across processes: fetching a
  token invalidates the previous one, so two processes refreshing at once
  would knock each other's token out.
- Replies over WeChat's 2048-byte limit are split; buttons become numbered
  lines the customer answers with a digit.
- Images, voice (without WeChat's own speech recognition), video, location,
  links and files become ``/empty_message`` with the attachment in the
  metadata: the bot asks for text, an agent holding the conversation sees
  what arrived.

Agent lines and queue updates reach WeChat customers through
``get_output_channel`` (Rasa's tracker events API with output_channel=latest);
a refusal (48-hour window over, token invalid) is logged and reported to the
agent (``report_delivery_failure``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Text, Tuple

import aiohttp
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.guard import inspect_message
from bot.channels.messaging import (
    Deduper,
    LanguageMemory,
    credential,
    error_response,
    http_session,
    key_prefix,
    non_text_payload,
    numbered_choices,
    report_delivery_failure,
    split_text,
    utf8_len,
)
from bot.channels.outbox import redis_client
from bot.channels.ratelimit import notice, sender_limit
from bot.observability import refused, timed
from common.language import detect_language, normalise_language
from common.masking import default_sealer

logger = logging.getLogger(__name__)

CHANNEL = "wechat"
SENDER_PREFIX = "wx:"
MAX_BODY_BYTES = 64 * 1024
# WeChat's text limit is 2048 bytes (passive replies and the customer-service API); keep a margin
TEXT_LIMIT_BYTES = 2000
DEFAULT_API_URL = "https://api.weixin.qq.com"
# errcodes after which a fresh access_token may help
TOKEN_ERRORS = {40001, 40014, 42001}
CHOICES_TTL_SECONDS = 24 * 3600
# how long one process may hold the token refresh; the token call itself times out sooner
LOCK_MS = 10_000
TOKEN_TIMEOUT = aiohttp.ClientTimeout(total=5)
_OPENID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_RATING = re.compile(r'/rate\{"rating":\s*"?([1-5])"?\}')
_CHOICE = re.compile(r"\s*([1-9][0-9]?)\s*[.。、]?\s*")
# a bot text must not end the CDATA section of the passive reply
_CDATA_END = "]]>"

NON_TEXT_KINDS = {"image", "voice", "video", "shortvideo", "location", "link", "file"}

CHOICE_HINT = {"zh": "（回复数字即可选择）", "en": "(Reply with a number to choose.)"}
APOLOGY = {
    "zh": "抱歉，刚才没能处理您的消息，请稍后再发一次。",
    "en": "Sorry, your message could not be processed just now. Please send it again in a moment.",
}


class WeChatApiError(RuntimeError):
    """WeChat's API answered with a non-zero errcode (or not at all)."""

    def __init__(self, code: int | str, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def sender_id_for(openid: str) -> str:
    return SENDER_PREFIX + openid


def openid_of(sender_id: str) -> str:
    return sender_id[len(SENDER_PREFIX) :] if sender_id.startswith(SENDER_PREFIX) else sender_id


# -- the API ------------------------------------------------------------------------


# KEYS: key; ARGV: expected value. Deletes only what the caller owns.
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class AccessTokens:
    """access_token in Redis, refreshed by one process at a time."""

    def __init__(
        self, api_url: str, app_id: str, app_secret: str, wait_seconds: float = LOCK_MS / 1000 + 2
    ) -> None:
        self.api_url = api_url
        self.app_id = app_id
        self.app_secret = app_secret
        self.wait_seconds = wait_seconds

    @property
    def key(self) -> str:
        return f"{key_prefix()}:wechat:{self.app_id}:access_token"

    async def get(self) -> str:
        client = redis_client()
        deadline = time.monotonic() + self.wait_seconds
        owner = uuid.uuid4().hex
        while True:
            cached = await client.get(self.key)
            if cached:
                return cached.decode() if isinstance(cached, bytes) else str(cached)
            if await client.set(self.key + ":refreshing", owner, nx=True, px=LOCK_MS):
                try:
                    # another process may have finished a refresh between our GET and our SET
                    cached = await client.get(self.key)
                    if cached:
                        return cached.decode() if isinstance(cached, bytes) else str(cached)
                    token, expires_in = await self._fetch()
                    # refresh a little early; WeChat keeps the old token valid 5 minutes after a refresh
                    await client.set(self.key, token, ex=max(60, expires_in - 300))
                    logger.info("wechat: new access_token for app %s (valid %d s)", self.app_id, expires_in)
                    return token
                finally:
                    await client.eval(_DELETE_IF, 1, self.key + ":refreshing", owner)
            if time.monotonic() > deadline:
                raise WeChatApiError("token_timeout", "another process is refreshing the access_token")
            await asyncio.sleep(0.1)

    async def invalidate(self, token: str) -> None:
        """Forget ``token`` unless another process already replaced it."""
        await redis_client().eval(_DELETE_IF, 1, self.key, token)

    async def _fetch(self) -> Tuple[str, int]:
        params = {"grant_type": "client_credential", "appid": self.app_id, "secret": self.app_secret}
        try:
            async with http_session().get(
                f"{self.api_url}/cgi-bin/token", params=params, timeout=TOKEN_TIMEOUT
            ) as reply:
                body = await reply.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
            raise WeChatApiError("unreachable", f"token endpoint: {error}") from error
        if not isinstance(body, dict) or not body.get("access_token"):
            code = body.get("errcode", "no_token") if isinstance(body, dict) else "no_token"
            message = body.get("errmsg", "") if isinstance(body, dict) else str(body)[:200]
            raise WeChatApiError(code, message)
        return str(body["access_token"]), int(body.get("expires_in") or 7200)


class WeChatApi:
    """The few calls of the Official Account API the channel makes."""

    def __init__(self, api_url: str, app_id: str, app_secret: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.tokens = AccessTokens(self.api_url, app_id, app_secret)

    async def _call(
        self, method: str, path: str, payload: Optional[Dict[str, Any]] = None, **params: str
    ) -> Any:
        for attempt in (1, 2):
            token = await self.tokens.get()
            query = {"access_token": token, **params}
            # WeChat shows \\uXXXX escapes literally: send real UTF-8
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8") if payload is not None else None
            try:
                async with http_session().request(
                    method,
                    f"{self.api_url}{path}",
                    params=query,
                    data=data,
                    headers={"Content-Type": "application/json; charset=utf-8"},
                ) as reply:
                    body = await reply.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
                raise WeChatApiError("unreachable", str(error) or type(error).__name__) from error
            code = int(body.get("errcode") or 0) if isinstance(body, dict) else -1
            if code == 0:
                return body
            if code in TOKEN_ERRORS and attempt == 1:
                await self.tokens.invalidate(token)
                continue
            raise WeChatApiError(code, str(body.get("errmsg", "")) if isinstance(body, dict) else "")
        raise AssertionError("unreachable")  # pragma: no cover

    async def send_text(self, openid: str, content: str) -> None:
        payload = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        await self._call("POST", "/cgi-bin/message/custom/send", payload)

    async def user_language(self, openid: str) -> Optional[str]:
        """The language the customer's WeChat is set to (user/info), None when unknown."""
        try:
            body = await asyncio.wait_for(
                self._call("GET", "/cgi-bin/user/info", None, openid=openid, lang="zh_CN"), timeout=1.0
            )
        except Exception as error:  # noqa: BLE001 - only a hint: API refusal, timeout, Redis away
            logger.info("wechat: no language for a new follower: %s", error)
            return None
        value = body.get("language") if isinstance(body, dict) else None
        return normalise_language(value) if value else None


# -- buttons as numbers ---------------------------------------------------------------


class ChoiceMemory:
    """The payloads of the last numbered choices sent to each customer."""

    def key(self, sender_id: str) -> str:
        return f"{key_prefix()}:wechat:choices:{sender_id}"

    async def remember(self, sender_id: str, payloads: List[str]) -> None:
        await redis_client().set(
            self.key(sender_id), json.dumps(payloads, ensure_ascii=False), ex=CHOICES_TTL_SECONDS
        )

    async def forget(self, sender_id: str) -> None:
        await redis_client().delete(self.key(sender_id))

    async def resolve(self, sender_id: str, text: str) -> Optional[str]:
        """The payload a bare digit picks; any other message makes earlier choices stale."""
        client = redis_client()
        match = _CHOICE.fullmatch(text)
        try:
            raw = await client.get(self.key(sender_id))
            if raw is None:
                return None
            if not match:
                await client.delete(self.key(sender_id))
                return None
            payloads = json.loads(raw)
            number = int(match.group(1))
            if not isinstance(payloads, list) or not 1 <= number <= len(payloads):
                return None
            await client.delete(self.key(sender_id))
            return str(payloads[number - 1])
        except Exception as error:  # noqa: BLE001 - without the memory a digit is just text
            logger.warning("conversation %s: choices unavailable: %s", sender_id, error)
            return None


def render_message(message: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """(text parts within WeChat's limit, payloads of its numbered choices) of one bot message."""
    text = str(message.get("text") or "")
    buttons = [
        b for b in (message.get("buttons") or message.get("quick_replies") or []) if isinstance(b, dict)
    ]
    payloads: List[str] = []
    ratings = [_RATING.fullmatch(str(b.get("payload") or "")) for b in buttons]
    if buttons and all(ratings):
        # "reply 5 for five stars": the number a customer types is the rating itself
        ranked = sorted(zip(ratings, buttons, strict=True), key=lambda pair: int(pair[0].group(1)))  # type: ignore[union-attr]
        buttons = [button for _, button in ranked]
    if buttons:
        hint = CHOICE_HINT[detect_language(text)] if text else CHOICE_HINT["zh"]
        text = numbered_choices(text, buttons) + "\n" + hint
        payloads = [str(b.get("payload") or b.get("title") or "") for b in buttons]
    extras = [str(message[k]) for k in ("image", "attachment") if message.get(k)]
    whole = "\n".join(part for part in [text, *extras] if part)
    return (split_text(whole, TEXT_LIMIT_BYTES, utf8_len) if whole.strip() else []), payloads


# -- output ------------------------------------------------------------------------------


class WeChatOutput(OutputChannel):
    """Sends through the customer-service message API (out-of-turn lines, slow turns)."""

    @classmethod
    def name(cls) -> Text:
        return CHANNEL

    def __init__(self, api: Optional[WeChatApi], choices: Optional[ChoiceMemory] = None) -> None:
        self.api = api
        self.choices = choices or ChoiceMemory()

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        parts, payloads = render_message(message)
        # an agent line or a queue notice without buttons: a digit typed now answers that, not an old menu
        await self._remember(recipient_id, payloads)
        await self.deliver(recipient_id, parts)

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        await self.send_response(recipient_id, {"text": text})

    async def _remember(self, recipient_id: str, payloads: List[str]) -> None:
        try:
            if payloads:
                await self.choices.remember(recipient_id, payloads)
            else:
                await self.choices.forget(recipient_id)
        except Exception as error:  # noqa: BLE001 - the numbers still read as text
            logger.warning("conversation %s: choices not remembered: %s", recipient_id, error)

    async def deliver(self, recipient_id: str, parts: List[str]) -> None:
        """Send parts in order; a refusal is reported (to the log and the agent), never raised."""
        if self.api is None:
            await report_delivery_failure(
                recipient_id, CHANNEL, "not_configured", "WECHAT_APP_ID/SECRET unset"
            )
            return
        for index, part in enumerate(parts):
            try:
                await self.api.send_text(openid_of(recipient_id), part)
            except WeChatApiError as error:
                rest = "\n".join(parts[index:])
                await report_delivery_failure(recipient_id, CHANNEL, str(error.code), error.message, rest)
                return
            except Exception as error:  # noqa: BLE001 - Redis away while getting a token, ...
                await report_delivery_failure(
                    recipient_id, CHANNEL, "error", repr(error), "\n".join(parts[index:])
                )
                return


class TurnOutput(WeChatOutput):
    """Collects a turn's messages for the passive reply until told to send them through the API."""

    def __init__(self, api: Optional[WeChatApi], choices: ChoiceMemory) -> None:
        super().__init__(api, choices)
        self.parts: List[str] = []
        self.sending = False
        self._lock = asyncio.Lock()

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        parts, payloads = render_message(message)
        if payloads:
            await self._remember(recipient_id, payloads)
        async with self._lock:
            if self.sending:
                await self.deliver(recipient_id, parts)
            else:
                self.parts.extend(parts)

    async def switch_to_api(self, recipient_id: str) -> None:
        """From now on every message goes through the API, starting with what was collected."""
        async with self._lock:
            self.sending = True
            collected, self.parts = self.parts, []
            await self.deliver(recipient_id, collected)


# -- input -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inbound:
    """The fields of a WeChat push the channel uses, read defensively."""

    openid: str
    account: str
    kind: str  # text, image, voice, ..., event
    dedupe_token: str
    content: str = ""
    event: str = ""
    details: Dict[str, str] = field(default_factory=dict)


class MalformedMessage(ValueError):
    pass


def parse_inbound(xml: str) -> Inbound:
    """Parse a pushed message with wechatpy; anything unusable raises ``MalformedMessage``."""
    from wechatpy import parse_message

    try:
        message = parse_message(xml)
        if message is None:
            raise MalformedMessage("empty message")
        raw: Dict[str, Any] = getattr(message, "_data", {}) or {}
        openid = raw.get("FromUserName")
        account = raw.get("ToUserName")
        kind = str(raw.get("MsgType") or "").lower()
        create_time = str(raw.get("CreateTime") or "")
    except MalformedMessage:
        raise
    except Exception as error:
        raise MalformedMessage(f"unreadable XML: {type(error).__name__}") from error
    if not isinstance(openid, str) or not _OPENID.fullmatch(openid):
        raise MalformedMessage("FromUserName missing or not an openid")
    if not isinstance(account, str) or not account:
        raise MalformedMessage("ToUserName missing")
    if not create_time.isdigit():
        raise MalformedMessage("CreateTime missing")

    def text(name: str) -> str:
        value = raw.get(name)
        return value if isinstance(value, str) else ""

    msg_id = text("MsgId")
    if kind == "event":
        token = f"evt:{openid}:{create_time}:{text('Event').lower()}"
    elif msg_id.isdigit():
        token = f"msg:{msg_id}"
    else:
        raise MalformedMessage("MsgId missing")
    details = {
        name: text(source)
        for name, source in (
            ("url", "PicUrl"),
            ("media_id", "MediaId"),
            ("format", "Format"),
            ("recognition", "Recognition"),
            ("label", "Label"),
            ("title", "Title"),
            ("link", "Url"),
            ("file", "FileName"),
            ("key", "EventKey"),
        )
        if text(source)
    }
    return Inbound(
        openid=openid,
        account=account,
        kind=kind,
        dedupe_token=token,
        content=text("Content"),
        event=text("Event").lower(),
        details=details,
    )


def attachment_summary(inbound: Inbound) -> Dict[str, str]:
    """What an agent is shown for a non-text message."""
    summary = {"type": inbound.kind if inbound.kind in NON_TEXT_KINDS else "other"}
    for name in ("url", "media_id", "label", "title", "link", "file"):
        if inbound.details.get(name):
            summary[name] = inbound.details[name]
    return summary


class WeChatInput(InputChannel):
    """Webhook of a WeChat Official Account: /webhooks/wechat/webhook (GET verify, POST messages)."""

    @classmethod
    def name(cls) -> Text:
        return CHANNEL

    def __init__(
        self,
        token: str,
        app_id: str = "",
        app_secret: str = "",
        encoding_aes_key: str = "",
        api_url: str = DEFAULT_API_URL,
        reply_deadline: float = 4.5,
        max_message_chars: int = 2000,
        max_clock_skew: int = 300,
    ) -> None:
        self.token = token
        self.max_skew = max_clock_skew
        self.nonces = Deduper("wechat:nonce")
        if encoding_aes_key and len(encoding_aes_key) != 43:
            logger.error(
                "WECHAT_ENCODING_AES_KEY must be the 43 characters WeChat shows; safe mode will fail"
            )
        self.app_id = app_id
        self.encoding_aes_key = encoding_aes_key
        self.reply_deadline = reply_deadline
        self.max_message_chars = max_message_chars
        self.api = WeChatApi(api_url, app_id, app_secret) if app_id and app_secret else None
        self.choices = ChoiceMemory()
        self.languages = LanguageMemory(CHANNEL)
        self.dedupe = Deduper(CHANNEL)
        self._crypto: Any = None
        self._background: Set[asyncio.Task[Any]] = set()

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = credentials or {}

        def value(name: str, env: str, default: str = "") -> str:
            return credential(credentials, name, env, default)

        return cls(
            token=value("token", "WECHAT_TOKEN"),
            app_id=value("app_id", "WECHAT_APP_ID"),
            app_secret=value("app_secret", "WECHAT_APP_SECRET"),
            encoding_aes_key=value("encoding_aes_key", "WECHAT_ENCODING_AES_KEY"),
            api_url=value("api_url", "WECHAT_API_URL", DEFAULT_API_URL),
            reply_deadline=float(value("reply_deadline", "WECHAT_REPLY_DEADLINE", "4.5")),
            max_message_chars=int(value("max_message_chars", "MAX_MESSAGE_CHARS", "2000")),
            max_clock_skew=int(value("max_clock_skew", "WECHAT_MAX_CLOCK_SKEW", "300")),
        )

    def get_output_channel(self) -> Optional[OutputChannel]:
        return WeChatOutput(self.api, self.choices)

    def _fresh(self, request: Request) -> bool:
        """WeChat's timestamp is within ``max_skew`` seconds of ours (0 turns the check off)."""
        if self.max_skew <= 0:
            return True
        timestamp = str(request.args.get("timestamp") or "")
        return timestamp.isdigit() and abs(time.time() - int(timestamp)) <= self.max_skew

    # -- checks ---------------------------------------------------------------------
    def _signature_ok(self, request: Request) -> bool:
        from wechatpy.exceptions import InvalidSignatureException
        from wechatpy.utils import check_signature

        args = {k: request.args.get(k) for k in ("signature", "timestamp", "nonce")}
        if not all(isinstance(v, str) and v for v in args.values()):
            return False
        try:
            check_signature(self.token, args["signature"], args["timestamp"], args["nonce"])
        except InvalidSignatureException:
            return False
        return True

    def crypto(self) -> Any:
        if self._crypto is None:
            from wechatpy.crypto import WeChatCrypto

            self._crypto = WeChatCrypto(self.token, self.encoding_aes_key, self.app_id)
        return self._crypto

    # -- routes ---------------------------------------------------------------------
    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        on_new_message = timed(self.name(), on_new_message)
        webhook = Blueprint("wechat_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok" if self.token else "not_configured"})

        @webhook.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> HTTPResponse:
            if not self.token:
                return error_response(503, "not_configured", "set WECHAT_TOKEN to enable the WeChat channel")
            if not self._signature_ok(request):
                logger.warning("wechat: verification with a wrong signature from %s", request.ip)
                return error_response(403, "invalid_signature", "signature does not match the token")
            return response.text(str(request.args.get("echostr") or ""))

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            received = time.monotonic()
            if not self.token:
                return error_response(503, "not_configured", "set WECHAT_TOKEN to enable the WeChat channel")
            body = request.body or b""
            if len(body) > MAX_BODY_BYTES:
                return error_response(413, "body_too_large", f"request body over {MAX_BODY_BYTES} bytes")
            if not self._signature_ok(request):
                logger.warning("wechat: message with a wrong signature from %s", request.ip)
                return error_response(403, "invalid_signature", "signature does not match the token")
            if not self._fresh(request):
                logger.warning("wechat: message with a stale timestamp from %s", request.ip)
                return error_response(403, "stale_timestamp", f"timestamp more than {self.max_skew} s off")
            encrypted = request.args.get("encrypt_type") == "aes"
            if self.encoding_aes_key and not encrypted:
                # the plain signature does not cover the body: with a key set, only sealed bodies count
                logger.warning("wechat: plain message although safe mode is configured, from %s", request.ip)
                return error_response(403, "encryption_required", "safe mode: encrypt_type=aes expected")
            try:
                xml = self._decrypt(request, body) if encrypted else body.decode("utf-8")
            except PermissionError as error:
                logger.warning("wechat: %s", error)
                return error_response(403, "invalid_signature", str(error))
            except (ValueError, UnicodeDecodeError) as error:
                logger.warning("wechat: unreadable message from %s: %s", request.ip, error)
                return error_response(400, "malformed", f"cannot read the message: {error}")
            try:
                inbound = parse_inbound(xml)
            except MalformedMessage as error:
                logger.warning("wechat: malformed message from %s: %s", request.ip, error)
                return error_response(400, "malformed", str(error))
            if not await self.nonces.claim(f"{request.args.get('timestamp')}:{request.args.get('nonce')}"):
                # the same signed request again: WeChat's retry, or a replay; answered, not processed
                return response.text("success")
            reply = await self.handle(inbound, on_new_message, received)
            if reply is None:
                return response.text("success")
            return response.text(
                self._passive(inbound, reply, request if encrypted else None), content_type="application/xml"
            )

        return webhook

    def _decrypt(self, request: Request, body: bytes) -> str:
        from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException

        if not (self.encoding_aes_key and self.app_id):
            raise ValueError("safe mode needs WECHAT_ENCODING_AES_KEY and WECHAT_APP_ID")
        args = [request.args.get(k) for k in ("msg_signature", "timestamp", "nonce")]
        if not all(isinstance(v, str) and v for v in args):
            raise PermissionError("safe-mode message without msg_signature")
        try:
            return str(self.crypto().decrypt_message(body.decode("utf-8"), *args))
        except InvalidSignatureException as error:
            raise PermissionError("msg_signature does not match") from error
        except InvalidAppIdException as error:
            raise PermissionError("message for another AppID") from error
        except Exception as error:
            raise ValueError(f"cannot decrypt ({type(error).__name__})") from error

    def _passive(self, inbound: Inbound, content: str, encrypt_for: Optional[Request]) -> str:
        from wechatpy.replies import TextReply

        reply = TextReply(
            source=inbound.account, target=inbound.openid, content=content.replace(_CDATA_END, "]] >")
        )
        xml = reply.render()
        if encrypt_for is None:
            return str(xml)
        nonce = str(encrypt_for.args.get("nonce"))
        return str(self.crypto().encrypt_message(xml, nonce, str(int(time.time()))))

    # -- one pushed message ------------------------------------------------------------
    async def handle(
        self,
        inbound: Inbound,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
        received: Optional[float] = None,
    ) -> Optional[str]:
        """Run the turn; the passive reply text, or None for "success" (nothing, or sent by API).

        ``received`` is when the request arrived (time.monotonic): WeChat's five
        seconds count from there, not from when the turn starts.
        """
        received = time.monotonic() if received is None else received
        sender_id = sender_id_for(inbound.openid)
        if inbound.kind == "event" and not inbound.event.startswith("subscribe"):
            logger.info("conversation %s: WeChat event %r needs no answer", sender_id, inbound.event)
            return None
        if not await self.dedupe.claim(inbound.dedupe_token):
            logger.info("conversation %s: WeChat retry of %s ignored", sender_id, inbound.dedupe_token)
            return None
        verdict = await sender_limit().check(sender_id)
        if not verdict.allowed:
            refused(CHANNEL, "rate_limited")
            # one notice per window: each reply would count against the account's API quota
            return notice(inbound.content, verdict.retry_after) if verdict.notify else None
        try:
            text, metadata = await self._to_rasa(inbound, sender_id)
        except Exception:
            await self.dedupe.release(inbound.dedupe_token)
            raise
        language = normalise_language(metadata.get("language_hint"), "zh")
        output = TurnOutput(self.api, self.choices)
        task = asyncio.create_task(
            on_new_message(
                UserMessage(text, output, sender_id, input_channel=CHANNEL, metadata=metadata or None)
            )
        )
        remaining = max(0.0, received + self.reply_deadline - time.monotonic())
        try:
            done, _ = await asyncio.wait({task}, timeout=remaining)
        except asyncio.CancelledError:
            # WeChat hung up before we answered: what the turn says goes through the API
            self._keep(asyncio.create_task(self._finish_late(task, output, sender_id, inbound, language)))
            raise
        if task not in done:
            logger.info(
                "conversation %s: turn over %.1f s, replying through the API", sender_id, self.reply_deadline
            )
            self._keep(asyncio.create_task(self._finish_late(task, output, sender_id, inbound, language)))
            return None
        if task.exception() is not None:
            logger.error("conversation %s: message processing failed: %r", sender_id, task.exception())
            # the apology asks the customer to send it again; the same MsgId must then count
            await self.dedupe.release(inbound.dedupe_token)
            return APOLOGY[language]
        parts = output.parts
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        # one passive reply per message: several go through the API, in order
        self._keep(asyncio.create_task(output.switch_to_api(sender_id)))
        return None

    async def _finish_late(
        self, task: asyncio.Task[Any], output: TurnOutput, sender_id: str, inbound: Inbound, language: str
    ) -> None:
        """After "success": collected and later messages through the API; a failure is apologised for."""
        await output.switch_to_api(sender_id)
        try:
            await task
        except Exception as error:  # noqa: BLE001 - "success" was sent: tell the customer here
            logger.error("conversation %s: late turn failed: %r", sender_id, error)
            await self.dedupe.release(inbound.dedupe_token)
            await output.deliver(sender_id, [APOLOGY[normalise_language(language, "zh")]])

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _to_rasa(self, inbound: Inbound, sender_id: str) -> Tuple[str, Dict[str, Any]]:
        """The text and metadata Rasa gets for a push (a message or a new follower)."""
        metadata: Dict[str, Any] = {"wechat": {"account": inbound.account, "kind": inbound.kind}}
        if inbound.kind == "event":
            # subscribe, or subscribe_scan after a QR code (wechatpy renames those)
            language = await self.languages.recall(sender_id)
            if language is None and self.api is not None:
                language = await self.api.user_language(inbound.openid)
            language = language or "zh"
            metadata["language_hint"] = language
            return f'/greet{{"language": "{language}"}}', metadata
        text = inbound.content
        if inbound.kind == "voice" and inbound.details.get("recognition"):
            # WeChat's own speech recognition, when the account has it switched on
            text = inbound.details["recognition"]
            metadata["wechat"]["voice"] = True
        elif inbound.kind != "text":
            language = await self.languages.recall(sender_id)
            metadata["attachment"] = attachment_summary(inbound)
            metadata["language_hint"] = language or "zh"
            return non_text_payload(language), metadata
        choice = await self.choices.resolve(sender_id, text)
        if choice is not None:
            metadata["choice"] = text.strip()
            return choice, metadata
        inspected = inspect_message(text, self.max_message_chars, default_sealer(), metadata)
        if not inspected.rejected:
            language = detect_language(text, "zh")
            await self.languages.remember(sender_id, language)
            inspected.metadata["language_hint"] = language
        return inspected.text, dict(inspected.metadata)
