"""The trained model's NLU on awkward input: every message gets an intent, nothing raises.

Loads the model `make setup` trained (models/assistant-<hash>.tar.gz) in process; no server.
Punctuation-only text has no tokens, so the count vectors and the sentence embedding add
nothing; the intent classifier leaves an empty intent that FallbackClassifier turns into
nlu_fallback.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scripts.model import model_path


@pytest.fixture(scope="module")
def agent() -> Any:
    from rasa.core.agent import Agent

    # no model is a broken set-up, not a reason to skip
    if not model_path().is_file():
        pytest.fail(f"{model_path()} is missing: run `make setup`")

    return Agent.load(str(model_path()))


def parse(agent: Any, text: str) -> dict[str, Any]:
    return asyncio.run(agent.parse_message(text))


@pytest.mark.parametrize("text", ["?", "？？", "...", "。", "!!!", "👍"])
def test_messages_without_words_fall_back(agent: Any, text: str) -> None:
    parsed = parse(agent, text)
    assert parsed["intent"]["name"] == "nlu_fallback"


def test_a_huge_message_is_classified(agent: Any) -> None:
    parsed = parse(agent, "my card code does not work " * 400)
    assert parsed["intent"]["name"] in ("card_code_problem", "nlu_fallback")


@pytest.mark.parametrize(
    ("text", "intent"),
    [("hello", "greet"), ("你好", "greet"), ("转人工", "ask_human"), ("where is my order", "order_status")],
)
def test_plain_messages_get_their_intent_with_the_shipped_threshold(
    agent: Any, text: str, intent: str
) -> None:
    parsed = parse(agent, text)
    assert parsed["intent"]["name"] == intent
    assert parsed["intent"]["confidence"] >= 0.8


def test_entities_come_from_the_regexes_glued_to_chinese_too(agent: Any) -> None:
    parsed = parse(agent, "我的订单DG202611230017到哪了")
    assert parsed["intent"]["name"] == "order_status"
    assert [e["value"] for e in parsed["entities"] if e["entity"] == "order_id"] == ["DG202611230017"]


def test_payload_messages_skip_the_classifier(agent: Any) -> None:
    parsed = parse(agent, "/affirm")
    assert parsed["intent"]["name"] == "affirm" and parsed["intent"]["confidence"] == 1.0
