"""The evaluation questions are held out: no article may carry one of them as a customer wording.

Articles list the wordings they answer (front matter `questions:`), indexed beside
their sections. A wording copied from knowledge/eval would make the benchmarks
measure recall of what they were given, not retrieval.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from knowledge.articles import load_corpus
from knowledge.config import KnowledgeConfig
from knowledge.evalset import load_questions

_NOT_WORD = re.compile(r"[\W_]+")


def normalised(text: str) -> str:
    return _NOT_WORD.sub("", text.lower())


def held_out(eval_dir: Path) -> set[tuple[str, str]]:
    texts = {(q.language, normalised(q.text)) for q in load_questions(eval_dir)}
    for path in sorted((eval_dir / "followups").glob("*.yml")):
        for pair in (yaml.safe_load(path.read_text("utf-8")) or {}).get("followups", []):
            texts.add((path.stem, normalised(str(pair["q"]))))
            texts.add((path.stem, normalised(str(pair["first"]))))
    return texts


def leaked(articles_dir: Path, eval_dir: Path) -> list[str]:
    questions = held_out(eval_dir)
    return [
        f"{article.key}: {wording!r}"
        for article in load_corpus(articles_dir)
        for wording in article.questions
        if (article.language, normalised(wording)) in questions
    ]


def test_no_evaluation_question_is_an_article_wording() -> None:
    config = KnowledgeConfig()
    assert leaked(config.articles_dir, config.eval_dir) == []


def test_the_articles_carry_wordings_and_the_eval_set_has_follow_ups() -> None:
    config = KnowledgeConfig()
    articles = load_corpus(config.articles_dir)
    assert sum(len(a.questions) for a in articles if a.language == "zh") >= 200
    assert sum(len(a.questions) for a in articles if a.language == "en") >= 200
    for language in ("zh", "en"):
        pairs = yaml.safe_load((config.eval_dir / "followups" / f"{language}.yml").read_text("utf-8"))
        assert len(pairs["followups"]) >= 20


_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]+\)|\{[^}]+\})")


def nlu_examples(nlu_path: Path) -> list[tuple[str, str]]:
    """(intent, example text without entity annotations) of a Rasa NLU file."""
    data = yaml.safe_load(nlu_path.read_text("utf-8")) or {}
    return [
        (str(item["intent"]), _ANNOTATION.sub(r"\1", line.strip()[2:]))
        for item in data.get("nlu", [])
        if "intent" in item
        for line in str(item.get("examples", "")).splitlines()
        if line.strip().startswith("- ")
    ]


def leaked_into_nlu(nlu_path: Path, eval_dir: Path) -> list[str]:
    """NLU training examples that are evaluation questions: the containment bench goes through the NLU."""
    questions = {text for _, text in held_out(eval_dir)}
    return [f"{intent}: {text!r}" for intent, text in nlu_examples(nlu_path) if normalised(text) in questions]


def test_no_evaluation_question_is_an_nlu_training_example() -> None:
    assert leaked_into_nlu(Path("data/nlu.yml"), KnowledgeConfig().eval_dir) == []


def test_the_nlu_check_catches_a_copied_question(tmp_path: Path) -> None:
    config = KnowledgeConfig()
    eval_text = next(q for q in load_questions(config.eval_dir) if q.language == "zh").text
    nlu = tmp_path / "nlu.yml"
    nlu.write_text(
        f'version: "3.1"\nnlu:\n- intent: x\n  examples: |\n    - something else\n    - {eval_text}？\n',
        "utf-8",
    )
    assert leaked_into_nlu(nlu, config.eval_dir) == [f"x: {eval_text + '？'!r}"]


def test_the_check_catches_a_copied_question(tmp_path: Path) -> None:
    config = KnowledgeConfig()
    eval_text = next(q for q in load_questions(config.eval_dir) if q.language == "en").text
    (tmp_path / "articles" / "en").mkdir(parents=True)
    (tmp_path / "articles" / "en" / "a.md").write_text(
        "---\nid: a\ntitle: A\nlanguage: en\ncategory: x\ntags: [x]\nupdated: 2026-11-01\n"
        f'questions:\n  - "{eval_text.upper()}!"\n---\nSome text.\n',
        "utf-8",
    )
    assert leaked(tmp_path / "articles", config.eval_dir) == [f"en/a: {eval_text.upper() + '!'!r}"]


def test_the_fit_only_questions_are_not_evaluation_questions() -> None:
    config = KnowledgeConfig()
    fit_only = load_questions(config.eval_dir / "fit-none", fit_only=True)
    assert len([q for q in fit_only if q.language == "zh"]) >= 50 and all(q.split == "fit" for q in fit_only)
    assert all(q.article == "none" for q in fit_only)
    questions = held_out(config.eval_dir)
    assert [q.text for q in fit_only if (q.language, normalised(q.text)) in questions] == []
