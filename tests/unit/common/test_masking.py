"""common.masking: card codes never leave the chat bubble whole."""

import time
from pathlib import Path

import pytest

from common.masking import CARD_CODE_KEY_ENV, CodeSealer, card_code_secret, find_card_codes, mask_card_codes


def test_masks_the_middle_of_every_code() -> None:
    text = "code K7QM-2XPA-9FTR-4WZD and 卡密AB12-CD34-EF56-GH78不行"
    assert mask_card_codes(text) == "code K7QM-****-****-4WZD and 卡密AB12-****-****-GH78不行"


def test_leaves_other_text_alone() -> None:
    assert (
        mask_card_codes("order DG202611230017, phone 13812345678")
        == "order DG202611230017, phone 13812345678"
    )


def test_codes_typed_with_spaces_or_no_separator_are_masked_too() -> None:
    assert mask_card_codes("k7qm 2xpa 9ftr 4wzd") == "K7QM-****-****-4WZD"
    assert mask_card_codes("码K7QM2XPA9FTR4WZD不行") == "码K7QM-****-****-4WZD不行"


def test_plain_words_and_bank_card_digits_are_not_codes() -> None:
    # four English words and sixteen digits are not card codes (bank cards are issue 10's redaction)
    assert mask_card_codes("this code does work") == "this code does work"
    assert find_card_codes("6222 0212 3456 7890") == []


def test_masked_text_is_left_as_it_is() -> None:
    assert mask_card_codes("K7QM-****-****-4WZD") == "K7QM-****-****-4WZD"


def test_sealed_codes_round_trip_and_resist_forgery() -> None:
    sealer = CodeSealer("secret-a")
    token = sealer.seal("K7QM-2XPA-9FTR-4WZD")
    assert "2XPA" not in token
    assert sealer.unseal(token) == "K7QM-2XPA-9FTR-4WZD"
    assert CodeSealer("secret-b").unseal(token) is None, "another key cannot open it"
    assert sealer.unseal(token[:-4] + "AAAA") is None, "a changed token is refused"
    assert sealer.unseal("not a token") is None


def test_sealed_codes_expire() -> None:
    sealer = CodeSealer("secret")
    token = sealer.seal("K7QM-2XPA-9FTR-4WZD")
    assert sealer.unseal(token, ttl=3600, now=time.time() + 3000) == "K7QM-2XPA-9FTR-4WZD"
    assert sealer.unseal(token, ttl=3600, now=time.time() + 3700) is None


def test_the_demo_key_is_generated_once_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CARD_CODE_KEY_ENV, raising=False)
    monkeypatch.setattr("common.settings.load_env_file", lambda *a, **k: {})
    first = card_code_secret(tmp_path)
    assert card_code_secret(tmp_path) == first
    assert (tmp_path / "secrets" / "card-code.key").stat().st_mode & 0o077 == 0
    monkeypatch.setenv(CARD_CODE_KEY_ENV, "from-env")
    assert card_code_secret(tmp_path) == "from-env"


@pytest.mark.parametrize(
    "typed",
    [
        "K7QM-2XPA 9FTR-4WZD",  # mixed separators
        "K7QM - 2XPA - 9FTR - 4WZD",
        "K7QM–2XPA–9FTR–4WZD",  # en dashes
        "**K7QM-2XPA-9FTR-4WZD**",  # markdown bold
        "K7QM.2XPA.9FTR.4WZD",
        "Ｋ７ＱＭ－２ＸＰＡ－９ＦＴＲ－４ＷＺＤ",  # full width, from a Chinese input method
    ],
)
def test_codes_typed_in_odd_ways_are_masked(typed: str) -> None:
    masked = mask_card_codes(f"卡密 {typed} 用不了")
    assert "2XPA" not in masked and "２ＸＰＡ" not in masked and "K7QM-****-****-4WZD" in masked
    assert find_card_codes(typed) == ["K7QM-2XPA-9FTR-4WZD"]
