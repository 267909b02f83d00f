"""bot.nlu.language: the language entity that fills the language slot."""

import pytest
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message

from bot.nlu.language import LanguageDetector


@pytest.fixture
def detector() -> LanguageDetector:
    return LanguageDetector(LanguageDetector.get_default_config())


def language_entities(detector: LanguageDetector, text: str) -> list[str]:
    message = Message(data={TEXT: text})
    detector.process([message])
    return [e["value"] for e in message.get(ENTITIES, []) if e["entity"] == "language"]


@pytest.mark.parametrize(
    ("text", "language"), [("你好", "zh"), ("hello", "en"), ("我的steam卡密用不了", "zh")]
)
def test_every_message_with_words_is_tagged(detector: LanguageDetector, text: str, language: str) -> None:
    assert language_entities(detector, text) == [language]


@pytest.mark.parametrize(
    "text",
    ["DG202611230017", "K7QM-2XPA-9FTR-4WZD", "K7QM-****-****-4WZD", "13812345678", "li@example.com", "👍"],
)
def test_ids_alone_keep_the_conversation_language(detector: LanguageDetector, text: str) -> None:
    assert language_entities(detector, text) == []


def test_existing_entities_are_kept(detector: LanguageDetector) -> None:
    message = Message(data={TEXT: "order DG202611230017", ENTITIES: [{"entity": "order_id", "value": "x"}]})
    detector.process([message])
    assert [e["entity"] for e in message.get(ENTITIES)] == ["order_id", "language"]
