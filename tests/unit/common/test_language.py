"""common.language: per-message language detection."""

import pytest

from common.language import detect_language, normalise_language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好", "zh"),
        ("hello", "en"),
        ("我要转人工", "zh"),
        ("I want a human", "en"),
        ("我的steam卡密用不了", "zh"),
        ("order号DG202611230017到哪了", "zh"),
        ("my 原神 top-up did not arrive yet, can you check it please", "en"),
        ("？？？", "zh"),
    ],
)
def test_detects_the_language_a_customer_writes(text: str, expected: str) -> None:
    assert detect_language(text) == expected


def test_text_without_letters_keeps_the_default() -> None:
    assert detect_language("DG202611230017"[2:], default="zh") == "zh"
    assert detect_language("12345", default="en") == "en"
    assert detect_language("", default="zh") == "zh"


@pytest.mark.parametrize(("value", "expected"), [("zh-CN", "zh"), ("EN", "en"), (None, "en"), ("fr", "en")])
def test_normalise_language(value: object, expected: str) -> None:
    assert normalise_language(value) == expected
