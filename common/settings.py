"""One settings object for every process, read from the environment.

Secrets (RASA_TOKEN, ...) come from the environment or from the untracked file
``.env.local`` in the project root. One left unset gets a DEMO value generated
once into var/secrets/ (common/secrets.py), named in ``demo_secrets``; the run
command refuses to bind anything but loopback while one is in use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from common.secrets import demo_secret, parse_clients

PROJECT_ROOT = Path(__file__).resolve().parent.parent

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# the secret settings: variable -> file under var/secrets/ holding its DEMO value when unset
DEMO_SECRET_FILES = {
    "RASA_TOKEN": "rasa-token",
    "ACTION_SERVER_TOKEN": "action-server-token",
    "METRICS_TOKEN": "metrics-token",
    "CS_CONVERSATION_KEY": "conversation.key",
    "CS_REST_CLIENTS": "rest-client-demo",
}


def load_env_file(path: Path = PROJECT_ROOT / ".env.local") -> dict[str, str]:
    """Read KEY=VALUE lines from an untracked env file (comments and blanks skipped)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


@dataclass(frozen=True)
class RedisParts:
    """A redis:// URL split the way Rasa's endpoints.yml wants it."""

    host: str
    port: int
    db: int
    password: str


def split_redis_url(url: str) -> RedisParts:
    """Split ``redis://[:password@]host[:port][/db]`` into its parts."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise ValueError(f"REDIS_URL must start with redis:// (got {url!r})")
    db_text = (parsed.path or "/0").lstrip("/") or "0"
    if not db_text.isdigit():
        raise ValueError(f"REDIS_URL database must be a number (got {db_text!r})")
    return RedisParts(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 6379,
        db=int(db_text),
        password=parsed.password or "",
    )


def _env(name: str, default: str, extra: dict[str, str]) -> str:
    return os.environ.get(name) or extra.get(name) or default


def _int(name: str, default: str, extra: dict[str, str]) -> int:
    return int(_number(name, default, extra, whole=True))


def _float(name: str, default: str, extra: dict[str, str]) -> float:
    return _number(name, default, extra, whole=False)


def _number(name: str, default: str, extra: dict[str, str], whole: bool) -> float:
    """A numeric setting; a malformed one says which variable it is (not just "invalid literal")."""
    value = _env(name, default, extra)
    try:
        return int(value) if whole else float(value)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{name} must be {kind} (got {value!r})") from None


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults the run command uses."""

    redis_url: str = "redis://127.0.0.1:6380/0"
    key_prefix: str = "cs"
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_token: str = ""
    # what Rasa sends the action server (endpoints.yml) and the action server requires
    action_token: str = ""
    # Bearer token of every service's /metrics
    metrics_token: str = ""
    # signs the per-conversation secrets the widget keeps (common/secrets.py)
    conversation_key: str = ""
    # REST integrations: "name=token,..." (bot/channels/rest.py)
    rest_clients_text: str = ""
    # the secret variables that hold a generated DEMO value (unset in the environment)
    demo_secrets: tuple[str, ...] = ()
    web_host: str = "127.0.0.1"
    rasa_host: str = "127.0.0.1"
    action_host: str = "127.0.0.1"
    web_port: int = 8000
    rasa_port: int = 5005
    action_port: int = 5055
    local_redis_port: int = 6380
    max_message_chars: int = 2000
    # how long a turn waits for the action server before apologising (Rasa's own limit is 5 min)
    action_timeout_seconds: float = 20.0
    # per sender (bot/channels/ratelimit.py): messages per 10 s and per minute; 0 turns a window off
    rate_limit_burst: int = 8
    rate_limit_per_minute: int = 30
    # conversations idle longer than this are purged (handoff/retention.py); 0 = keep
    retention_days: float = 30.0
    var_dir: Path = field(default=PROJECT_ROOT / "var")
    log_level: str = "INFO"
    public_rasa_url: str = ""  # what browsers use to reach Rasa; "" = same host, RASA_PORT
    # pages allowed to talk to Rasa from a browser (socket.io, REST); "" = the demo page's own origins
    allowed_origins_text: str = ""
    # messaging channels: each stays off (its webhook answers 503) until its secrets are set
    wechat_token: str = ""
    wechat_app_id: str = ""
    wechat_app_secret: str = ""
    wechat_encoding_aes_key: str = ""
    wechat_api_url: str = "https://api.weixin.qq.com"
    wechat_reply_deadline: float = 4.5
    telegram_bot_token: str = ""
    telegram_webhook_secret: str = ""
    telegram_api_url: str = "https://api.telegram.org"

    @classmethod
    def from_env(cls) -> Settings:
        extra = load_env_file()
        var_dir = Path(_env("CS_VAR_DIR", str(PROJECT_ROOT / "var"), extra))
        local_redis_port = _int("LOCAL_REDIS_PORT", "6380", extra)
        rasa_port = _int("RASA_PORT", "5005", extra)
        prefix = _env("CS_KEY_PREFIX", "cs", extra)
        if not prefix.isalnum():
            # Rasa silently ignores non-alphanumeric prefixes; fail loudly instead
            raise ValueError(f"CS_KEY_PREFIX must be alphanumeric (got {prefix!r})")
        demo: list[str] = []

        def secret(name: str) -> str:
            configured = _env(name, "", extra)
            if configured:
                return configured
            demo.append(name)
            value = demo_secret(var_dir, DEMO_SECRET_FILES[name])
            return f"demo={value}" if name == "CS_REST_CLIENTS" else value

        if not _env("CS_CARD_CODE_KEY", "", extra):
            demo.append("CS_CARD_CODE_KEY")  # generated by common.masking
        return cls(
            redis_url=_env("REDIS_URL", f"redis://127.0.0.1:{local_redis_port}/0", extra),
            key_prefix=prefix,
            rasa_url=_env("RASA_URL", f"http://127.0.0.1:{rasa_port}", extra).rstrip("/"),
            rasa_token=secret("RASA_TOKEN"),
            action_token=secret("ACTION_SERVER_TOKEN"),
            metrics_token=secret("METRICS_TOKEN"),
            conversation_key=secret("CS_CONVERSATION_KEY"),
            rest_clients_text=secret("CS_REST_CLIENTS"),
            demo_secrets=tuple(demo),
            web_host=_env("WEB_HOST", "127.0.0.1", extra),
            rasa_host=_env("RASA_HOST", "127.0.0.1", extra),
            action_host=_env("ACTION_HOST", "127.0.0.1", extra),
            web_port=_int("WEB_PORT", "8000", extra),
            rasa_port=rasa_port,
            action_port=_int("ACTION_PORT", "5055", extra),
            local_redis_port=local_redis_port,
            max_message_chars=_int("MAX_MESSAGE_CHARS", "2000", extra),
            action_timeout_seconds=_float("ACTION_TIMEOUT_SECONDS", "20", extra),
            rate_limit_burst=_int("RATE_LIMIT_BURST", "8", extra),
            rate_limit_per_minute=_int("RATE_LIMIT_PER_MINUTE", "30", extra),
            retention_days=_float("CS_RETENTION_DAYS", "30", extra),
            var_dir=var_dir,
            log_level=_env("LOG_LEVEL", "INFO", extra).upper(),
            public_rasa_url=_env("PUBLIC_RASA_URL", "", extra).rstrip("/"),
            allowed_origins_text=_env("CS_ALLOWED_ORIGINS", "", extra),
            wechat_token=_env("WECHAT_TOKEN", "", extra),
            wechat_app_id=_env("WECHAT_APP_ID", "", extra),
            wechat_app_secret=_env("WECHAT_APP_SECRET", "", extra),
            wechat_encoding_aes_key=_env("WECHAT_ENCODING_AES_KEY", "", extra),
            wechat_api_url=_env("WECHAT_API_URL", "https://api.weixin.qq.com", extra).rstrip("/"),
            wechat_reply_deadline=_float("WECHAT_REPLY_DEADLINE", "4.5", extra),
            telegram_bot_token=_env("TELEGRAM_BOT_TOKEN", "", extra),
            telegram_webhook_secret=_env("TELEGRAM_WEBHOOK_SECRET", "", extra),
            telegram_api_url=_env("TELEGRAM_API_URL", "https://api.telegram.org", extra).rstrip("/"),
        )

    @property
    def allowed_origins(self) -> list[str]:
        """Browser origins Rasa accepts (CORS and socket.io's Origin check); never a wildcard by default."""
        listed = [o.strip().rstrip("/") for o in self.allowed_origins_text.split(",") if o.strip()]
        if listed:
            return listed
        return [f"http://127.0.0.1:{self.web_port}", f"http://localhost:{self.web_port}"]

    def channel_env(self) -> dict[str, str]:
        """The variables credentials.yml reads (all set, empty when a channel is off)."""
        return {
            "WECHAT_TOKEN": self.wechat_token,
            "WECHAT_APP_ID": self.wechat_app_id,
            "WECHAT_APP_SECRET": self.wechat_app_secret,
            "WECHAT_ENCODING_AES_KEY": self.wechat_encoding_aes_key,
            "WECHAT_API_URL": self.wechat_api_url,
            "WECHAT_REPLY_DEADLINE": str(self.wechat_reply_deadline),
            "TELEGRAM_BOT_TOKEN": self.telegram_bot_token,
            "TELEGRAM_WEBHOOK_SECRET": self.telegram_webhook_secret,
            "TELEGRAM_API_URL": self.telegram_api_url,
        }

    @property
    def exposed_hosts(self) -> list[str]:
        """The listening addresses that are not loopback (what other machines can reach)."""
        hosts = (self.web_host, self.rasa_host, self.action_host)
        return [h for h in hosts if h not in LOOPBACK_HOSTS and not h.startswith("127.")]

    @property
    def rest_clients(self) -> dict[str, str]:
        """{token: client name} of the REST integrations."""
        return parse_clients(self.rest_clients_text)

    def secret_env(self) -> dict[str, str]:
        """The secrets every process of one stack shares, as the variables they read."""
        return {
            "RASA_TOKEN": self.rasa_token,
            "ACTION_SERVER_TOKEN": self.action_token,
            "METRICS_TOKEN": self.metrics_token,
            "CS_CONVERSATION_KEY": self.conversation_key,
            "CS_REST_CLIENTS": self.rest_clients_text,
        }

    @property
    def redis(self) -> RedisParts:
        return split_redis_url(self.redis_url)
