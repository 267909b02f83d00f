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
