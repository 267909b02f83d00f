"""scripts.channels: Telegram webhook registration, against a local server speaking the Bot API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.settings import Settings
from scripts.channels import ChannelError, main, set_webhook
from tests.fake_platforms import FakeTelegramApi

pytestmark = pytest.mark.integration


@pytest.fixture
def telegram() -> Iterator[FakeTelegramApi]:
    server = FakeTelegramApi("42:cli-token").start()
    yield server
    server.stop()


def settings_for(api: FakeTelegramApi, secret: str = "s3cret_-42") -> Settings:
    return Settings(
        telegram_bot_token=api.bot_token, telegram_webhook_secret=secret, telegram_api_url=api.url
    )


def test_set_webhook_registers_the_secret_and_the_update_types(telegram: FakeTelegramApi) -> None:
    message = set_webhook(settings_for(telegram), "https://bot.example.com/webhooks/telegram/webhook")
    assert "webhook set" in message
    [call] = telegram.calls_of("setWebhook")
    assert call["body"] == {
        "url": "https://bot.example.com/webhooks/telegram/webhook",
        "secret_token": "s3cret_-42",
        "allowed_updates": ["message", "callback_query"],
        "drop_pending_updates": False,
    }


@pytest.mark.parametrize("secret", ["", "has spaces", "x" * 257])
def test_a_secret_telegram_would_refuse_is_caught_first(telegram: FakeTelegramApi, secret: str) -> None:
    with pytest.raises(ChannelError):
        set_webhook(settings_for(telegram, secret), "https://bot.example.com/webhooks/telegram/webhook")
    assert telegram.calls_of("setWebhook") == []


def test_plain_http_is_refused(telegram: FakeTelegramApi) -> None:
    with pytest.raises(ChannelError, match="https"):
        set_webhook(settings_for(telegram), "http://bot.example.com/hook")


def test_the_command_reports_a_wrong_token(
    telegram: FakeTelegramApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "wrong:token")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "s3cret")
    monkeypatch.setenv("TELEGRAM_API_URL", telegram.url)
    assert main(["telegram", "info"]) == 1
    assert "401" in capsys.readouterr().err
