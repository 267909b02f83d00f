"""Reading knowledge articles: Markdown with YAML front matter, checked strictly.

Every problem is reported as an ArticleError naming the file and line, so an
editor can fix it; the build refuses the whole corpus rather than indexing a
half-read article.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

LANGUAGES = ("zh", "en")
REQUIRED_FIELDS = ("id", "title", "language", "category", "tags", "updated")


class ArticleError(ValueError):
    """A problem in one article, with where it is."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Article:
    """One help article in one language."""

    id: str
    title: str
    language: str
    category: str
    tags: tuple[str, ...]
    updated: str
    url: str
    body: str
    path: Path
    body_line: int  # 1-based line where the Markdown body starts
    # customer wordings the article answers (front matter `questions:`), indexed beside its sections
    questions: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Unique per language: the same topic has the same id in zh and en."""
        return f"{self.language}/{self.id}"

    @property
    def content_hash(self) -> str:
        meta = (
            f"{self.id}\n{self.title}\n{self.language}\n{self.category}\n{','.join(self.tags)}\n{self.url}\n"
        )
        asked = "\n".join(self.questions)
        return hashlib.sha256((meta + asked + "\n" + self.body).encode("utf-8")).hexdigest()


def _front_matter(path: Path, text: str) -> tuple[dict[str, object], str, int]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise ArticleError(path, 1, "front matter missing: the file must start with a '---' line")
    for number, line in enumerate(lines[1:], start=2):
        if line.strip() == "---":
            end = number
            break
    else:
        raise ArticleError(path, 1, "front matter is not closed: no second '---' line")
    raw = "\n".join(lines[1 : end - 1])
    try:
        meta = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = int(mark.line) + 2 if mark is not None else 2
        problem = getattr(exc, "problem", None) or str(exc)
        raise ArticleError(path, where, f"broken front matter: {problem}") from exc
    if not isinstance(meta, dict):
        raise ArticleError(path, 2, "front matter must be a YAML mapping (key: value lines)")
    body = "\n".join(lines[end:])
    return meta, body, end + 1


def _field_line(text: str, name: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(f"{name}:"):
            return number
    return 2


def parse_article(path: Path, text: str | None = None) -> Article:
    """Parse and check one article file."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ArticleError(path, 1, f"not UTF-8 text ({exc.reason})") from exc
    meta, body, body_line = _front_matter(path, text)
    for name in REQUIRED_FIELDS:
        value = meta.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ArticleError(path, 2, f"missing required field '{name}'")
    article_id = str(meta["id"]).strip()
    if not article_id.replace("-", "").replace("_", "").isalnum() or article_id.lower() == "none":
        raise ArticleError(
            path, _field_line(text, "id"), f"id {article_id!r} must be letters, digits, - or _"
        )
    language = str(meta["language"]).strip()
    if language not in LANGUAGES:
        raise ArticleError(
            path, _field_line(text, "language"), f"language must be one of {LANGUAGES}, not {language!r}"
        )
    tags = meta["tags"]
    if not isinstance(tags, list) or not all(isinstance(t, (str, int)) for t in tags):
        raise ArticleError(path, _field_line(text, "tags"), "tags must be a list, e.g. [refund, policy]")
    updated = meta["updated"]
    if not isinstance(updated, date):
        try:
            updated = date.fromisoformat(str(updated))
        except ValueError as exc:
            raise ArticleError(
                path, _field_line(text, "updated"), "updated must be a date (YYYY-MM-DD)"
            ) from exc
    questions = meta.get("questions") or []
    if not isinstance(questions, list) or not all(
        isinstance(q, (str, int)) and str(q).strip() for q in questions
    ):
        raise ArticleError(
            path,
            _field_line(text, "questions"),
            'questions must be a list of wordings, e.g. ["退款多久到账"]',
        )
    if not _has_text(body):
        raise ArticleError(path, body_line, "the article is empty: write some text after the front matter")
    return Article(
        id=article_id,
        title=str(meta["title"]).strip(),
        language=language,
        category=str(meta["category"]).strip(),
        tags=tuple(str(t) for t in tags),
        updated=updated.isoformat(),
        url=str(meta.get("url") or ""),
        body=body.strip(),
        path=path,
        body_line=body_line,
        questions=tuple(dict.fromkeys(str(q).strip() for q in questions)),
    )


def _has_text(body: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("#") for line in body.splitlines())


def load_corpus(articles_dir: Path) -> list[Article]:
    """Every article under articles_dir (recursively), checked for duplicate ids per language."""
    if not articles_dir.is_dir():
        raise ArticleError(articles_dir, 0, "articles directory not found")
    articles: list[Article] = []
    seen: dict[str, Path] = {}
    for path in sorted(articles_dir.rglob("*.md")):
        article = parse_article(path)
        if article.key in seen:
            raise ArticleError(
                path,
                _field_line(path.read_text(encoding="utf-8"), "id"),
                f"duplicate id {article.id!r} for language {article.language} (also in {seen[article.key]})",
            )
        seen[article.key] = path
        articles.append(article)
    if not articles:
        raise ArticleError(articles_dir, 0, "no articles (*.md) found")
    return articles
