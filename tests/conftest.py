"""Shared fixtures: fresh trackers for action tests, the real stack for integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Tracker

from tests.fake_platforms import WECHAT_AES_APP_ID, WECHAT_AES_KEY, WECHAT_AES_TOKEN

DOMAIN_RESPONSES: dict[str, Any] | None = None


def load_domain() -> dict[str, Any]:
    """domain.yml as the action server receives it from Rasa."""
    global DOMAIN_RESPONSES
    if DOMAIN_RESPONSES is None:
        import yaml

        with open("domain.yml", encoding="utf-8") as handle:
            DOMAIN_RESPONSES = yaml.safe_load(handle)
    return DOMAIN_RESPONSES


def user_event(text: str, intent: str, ts: float, **metadata: Any) -> dict[str, Any]:
    return {
        "event": "user",
        "text": text,
        "timestamp": ts,
        "parse_data": {"intent": {"name": intent, "confidence": 0.9}, "entities": []},
        "metadata": metadata,
        "input_channel": "rest",
    }


def bot_event(text: str, ts: float) -> dict[str, Any]:
    return {"event": "bot", "text": text, "timestamp": ts, "data": {}}


def make_tracker(
    events: list[dict[str, Any]] | None = None,
    slots: dict[str, Any] | None = None,
    sender_id: str = "test-conversation",
    intent_ranking: list[dict[str, Any]] | None = None,
) -> Tracker:
    """A fresh tracker whose latest message is the last user event."""
    events = events or []
    latest: dict[str, Any] = {}
    for event in reversed(events):
        if event.get("event") == "user":
            latest = {**event["parse_data"], "text": event["text"]}
            break
    if intent_ranking is not None:
        latest["intent_ranking"] = intent_ranking
    return Tracker(
        sender_id=sender_id,
        slots={
            "language": None,
            "order_id": None,
            "card_code": None,
            "phone": None,
            "email": None,
            **(slots or {}),
        },
        latest_message=latest,
        events=events,
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name=None,
    )


@pytest.fixture
def domain() -> dict[str, Any]:
    return load_domain()


# -- the real stack (integration and browser tests) ---------------------------


# The stack's WeChat account uses the credentials of wechatpy's AES test vector, so a
# known encrypted message from WeChat's reference implementation can be posted to it.
WECHAT_TEST_TOKEN = WECHAT_AES_TOKEN
WECHAT_TEST_AES_KEY = WECHAT_AES_KEY
WECHAT_TEST_APP_ID = WECHAT_AES_APP_ID
WECHAT_TEST_APP_SECRET = "wx-test-secret"
TELEGRAM_TEST_TOKEN = "123456:TEST-bot-token"
TELEGRAM_TEST_SECRET = "test_webhook_secret-42"


@pytest.fixture(scope="session")
def platforms() -> Any:
    """Local servers speaking WeChat's and Telegram's APIs, which the stack's channels call."""
    from tests.fake_platforms import FakeTelegramApi, FakeWeChatApi

    wechat = FakeWeChatApi(WECHAT_TEST_APP_ID, WECHAT_TEST_APP_SECRET).start()
    telegram = FakeTelegramApi(TELEGRAM_TEST_TOKEN).start()
    yield {"wechat": wechat, "telegram": telegram}
    wechat.stop()
    telegram.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, platforms: Any) -> Any:
    """Redis (private redis-server, AOF), action server, Rasa and web service on free ports.

    Redis is a private redis-server so the outage test can stop and restart it
    without touching anyone else's data; every key carries a per-run prefix.
    The WeChat and Telegram channels are on and talk to the ``platforms`` servers.
    """
    from scripts.stack import Stack, StackError, private_settings

    var = tmp_path_factory.mktemp("var")
    settings = private_settings(
        var,
        "t",
        wechat_token=WECHAT_TEST_TOKEN,
        wechat_app_id=WECHAT_TEST_APP_ID,
        wechat_app_secret=WECHAT_TEST_APP_SECRET,
        wechat_encoding_aes_key=WECHAT_TEST_AES_KEY,
        wechat_api_url=platforms["wechat"].url,
        telegram_bot_token=TELEGRAM_TEST_TOKEN,
        telegram_webhook_secret=TELEGRAM_TEST_SECRET,
        telegram_api_url=platforms["telegram"].url,
        # room for the longest test conversation; tests/integration/test_security.py fills a window itself
        rate_limit_burst=50,
        rate_limit_per_minute=200,
    )
    running = Stack(settings=settings, log_dir=var / "log", start_redis=True, quiet=True)
    try:
        running.start()
    except StackError as error:
        running.stop()
        pytest.fail(f"the stack did not start: {error}")
    yield running
    running.stop()


@pytest.fixture
def fresh_proof_limits(stack: Any) -> Any:
    """Forget failed ownership proofs after the test (actions/proofs.py counts them per order for 24 h).

    The self-service tests guess wrong on the same demo orders in both languages; across tests that
    is exactly the attack the limit stops, so each test starts with clean counters.
    """
    yield
    import redis

    client = redis.Redis.from_url(stack.settings.redis_url)
    keys = list(client.scan_iter(match=f"{stack.settings.key_prefix}:proof:*"))
    if keys:
        client.delete(*keys)
    client.close()


def _problem_lines(log: Path, keep: int = 30) -> str:
    """The last warnings, errors and traceback lines of one service log."""
    if not log.exists():
        return "(no log)"
    marks = ('"WARNING"', '"ERROR"', '"CRITICAL"', "Traceback", "Error:", "  File ")
    lines = [line for line in log.read_text(errors="replace").splitlines() if any(m in line for m in marks)]
    return "\n".join(lines[-keep:]) or "(none)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test on a real stack reports what its services logged: CI keeps no other trace of it."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for running in getattr(item, "funcargs", {}).values():
        log_dir = getattr(running, "log_dir", None)
        if not isinstance(log_dir, Path):
            continue
        for log in sorted(log_dir.glob("*.log")):
            report.sections.append((f"{log.name}: warnings and errors", _problem_lines(log)))
