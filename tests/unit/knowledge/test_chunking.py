"""Chunks follow headings, then sentences, in both languages."""

from __future__ import annotations

from pathlib import Path

from knowledge.articles import parse_article
from knowledge.chunking import chunk_article, split_sentences
from tests.unit.knowledge.conftest import ARTICLES


def article(tmp_path: Path, name: str, text: str | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "a.md"
    path.write_text(text or ARTICLES[name], encoding="utf-8")
    return parse_article(path)


def test_one_chunk_per_section_with_its_heading(tmp_path: Path) -> None:
    chunks = chunk_article(article(tmp_path, "en/refunds.md"))
    assert [c.heading for c in chunks] == ["Refund policy", "How long does a refund take?"]
    assert chunks[0].text.startswith("Unredeemed card codes")
    assert chunks[1].display_text.startswith("How long does a refund take?\n")
    assert "Refund policy" in chunks[1].index_text and "refund" in chunks[1].index_text


def test_chinese_sentences_split_without_spaces() -> None:
    assert split_sentences("第一句。第二句！第三句？") == ["第一句。", "第二句！", "第三句？"]
    assert split_sentences("One. Two! Three?") == ["One.", "Two!", "Three?"]
    assert split_sentences("1. step one\n2. step two") == ["1. step one", "2. step two"]


def test_long_sections_are_cut_at_sentences(tmp_path: Path) -> None:
    body = "很长的一句话，说明退款规则。" * 40
    text = ARTICLES["zh/refunds.md"].split("---\n未兑换")[0] + "---\n" + body + "\n"
    chunks = chunk_article(article(tmp_path, "", text), max_chars_zh=120)
    assert len(chunks) > 3
    assert all(len(c.text) <= 120 for c in chunks)
    assert all(c.text.endswith("。") for c in chunks)
    assert "".join(c.text for c in chunks) == body
