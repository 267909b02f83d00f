"""bot.channels.messaging: splitting at platform limits, numbered choices, payloads."""

from __future__ import annotations

import pytest

from bot.channels.messaging import non_text_payload, numbered_choices, split_text, utf8_len, utf16_len


def test_short_text_is_one_part() -> None:
    assert split_text("  hello  ", 10) == ["hello"]


def test_parts_respect_the_limit_and_keep_every_word() -> None:
    text = " ".join(f"word{i}" for i in range(1000))
    parts = split_text(text, 100)
    assert all(len(part) <= 100 for part in parts)
    assert " ".join(parts).split() == text.split()


def test_paragraph_breaks_are_preferred() -> None:
    text = "a" * 60 + "\n\n" + "b" * 60
    assert split_text(text, 100) == ["a" * 60, "b" * 60]


def test_chinese_sentences_are_cut_after_the_full_stop() -> None:
    text = "这是第一句话。" * 40
    parts = split_text(text, 50, utf8_len)
    assert all(utf8_len(part) <= 50 for part in parts)
    assert all(part.endswith("。") for part in parts)
    assert "".join(parts) == text


def test_a_run_without_breaks_is_cut_on_character_boundaries() -> None:
    text = "字" * 1000
    parts = split_text(text, 2000, utf8_len)
    assert [utf8_len(p) for p in parts] == [1998, 1002]
    assert "".join(parts) == text


def test_utf16_counts_emoji_as_two_units_and_never_splits_them() -> None:
    assert utf16_len("a😀") == 3
    parts = split_text("😀" * 3000, 4096, utf16_len)
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert "".join(parts) == "😀" * 3000


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_text("x", 0)


def test_numbered_choices_list_every_button() -> None:
    text = numbered_choices("How was it?", [{"title": "Great", "payload": "/rate"}, {"payload": "/x"}])
    assert text == "How was it?\n1. Great\n2. /x"


def test_non_text_payload_carries_only_a_known_language() -> None:
    assert non_text_payload() == "/empty_message"
    assert non_text_payload("zh") == '/empty_message{"language": "zh"}'
    assert non_text_payload("fr") == "/empty_message"
