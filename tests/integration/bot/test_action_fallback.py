"""bot.action_fallback against the machine's Redis: with the action server gone, a person is still reachable.

The action endpoint is a closed loopback port (what kill -9 leaves); the
handoff runs in this process with actions/handoff.py and must land in the
request stream under the test's own key prefix. The whole-stack version
(kill -9 the real action server) is tests/integration/test_faults.py.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rasa.core.actions.action import RemoteAction
from rasa.core.channels.channel import CollectingOutputChannel
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig

from bot import action_fallback

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def handoff_env(redis_prefix: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    import actions.handoff as handoff_actions

    monkeypatch.setenv("REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    monkeypatch.setenv("CS_VAR_DIR", str(tmp_path))
    # the module keeps process-wide clients; this test's must point at its own prefix
    monkeypatch.setattr(handoff_actions, "_request_log", None)
    monkeypatch.setattr(handoff_actions, "_queue", None)
    action_fallback.install()
    yield redis_prefix


def test_asking_for_a_person_while_the_action_server_is_down_queues_the_handoff(handoff_env: str) -> None:
    domain = Domain.load(str(ROOT / "domain.yml"))
    events = [
        SlotSet("language", "zh"),
        UserUttered("我的订单到哪了", {"name": "order_status", "confidence": 0.97}),
        ActionExecuted("action_show_order"),
        BotUttered("抱歉，我们的系统暂时出了点问题"),
        UserUttered("/ask_human", {"name": "ask_human", "confidence": 1.0}),
    ]
    tracker = DialogueStateTracker.from_events("web-away-handoff", events, slots=domain.slots)
    action = RemoteAction("action_handoff", EndpointConfig("http://127.0.0.1:1/webhook"))
    nlg = TemplatedNaturalLanguageGenerator(domain.responses)

    result = asyncio.run(action.run(CollectingOutputChannel(), nlg, tracker, domain))

    said = [e for e in result if isinstance(e, BotUttered)]
    assert said and said[0].text  # the queue confirmation (or "no agent on duty"), in Chinese
    assert any("\u4e00" <= ch <= "\u9fff" for ch in said[0].text)
    assert SlotSet("handoff_requested", True) in result
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    records = [json.loads(f[b"record"]) for _, f in client.xrange(f"{handoff_env}:handoff:requests")]
    mine = [r for r in records if r["conversation_id"] == "web-away-handoff"]
    assert len(mine) == 1
    assert mine[0]["reason"] == "action_failure" and mine[0]["priority"] == "high"
    assert mine[0]["language"] == "zh"
    assert any(line["text"] == "我的订单到哪了" for line in mine[0]["transcript"])


class ActionServer:
    """A loopback action server that answers after ``delay`` s (a hang: longer than the test waits)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0

    async def __aenter__(self) -> EndpointConfig:
        from aiohttp import web

        async def webhook(request: web.Request) -> web.Response:
            self.requests += 1
            await asyncio.sleep(self.delay)
            return web.json_response({"events": [], "responses": [{"text": "order DG1 is on its way"}]})

        app = web.Application()
        app.router.add_post("/webhook", webhook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return EndpointConfig(f"http://127.0.0.1:{port}/webhook")

    async def __aexit__(self, *_: object) -> None:
        await self.runner.cleanup()


def order_tracker(domain: Domain) -> DialogueStateTracker:
    events = [SlotSet("language", "en"), UserUttered("where is my order", {"name": "order_status"})]
    return DialogueStateTracker.from_events("web-hung", events, slots=domain.slots)


def run_against(server: ActionServer, timeout: float) -> tuple[list[object], float]:
    domain = Domain.load(str(ROOT / "domain.yml"))
    nlg = TemplatedNaturalLanguageGenerator(domain.responses)
    action_fallback.install(timeout=timeout)

    async def go() -> tuple[list[object], float]:
        async with server as endpoint:
            started = asyncio.get_running_loop().time()
            action = RemoteAction("action_show_order", endpoint)
            events = await action.run(CollectingOutputChannel(), nlg, order_tracker(domain), domain)
            return list(events), asyncio.get_running_loop().time() - started

    try:
        return asyncio.run(go())
    finally:
        action_fallback.install()  # back to the configured limit for the other tests


def test_a_hung_action_server_gets_the_apology_after_the_timeout_not_after_five_minutes() -> None:
    server = ActionServer(delay=3600)
    events, took = run_against(server, timeout=1.0)
    assert server.requests == 1
    assert 1.0 <= took < 10
    said = [e for e in events if isinstance(e, BotUttered)]
    assert len(said) == 1 and said[0].text.startswith("Sorry, part of our system")
    assert [b["payload"] for b in said[0].data["buttons"]] == ["/ask_human"]


def test_a_slow_answer_inside_the_timeout_is_used() -> None:
    events, _ = run_against(ActionServer(delay=0.5), timeout=5.0)
    said = [e for e in events if isinstance(e, BotUttered)]
    assert [e.text for e in said] == ["order DG1 is on its way"]
