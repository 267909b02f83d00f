"""Cutting articles into retrievable chunks: by headings first, then by sentences.

A chunk is what the bot shows as an answer, so it keeps its section heading and
never ends mid-sentence; chunks of one section stay under a size that reads
well in a chat bubble (shorter for Chinese, which packs more per character).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from knowledge.articles import Article

_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
# zh sentence ends (。！？；) need no space after them; en ends need one
_SENTENCE_END = re.compile(r"(?<=[。！？；!?])|(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class Chunk:
    """A piece of one article, with the text to show and the text to index."""

    article_id: str
    language: str
    title: str
    heading: str
    text: str
    position: int  # 0 = the article's introduction
    url: str
    tags: tuple[str, ...] = ()
    category: str = ""

    @property
    def chunk_id(self) -> str:
        return f"{self.language}/{self.article_id}#{self.position}"

    @property
    def index_text(self) -> str:
        """Title, tags and heading give a short section its context."""
        heading = "" if self.heading == self.title else f"{self.heading}\n"
        tags = f"{' '.join(self.tags)}\n" if self.tags else ""
        return f"{self.title}\n{tags}{heading}{self.text}"

    @property
    def display_text(self) -> str:
        if self.position == 0 or self.heading == self.title:
            return self.text
        return f"{self.heading}\n{self.text}"


def split_sentences(text: str) -> list[str]:
    """Sentences (and list items) of a paragraph block, zh and en aware."""
    sentences: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        # list items are natural units already
        if re.match(r"^([-*+]|\d+[.)、])\s*", line):
            sentences.append(line)
            continue
        sentences.extend(s.strip() for s in _SENTENCE_END.split(line) if s and s.strip())
    return sentences


def _sections(body: str, title: str) -> list[tuple[str, str]]:
    sections: list[tuple[str, list[str]]] = [(title, [])]
    for line in body.splitlines():
        match = _HEADING.match(line)
        if match:
            level = len(match.group(1))
            if level == 1:
                continue  # the article title repeated in the body
            sections.append((match.group(2).strip(), []))
        else:
            sections[-1][1].append(line)
    return [(heading, "\n".join(lines).strip()) for heading, lines in sections if "\n".join(lines).strip()]


def _pack(sentences: list[str], limit: int, joiner: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for sentence in sentences:
        if current and size + len(sentence) > limit:
            pieces.append(joiner.join(current))
            current, size = [], 0
        current.append(sentence)
        size += len(sentence) + len(joiner)
    if current:
        pieces.append(joiner.join(current))
    return pieces


def chunk_article(article: Article, max_chars_en: int = 700, max_chars_zh: int = 300) -> list[Chunk]:
    limit = max_chars_zh if article.language == "zh" else max_chars_en
    chunks: list[Chunk] = []
    for heading, text in _sections(article.body, article.title):
        if len(text) <= limit:
            pieces = [text]
        else:
            # keep list layout when a long section is split
            joiner = "\n" if "\n" in text else ("" if article.language == "zh" else " ")
            pieces = _pack(split_sentences(text), limit, joiner)
        for piece in pieces:
            chunks.append(
                Chunk(
                    article_id=article.id,
                    language=article.language,
                    title=article.title,
                    heading=heading,
                    text=piece,
                    position=len(chunks),
                    url=article.url,
                    tags=article.tags,
                    category=article.category,
                )
            )
    return chunks
