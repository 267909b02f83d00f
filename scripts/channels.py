"""Channel administration that is done once, not at every start.

    python -m scripts.channels telegram set-webhook https://bot.example.com/webhooks/telegram/webhook
    python -m scripts.channels telegram info
    python -m scripts.channels telegram delete-webhook

Reads TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET and TELEGRAM_API_URL from the
environment or .env.local (common.settings). setWebhook registers the secret
Telegram then sends in X-Telegram-Bot-Api-Secret-Token, and asks only for the
update types the channel handles.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from typing import Any

from common.settings import Settings

ALLOWED_UPDATES = ["message", "callback_query"]
_SECRET = re.compile(r"[A-Za-z0-9_\-]{1,256}")


class ChannelError(RuntimeError):
    pass


def telegram_call(settings: Settings, method: str, payload: dict[str, Any]) -> Any:
    if not settings.telegram_bot_token:
        raise ChannelError("TELEGRAM_BOT_TOKEN is not set (environment or .env.local)")
    request = urllib.request.Request(  # noqa: S310 - the configured Bot API URL
        f"{settings.telegram_api_url}/bot{settings.telegram_bot_token}/{method}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as reply:  # noqa: S310
            body = json.loads(reply.read().decode())
    except urllib.error.HTTPError as error:
        body = json.loads(error.read().decode() or "{}")
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ChannelError(f"{method}: Telegram's API did not answer: {error}") from error
    if not body.get("ok"):
        raise ChannelError(f"{method}: {body.get('error_code')} {body.get('description')}")
    return body.get("result")


def set_webhook(settings: Settings, url: str, drop_pending: bool = False) -> str:
    if not url.startswith("https://"):
        raise ChannelError("Telegram only calls https:// webhooks")
    if not _SECRET.fullmatch(settings.telegram_webhook_secret):
        raise ChannelError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z a-z 0-9 _ -")
    telegram_call(
        settings,
        "setWebhook",
        {
            "url": url,
            "secret_token": settings.telegram_webhook_secret,
            "allowed_updates": ALLOWED_UPDATES,
            "drop_pending_updates": drop_pending,
        },
    )
    return f"webhook set to {url} (updates: {', '.join(ALLOWED_UPDATES)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.channels", description=__doc__.split("\n\n")[0])
    channels = parser.add_subparsers(dest="channel", required=True)
    telegram = channels.add_parser("telegram", help="Telegram webhook registration")
    commands = telegram.add_subparsers(dest="command", required=True)
    setting = commands.add_parser("set-webhook", help="register URL as the bot's webhook, with the secret")
    setting.add_argument("url")
    setting.add_argument("--drop-pending", action="store_true", help="discard updates queued at Telegram")
    commands.add_parser("delete-webhook", help="stop Telegram calling the webhook")
    commands.add_parser("info", help="what Telegram knows of the webhook (pending updates, last error)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        if args.command == "set-webhook":
            print(set_webhook(settings, args.url, args.drop_pending))
        elif args.command == "delete-webhook":
            telegram_call(settings, "deleteWebhook", {})
            print("webhook deleted")
        else:
            print(json.dumps(telegram_call(settings, "getWebhookInfo", {}), indent=2, ensure_ascii=False))
    except ChannelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
