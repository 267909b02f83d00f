"""bot.channels.telegram without a network: reading updates."""

from __future__ import annotations

from typing import Any

import pytest

from bot.channels.telegram import TelegramChannel, Turn, _read_update, chat_id_of, sender_id_for


def message(**fields: Any) -> dict[str, Any]:
    return {
        "update_id": 1,
        "message": {"message_id": 5, "chat": {"id": 42}, "from": {"language_code": "zh-hans"}, **fields},
    }


def test_a_text_message_is_a_turn_with_the_users_language() -> None:
    turn = _read_update(message(text="你好"))
    assert isinstance(turn, Turn)
    assert (turn.sender_id, turn.text, turn.language, turn.kind) == ("tg:42", "你好", "zh", "message")


def test_a_button_press_is_a_turn_with_its_callback_id() -> None:
    update = {
        "update_id": 2,
        "callback_query": {
            "id": "cb1",
            "from": {"language_code": "en"},
            "data": "/ask_human",
            "message": {"chat": {"id": -100}},
        },
    }
    turn = _read_update(update)
    assert isinstance(turn, Turn)
    assert (turn.sender_id, turn.text, turn.callback_id, turn.kind) == (
        "tg:-100",
        "/ask_human",
        "cb1",
        "callback",
    )


def test_a_photo_becomes_an_attachment() -> None:
    turn = _read_update(message(photo=[{"file_id": "x"}], caption="my receipt"))
    assert isinstance(turn, Turn) and turn.attachment == {"type": "photo", "caption": "my receipt"}


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 1, "edited_message": {"text": "x"}},
        {"update_id": 1, "my_chat_member": {}},
        message(new_chat_members=[{}]),
    ],
)
def test_updates_that_need_no_answer_are_ignored(update: dict[str, Any]) -> None:
    assert _read_update(update) is None


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 1, "message": "text"},
        {"update_id": 1, "message": {"chat": {"id": "42"}, "text": "x"}},
        {"update_id": 1, "message": {"chat": {"id": True}, "text": "x"}},
        {"update_id": 1, "message": {"chat": {"id": 1}, "text": 5}},
        {"update_id": 1, "callback_query": {"id": "c", "data": "x"}},
    ],
)
def test_malformed_updates_are_described(update: dict[str, Any]) -> None:
    assert isinstance(_read_update(update), str)


def test_sender_ids_are_namespaced() -> None:
    assert sender_id_for(-5) == "tg:-5" and chat_id_of("tg:-5") == "-5"


def test_from_credentials_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "s3cret")
    channel = TelegramChannel.from_credentials({})
    assert (
        isinstance(channel, TelegramChannel)
        and channel.api is not None
        and channel.webhook_secret == "s3cret"
    )
