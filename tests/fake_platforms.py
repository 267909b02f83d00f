"""Local HTTP servers that speak the WeChat Official Account API and the Telegram Bot API.

The real servers are out of reach from tests, so these stand in for them on
127.0.0.1 and record what our connectors send. They follow the documented
behaviour the channels depend on: WeChat's access_token (a new one
invalidates the old; 40001 for a stale one), the customer-service message
API (45015 outside the 48-hour window, 45002 over 2048 bytes), user/info;
Telegram's sendMessage (4096 UTF-16 units, 64-byte callback_data, 429 with
``retry_after``), answerCallbackQuery and the webhook methods.

Standard library only: the Rasa-side tests (.venv-rasa) and the app-side
tests (.venv) both use them.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

# wechatpy's AES test vector (tests/test_crypto.py there), made by WeChat's reference implementation:
# a safe-mode push from the customer "messense" saying "test", sealed with these credentials.
WECHAT_AES_TOKEN = "123456"
WECHAT_AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
WECHAT_AES_APP_ID = "wx49f0ab532d5d035a"
WECHAT_AES_TIMESTAMP = "1411525903"
WECHAT_AES_NONCE = "461056294"
WECHAT_AES_SIGNATURE = "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
WECHAT_AES_BODY = (
    "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n"
    "<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHC"
    "rsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYN"
    "x410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdg"
    "pkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9"
    "QaNWHp91eBdCRxthuL0=]]></Encrypt>\n<AgentID><![CDATA[1]]></AgentID>\n</xml>"
)


class _Server:
    """A threaded HTTP server whose handler calls ``self.route``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:  # keep test output clean
                pass

            def _answer(self, method: str) -> None:
                parsed = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                try:
                    body = json.loads(raw.decode("utf-8")) if raw else None
                except ValueError:
                    body = None
                status, payload = owner.route(method, parsed.path, query, body, raw)
                data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> _Server:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(
        self, method: str, path: str, query: dict[str, str], body: Any, raw: bytes
    ) -> tuple[int, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def record(self, **call: Any) -> None:
        with self.lock:
            self.calls.append({**call, "at": time.time()})

    def wait_for(self, check: Callable[[list[dict[str, Any]]], Any], timeout: float = 15.0) -> Any:
        """Poll the recorded calls until ``check`` returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = check(list(self.calls))
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; calls so far: {self.calls[-5:]}")
            time.sleep(0.05)


class FakeWeChatApi(_Server):
    """api.weixin.qq.com as far as an Official Account's customer-service bot uses it."""

    def __init__(self, app_id: str, app_secret: str) -> None:
        super().__init__()
        self.app_id = app_id
        self.app_secret = app_secret
        self.token_fetches = 0
        self.current_token = ""
        self.expired_users: set[str] = set()  # openids outside the 48-hour window
        self.languages: dict[str, str] = {}  # openid -> "zh_CN" / "en"

    def sent(self, openid: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                c for c in self.calls if c["kind"] == "send" and (openid is None or c["touser"] == openid)
            ]

    def route(self, method: str, path: str, query: dict[str, str], body: Any, raw: bytes) -> tuple[int, Any]:
        if path == "/cgi-bin/token":
            if query.get("appid") != self.app_id or query.get("secret") != self.app_secret:
                return 200, {"errcode": 40013, "errmsg": "invalid appid"}
            with self.lock:
                self.token_fetches += 1
                # a new token invalidates the previous one (no overlap here: stricter than WeChat)
                self.current_token = f"token-{self.token_fetches}-{time.time_ns()}"
                token = self.current_token
            self.record(kind="token")
            return 200, {"access_token": token, "expires_in": 7200}
        if query.get("access_token") != self.current_token or not self.current_token:
            return 200, {
                "errcode": 40001,
                "errmsg": "invalid credential, access_token is invalid or not latest",
            }
        if path == "/cgi-bin/message/custom/send" and method == "POST":
            if not isinstance(body, dict) or body.get("msgtype") != "text":
                return 200, {"errcode": 40008, "errmsg": "invalid message type"}
            openid = str(body.get("touser"))
            content = str((body.get("text") or {}).get("content") or "")
            if b"\\u" in raw:
                return 200, {"errcode": 40033, "errmsg": "invalid charset: send UTF-8, not \\u escapes"}
            if len(content.encode("utf-8")) > 2048:
                return 200, {"errcode": 45002, "errmsg": "content size out of limit"}
            if openid in self.expired_users:
                return 200, {
                    "errcode": 45015,
                    "errmsg": "response out of time limit or subscription is canceled",
                }
            self.record(kind="send", touser=openid, content=content)
            return 200, {"errcode": 0, "errmsg": "ok"}
        if path == "/cgi-bin/user/info":
            openid = query.get("openid", "")
            return 200, {"subscribe": 1, "openid": openid, "language": self.languages.get(openid, "zh_CN")}
        return 404, {"errcode": 404, "errmsg": "no such API"}


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class FakeTelegramApi(_Server):
    """api.telegram.org for one bot token."""

    def __init__(self, bot_token: str) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.rate_limit_next = 0  # answer this many sendMessage calls with 429 first
        self.retry_after = 1
        self.blocked_chats: set[int] = set()
        self.message_ids = 0

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                c
                for c in self.calls
                if c["method"] == "sendMessage"
                and c.get("accepted")
                and (chat_id is None or c["chat_id"] == chat_id)
            ]

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.calls if c["method"] == method]

    def route(self, method: str, path: str, query: dict[str, str], body: Any, raw: bytes) -> tuple[int, Any]:
        prefix = f"/bot{self.bot_token}/"
        if not path.startswith(prefix):
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        api_method = path[len(prefix) :]
        body = body if isinstance(body, dict) else {}
        if api_method == "sendMessage":
            chat_id = body.get("chat_id")
            try:
                chat = int(chat_id)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
            text = str(body.get("text") or "")
            with self.lock:
                limited = self.rate_limit_next > 0
                if limited:
                    self.rate_limit_next -= 1
            if limited:
                self.record(method=api_method, chat_id=chat, text=text, accepted=False, status=429)
                return 429, {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {self.retry_after}",
                    "parameters": {"retry_after": self.retry_after},
                }
            if chat in self.blocked_chats:
                return 403, {
                    "ok": False,
                    "error_code": 403,
                    "description": "Forbidden: bot was blocked by the user",
                }
            if not text or utf16_units(text) > 4096:
                return 400, {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message is too long",
                }
            for row in (body.get("reply_markup") or {}).get("inline_keyboard") or []:
                for button in row:
                    data = button.get("callback_data")
                    if data is not None and not 1 <= len(str(data).encode("utf-8")) <= 64:
                        return 400, {
                            "ok": False,
                            "error_code": 400,
                            "description": "Bad Request: BUTTON_DATA_INVALID",
                        }
            with self.lock:
                self.message_ids += 1
                message_id = self.message_ids
            self.record(
                method=api_method,
                chat_id=chat,
                text=text,
                reply_markup=body.get("reply_markup"),
                accepted=True,
            )
            return 200, {"ok": True, "result": {"message_id": message_id, "chat": {"id": chat}, "text": text}}
        self.record(method=api_method, body=body)
        if api_method == "getWebhookInfo":
            return 200, {"ok": True, "result": {"url": "", "pending_update_count": 0}}
        return 200, {"ok": True, "result": True}
