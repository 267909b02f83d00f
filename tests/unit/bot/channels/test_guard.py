"""bot.channels.guard: what every channel does with raw customer input."""

import json

import pytest

from bot.channels.guard import EMPTY_MESSAGE_INTENT, TOO_LONG_INTENT, inspect_message, valid_sender_id


@pytest.mark.parametrize("raw", ["", "   ", "\n\t ", None])
def test_empty_input_becomes_the_empty_message_intent(raw: object) -> None:
    inspected = inspect_message(raw, max_chars=2000)
    assert inspected.text == f"/{EMPTY_MESSAGE_INTENT}"
    assert inspected.rejected == "empty"


def test_long_chinese_message_is_answered_in_chinese_and_kept_as_metadata() -> None:
    inspected = inspect_message("卡密" * 5000, max_chars=2000)
    intent, _, payload = inspected.text[1:].partition("{")
    assert intent == TOO_LONG_INTENT
    assert json.loads("{" + payload) == {"language": "zh"}
    rejected = inspected.metadata["rejected_message"]
    assert rejected["chars"] == 10000 and rejected["max_chars"] == 2000
    assert rejected["preview"].startswith("卡密卡密")


def test_long_english_message_is_answered_in_english() -> None:
    inspected = inspect_message("help " * 2000, max_chars=2000)
    assert inspected.text.endswith('{"language": "en"}')


def test_normal_message_is_stripped_and_passed_on() -> None:
    inspected = inspect_message("  你好  ", max_chars=2000)
    assert inspected.text == "你好" and inspected.rejected is None and inspected.metadata == {}


def test_non_string_input_is_turned_into_text() -> None:
    assert inspect_message(12345, max_chars=10).text == "12345"


@pytest.mark.parametrize("sender", ["abc", "user_1", "wx:oABC-123", "a" * 128, "x@y.z"])
def test_valid_sender_ids(sender: str) -> None:
    assert valid_sender_id(sender)


@pytest.mark.parametrize("sender", [None, "", "a" * 129, "has space", "semi;colon", 42, "中文"])
def test_invalid_sender_ids(sender: object) -> None:
    assert not valid_sender_id(sender)
