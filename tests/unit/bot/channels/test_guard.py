"""bot.channels.guard: what every channel does with raw customer input."""

import json

import pytest

from bot.channels.guard import EMPTY_MESSAGE_INTENT, TOO_LONG_INTENT, inspect_message, valid_sender_id
from common.masking import SEALED_CODES_KEY, CodeSealer


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


@pytest.mark.parametrize("sender", ["abc", "user_1", "web:oABC-123", "a" * 128, "x@y.z"])
def test_valid_sender_ids(sender: str) -> None:
    assert valid_sender_id(sender)


@pytest.mark.parametrize(
    "sender", [None, "", "a" * 129, "has space", "semi;colon", 42, "中文", "wx:oABC-123", "tg:42"]
)
def test_invalid_sender_ids(sender: object) -> None:
    assert not valid_sender_id(sender)


def test_card_codes_are_masked_and_sealed_for_the_action_server() -> None:
    sealer = CodeSealer("test-secret")
    inspected = inspect_message("卡密 k7qm 2xpa 9ftr 4wzd 用不了", 2000, sealer)
    assert inspected.text == "卡密 K7QM-****-****-4WZD 用不了"
    (token,) = inspected.metadata[SEALED_CODES_KEY]
    assert "2XPA" not in token and sealer.unseal(token) == "K7QM-2XPA-9FTR-4WZD"


def test_a_client_cannot_supply_sealed_codes() -> None:
    forged = {SEALED_CODES_KEY: ["gAAAA-forged"], "ui_language": "zh"}
    inspected = inspect_message("hello", 2000, CodeSealer("k"), forged)
    assert inspected.metadata == {"ui_language": "zh"}


def test_rejected_long_message_keeps_only_a_masked_preview() -> None:
    inspected = inspect_message("code K7QM-2XPA-9FTR-4WZD " + "x" * 3000, 100, CodeSealer("k"))
    assert "2XPA" not in str(inspected.metadata) and "K7QM-****-****-4WZD" in str(inspected.metadata)


def test_a_client_cannot_pass_an_attachment_for_the_agent_to_see() -> None:
    inspected = inspect_message(
        "hello",
        2000,
        client_metadata={"attachment": {"type": "image", "url": "http://phish"}, "ui_language": "en"},
    )
    assert inspected.metadata == {"ui_language": "en"}


def test_client_metadata_is_an_allow_list() -> None:
    """Issue 23: {"rejected_message": "x"} broke the history and every later handoff."""
    inspected = inspect_message(
        "hello",
        2000,
        client_metadata={
            "rejected_message": "x",
            "client_address": "spoofed",
            "agent": "boss",
            "ui_language": "fr",
            "automatic": "yes",
            "button_title": "x" * 500,
        },
    )
    assert inspected.metadata == {"button_title": "x" * 200}
