"""Fitting the hybrid ranker, the confidence calibration and the answer thresholds.

Runs on the evaluation questions' fit split only (knowledge/evalset.py) right
after a build, and writes fusion.json into the build. The report split is left
for bench/kb_retrieval.py. For every method (dense, BM25, hybrid) and language:

- ranker (hybrid only): logistic regression over candidate features, label =
  "this chunk's article answers the question";
- calibration: logistic regression from (top score, gap to the second) to
  "the top article is right" (`none` questions count as wrong answers);
- thresholds: the answer threshold is the lowest confidence at which the fit
  split keeps precision >= 0.93 and answers <= 7% of `none` questions (a
  margin over the 0.90 / 10% promise); the suggest threshold maximises
  helpful "did you mean" lists (right article in the top three) against
  unhelpful ones below it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.config import KnowledgeConfig
from knowledge.evalset import Question, load_questions
from knowledge.index import load_snapshot
from knowledge.retriever import DEFAULT_CALIBRATION, FEATURES, METHODS, HybridRetriever, Retriever, create

logger = logging.getLogger(__name__)

ANSWER_PRECISION = 0.95
NONE_ANSWER_RATE = 0.05
GRID = [round(x, 3) for x in np.linspace(0.05, 0.99, 95)]


def _fit_logistic(rows: np.ndarray, labels: np.ndarray, c: float = 1.0) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    if len(set(labels.tolist())) < 2:
        raise ValueError("need both right and wrong examples to fit")
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(rows, labels)
    return {"coef": [float(x) for x in model.coef_[0]], "intercept": float(model.intercept_[0])}


RANKER_C = (0.1, 1.0, 10.0, 100.0)
CV_FOLDS = 4


def _question_rows(
    retriever: HybridRetriever, questions: list[Question], language: str
) -> list[tuple[np.ndarray, np.ndarray, list[str], str]]:
    index = retriever.index(language)
    out = []
    for question in questions:
        candidates, features = retriever.candidate_features(question.text, language)
        articles = [index.chunks[c].article_id for c in candidates]
        labels = np.asarray([int(a == question.article) for a in articles])
        out.append((features, labels, articles, question.article))
    return out


def _top1(model: dict[str, Any], rows: list[tuple[np.ndarray, np.ndarray, list[str], str]]) -> float:
    right = 0
    answerable = [r for r in rows if r[3] != "none" and len(r[2])]
    for features, _, articles, gold in answerable:
        logits = features @ np.asarray(model["coef"]) + model["intercept"]
        right += int(articles[int(np.argmax(logits))] == gold)
    return right / max(len(answerable), 1)


def fit_ranker(retriever: HybridRetriever, questions: list[Question], language: str) -> dict[str, Any]:
    """Logistic ranker; its regularisation is chosen by cross-validated R@1 inside the fit split."""
    rows = _question_rows(retriever, questions, language)

    def stack(part: list[tuple[np.ndarray, np.ndarray, list[str], str]]) -> tuple[np.ndarray, np.ndarray]:
        usable = [r for r in part if len(r[2])]
        return np.vstack([r[0] for r in usable]), np.concatenate([r[1] for r in usable])

    scores = {}
    for c in RANKER_C:
        folds = []
        for fold in range(CV_FOLDS):
            train = [r for i, r in enumerate(rows) if i % CV_FOLDS != fold]
            held = [r for i, r in enumerate(rows) if i % CV_FOLDS == fold]
            folds.append(_top1(_fit_logistic(*stack(train), c=c), held))
        scores[c] = float(np.mean(folds))
    best_c = max(RANKER_C, key=lambda c: (round(scores[c], 6), -c))
    model = _fit_logistic(*stack(rows), c=best_c)
    model.update(
        features=list(FEATURES), c=best_c, cv_recall_at_1={str(c): round(v, 4) for c, v in scores.items()}
    )
    return model


def outcomes(retriever: Retriever, questions: list[Question], language: str) -> list[dict[str, Any]]:
    """Per question: top score, gap, whether the top / top-3 article is right."""
    rows = []
    for question in questions:
        hits = retriever.search(question.text, language, k=3)
        top = hits[0].score if hits else 0.0
        gap = top - (hits[1].score if len(hits) > 1 else 0.0)
        rows.append(
            {
                "top": top,
                "gap": gap,
                "answerable": question.answerable,
                "right": bool(hits) and hits[0].article_id == question.article,
                "in_top3": any(h.article_id == question.article for h in hits),
            }
        )
    return rows


def choose_thresholds(confidences: list[float], rows: list[dict[str, Any]]) -> tuple[float, float]:
    answer = GRID[-1]
    n_none = sum(1 for r in rows if not r["answerable"]) or 1
    for t in GRID:
        answered = [r for c, r in zip(confidences, rows, strict=True) if c >= t]
        if not answered:
            continue
        precision = sum(r["right"] for r in answered) / len(answered)
        none_rate = sum(not r["answerable"] for r in answered) / n_none
        if precision >= ANSWER_PRECISION and none_rate <= NONE_ANSWER_RATE:
            answer = t
            break
    best, suggest = -1e9, answer / 2
    for t in (g for g in GRID if g < answer):
        value = 0.0
        for c, r in zip(confidences, rows, strict=True):
            if t <= c < answer:
                value += 1.0 if r["in_top3"] else -0.5
        if value > best:
            best, suggest = value, t
    return answer, suggest


def fit_calibration(retriever: Retriever, questions: list[Question], language: str) -> dict[str, Any]:
    rows = outcomes(retriever, questions, language)
    features = np.asarray([[r["top"], r["gap"]] for r in rows])
    labels = np.asarray([int(r["right"]) for r in rows])
    try:
        model = _fit_logistic(features, labels, c=10.0)
    except ValueError:
        model = dict(DEFAULT_CALIBRATION)
    confidences = [
        float(1 / (1 + np.exp(-(model["intercept"] + model["coef"][0] * f[0] + model["coef"][1] * f[1]))))
        for f in features
    ]
    answer, suggest = choose_thresholds(confidences, rows)
    model.update(answer_threshold=answer, suggest_threshold=suggest, fitted_on=len(rows))
    return model


def fit(build_dir: Path, config: KnowledgeConfig) -> dict[str, Any]:
    """Fit every model on the fit split and write build_dir/fusion.json (no-op without questions)."""
    questions = (
        [q for q in load_questions(config.eval_dir) if q.split == "fit"] if config.eval_dir.is_dir() else []
    )
    snapshot = load_snapshot(build_dir)
    fusion: dict[str, Any] = {}
    for language in snapshot.languages:
        mine = [q for q in questions if q.language == language]
        if len([q for q in mine if q.answerable]) < 10 or not snapshot.languages[language].chunks:
            logger.info("too few %s evaluation questions to fit; default fusion weights", language)
            continue
        entry: dict[str, Any] = {"questions": len(mine)}
        snapshot.fusion = {**snapshot.fusion, language: entry}
        hybrid = HybridRetriever(snapshot)
        entry["ranker"] = fit_ranker(hybrid, mine, language)
        entry["calibration"] = {}
        for method in METHODS:
            entry["calibration"][method] = fit_calibration(create(snapshot, method), mine, language)
        fusion[language] = entry
    (build_dir / "fusion.json").write_text(json.dumps(fusion, indent=2), "utf-8")
    return fusion
