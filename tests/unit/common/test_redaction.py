"""common.redaction: personal data masked, everything else left alone."""

import pytest

from common.redaction import cn_id_valid, luhn_valid, redact, redact_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call me on 13812345678", "call me on 138****5678"),
        ("电话 +86 139-1234-5678 谢谢", "电话 139****5678 谢谢"),
        ("UK: +44 20 7946 0958", "UK: +********0958"),
        ("mail zhang.san+shop@example.com.cn please", "mail z***@example.com.cn please"),
        ("card 4111 1111 1111 1111 was charged", "card **** **** **** 1111 was charged"),
        ("银行卡6222021234567894扣款了", "银行卡**** **** **** 7894扣款了"),
        ("身份证11010519491231002X", "身份证1*************002X"),
        ("amex 3782 822463 10005", "amex **** **** **** 0005"),
        ("4111 1111 1111 1111 123 yuan", "**** **** **** 1111 123 yuan"),
        ("code K7QM-2XPA-9FTR-4WZD", "code K7QM-****-****-4WZD"),
    ],
)
def test_personal_values_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order DG202611230017 is late",  # order id: digits glued to letters
        "6222021234567890",  # 16 digits failing the Luhn check: not a card
        "110105194912310021",  # wrong ID check character
        "at 1764600000123 ms",  # a millisecond timestamp
        "Steam ¥100, 5 min, 2026-12-01 15:33",
        "user@localhost",  # no domain with a dot: not an address anyone mails
    ],
)
def test_other_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_redaction_is_idempotent() -> None:
    text = "13812345678 a@b.cn 4111111111111111 11010519491231002X K7QM-2XPA-9FTR-4WZD"
    once = redact(text)
    assert redact(once) == once
    for secret in ("12345678", "a@b", "4111111111111111", "194912310", "2XPA"):
        assert secret not in once


def test_nested_data_is_redacted_keys_kept() -> None:
    data = {"phone": "13812345678", "lines": [{"text": "a@b.cn"}, 3], "n": None}
    assert redact_value(data) == {"phone": "138****5678", "lines": [{"text": "a***@b.cn"}, 3], "n": None}


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert not luhn_valid("41111x1111111111")
    assert cn_id_valid("11010519491231002x") and not cn_id_valid("11010519491231002")
