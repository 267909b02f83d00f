"""common.settings: environment parsing."""

import pytest

from common.settings import DEMO_RASA_TOKEN, Settings, split_redis_url


def test_split_redis_url_with_all_parts() -> None:
    parts = split_redis_url("redis://:s3cret@redis.internal:6390/4")
    assert (parts.host, parts.port, parts.db, parts.password) == ("redis.internal", 6390, 4, "s3cret")


def test_split_redis_url_defaults() -> None:
    parts = split_redis_url("redis://localhost")
    assert (parts.host, parts.port, parts.db, parts.password) == ("localhost", 6379, 0, "")


@pytest.mark.parametrize("url", ["http://localhost:6379", "redis://localhost/abc"])
def test_split_redis_url_rejects_nonsense(url: str) -> None:
    with pytest.raises(ValueError, match="REDIS_URL"):
        split_redis_url(url)


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:7000/2")
    monkeypatch.setenv("RASA_PORT", "6005")
    monkeypatch.delenv("RASA_URL", raising=False)
    monkeypatch.delenv("RASA_TOKEN", raising=False)
    settings = Settings.from_env()
    assert settings.redis.port == 7000
    assert settings.rasa_url == "http://127.0.0.1:6005"
    assert settings.rasa_token == DEMO_RASA_TOKEN and settings.using_demo_token


def test_action_timeout_defaults_to_20_seconds_and_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTION_TIMEOUT_SECONDS", raising=False)
    assert Settings.from_env().action_timeout_seconds == 20.0
    monkeypatch.setenv("ACTION_TIMEOUT_SECONDS", "7.5")
    assert Settings.from_env().action_timeout_seconds == 7.5


def test_non_alphanumeric_prefix_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rasa would silently ignore it and share keys with another deployment
    monkeypatch.setenv("CS_KEY_PREFIX", "cs-prod")
    with pytest.raises(ValueError, match="alphanumeric"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ACTION_TIMEOUT_SECONDS", "soon", "ACTION_TIMEOUT_SECONDS must be a number"),
        ("RASA_PORT", "50o5", "RASA_PORT must be a whole number"),
    ],
)
def test_a_malformed_number_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        Settings.from_env()
