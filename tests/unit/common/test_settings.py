"""common.settings: environment parsing."""

from pathlib import Path

import pytest

from common.settings import DEMO_SECRET_FILES, Settings, split_redis_url


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


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:7000/2")
    monkeypatch.setenv("RASA_PORT", "6005")
    monkeypatch.setenv("CS_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("RASA_URL", raising=False)
    for name in DEMO_SECRET_FILES:
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert settings.redis.port == 7000
    assert settings.rasa_url == "http://127.0.0.1:6005"
    # an unset secret is a per-install DEMO value under var/secrets/, never one printed in the repo
    assert settings.rasa_token == (tmp_path / "secrets" / "rasa-token").read_text().strip()
    assert len(settings.rasa_token) >= 32 and "RASA_TOKEN" in settings.demo_secrets
    assert Settings.from_env().rasa_token == settings.rasa_token  # generated once
    monkeypatch.setenv("RASA_TOKEN", "x" * 40)
    assert "RASA_TOKEN" not in Settings.from_env().demo_secrets


def test_every_service_binds_loopback_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CS_VAR_DIR", str(tmp_path))
    for name in ("WEB_HOST", "RASA_HOST", "ACTION_HOST"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert (settings.web_host, settings.rasa_host, settings.action_host) == ("127.0.0.1",) * 3
    assert settings.exposed_hosts == []
    monkeypatch.setenv("RASA_HOST", "0.0.0.0")
    assert Settings.from_env().exposed_hosts == ["0.0.0.0"]


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
