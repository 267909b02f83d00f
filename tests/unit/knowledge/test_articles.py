"""Article parsing: every bad input names its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.articles import ArticleError, load_corpus, parse_article
from tests.unit.knowledge.conftest import ARTICLES, write_corpus

GOOD = ARTICLES["en/refunds.md"]


def parse(tmp_path: Path, text: str) -> object:
    path = tmp_path / "a.md"
    path.write_text(text, encoding="utf-8")
    return parse_article(path)


def test_good_article(tmp_path: Path) -> None:
    article = parse(tmp_path, GOOD)
    assert article.id == "refunds" and article.language == "en" and article.tags == ("refund", "money back")
    assert article.body.startswith("# Refund policy")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("id: x\n", 1, "front matter missing"),
        ("---\nid: x\ntitle: T\n", 1, "not closed"),
        ("---\nid: x\ntitle: [unclosed\nlanguage: en\n---\nbody\n", 4, "broken front matter"),
        (GOOD.replace("id: refunds\n", ""), 2, "missing required field 'id'"),
        (GOOD.replace("language: en\n", ""), 2, "missing required field 'language'"),
        (GOOD.replace("language: en", "language: fr"), 4, "language must be one of"),
        (GOOD.replace("updated: 2026-11-01", "updated: soon"), 7, "updated must be a date"),
        (GOOD.split("---\n# Refund")[0] + "---\n\n# Only a heading\n", 9, "the article is empty"),
    ],
)
def test_bad_article_names_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    with pytest.raises(ArticleError) as caught:
        parse(tmp_path, text)
    assert caught.value.line == line
    assert message in str(caught.value)
    assert str(tmp_path / "a.md") in str(caught.value)


def test_duplicate_id_in_one_language(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "articles")
    (root / "en" / "refunds-copy.md").write_text(GOOD, encoding="utf-8")
    with pytest.raises(ArticleError) as caught:
        load_corpus(root)
    assert "duplicate id 'refunds' for language en" in str(caught.value)
    assert caught.value.line == 2


def test_same_id_in_two_languages_is_one_topic(tmp_path: Path) -> None:
    articles = load_corpus(write_corpus(tmp_path / "articles"))
    assert sorted(a.key for a in articles if a.id == "refunds") == ["en/refunds", "zh/refunds"]


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArticleError, match="no articles"):
        load_corpus(tmp_path / "empty")


def test_the_committed_articles_are_valid() -> None:
    articles = load_corpus(Path("knowledge/articles"))
    assert len(articles) >= 60
    ids = {lang: {a.id for a in articles if a.language == lang} for lang in ("zh", "en")}
    assert ids["zh"] == ids["en"], "every topic exists in both languages"
