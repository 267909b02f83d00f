"""Tokens for BM25 and the dense encoder's view of Chinese."""

from __future__ import annotations

from knowledge.text import bm25_tokens, romanise


def test_english_tokens_are_stems_without_stopwords() -> None:
    assert bm25_tokens("How do I get my refunds?", "en") == ["get", "refund"]


def test_chinese_tokens_keep_shop_words_and_english() -> None:
    tokens = bm25_tokens("点卡充值失败怎么办 steam卡", "zh")
    assert "点卡" in tokens and "充值" in tokens and "失败" in tokens and "steam" in tokens
    assert "怎么" not in tokens


def test_romanise_turns_han_into_pinyin_and_keeps_the_rest() -> None:
    assert romanise("充值 Steam").split() == ["chong", "zhi", "Steam"]
    assert romanise("top up") == "top up"
