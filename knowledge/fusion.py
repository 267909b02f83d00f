"""Fitting the hybrid ranker, the confidence calibration and the answer thresholds.

Runs on the evaluation questions' fit split only (knowledge/evalset.py) right
after a build, and writes fusion.json into the build. The report split is left
for bench/kb_retrieval.py. For every method (dense, BM25, hybrid) and language:

- ranker (hybrid only): logistic regression over candidate features, label =
  "this chunk's article answers the question";
- calibration: logistic regression from (top score, gap to the second) to
  "the top article is right" (`none` questions count as wrong answers);
- thresholds: the pair (answer, suggest) that costs least on the fit split, by
  the cost function below, among the pairs that answer at most 5% of `none`
  questions (the promise to customers).

The cost function (per question; what a customer and a support team lose):

| what the bot does                               | answerable question | `none` question |
|-------------------------------------------------|---------------------|-----------------|
| answers from the right article                  | +1.0                | -               |
| answers from a wrong article                    | -3.0                | -3.0            |
| "did you mean" with the right title among three | +0.4                | -               |
| "did you mean" without it                       | -0.3                | -0.3            |
| hands over to a person                          | 0.0                 | 0.0 (right)     |

A right answer is the product's point; a "did you mean" with the right title
still costs the customer a click and a read, so it is worth less than half of
one; a wrong answer costs most, three times a right one, because the customer
acts on it (or loses trust) and a person has to undo it. Handing over costs
the team an agent's time and the customer a wait, which the +1 of a right
answer already counts as the thing missed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.config import KnowledgeConfig
from knowledge.evalset import Question, fitting_questions
from knowledge.index import load_snapshot
from knowledge.retriever import (
    DEFAULT_CALIBRATION,
    FEATURES,
    METHODS,
    HybridRetriever,
    Retriever,
    calibration_row,
    create,
)

logger = logging.getLogger(__name__)

NONE_ANSWER_RATE = 0.05
VALUE_RIGHT = 1.0
VALUE_WRONG = -3.0
VALUE_SUGGEST_HELPFUL = 0.4
VALUE_SUGGEST_UNHELPFUL = -0.3
GRID = [round(x, 3) for x in np.linspace(0.05, 0.99, 95)]


def _fit_logistic(rows: np.ndarray, labels: np.ndarray, c: float = 1.0) -> dict[str, Any]:
    """Logistic regression on standardised features, folded back so that rows @ coef + intercept applies.

    Standardising makes one regularisation strength mean the same for a cosine (a few hundredths
    apart with e5) and a BM25 log score (units apart).
    """
    from sklearn.linear_model import LogisticRegression

    if len(set(labels.tolist())) < 2:
        raise ValueError("need both right and wrong examples to fit")
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-6] = 1.0
    model = LogisticRegression(C=c, max_iter=5000)
    model.fit((rows - mean) / scale, labels)
    coef = model.coef_[0] / scale
    return {"coef": [float(x) for x in coef], "intercept": float(model.intercept_[0] - float(coef @ mean))}


RANKER_C = (0.01, 0.1, 1.0, 10.0)
# candidates for the hybrid's calibration (17 inputs), chosen by cross-validated log-loss
CALIBRATION_C = (0.01, 0.03, 0.1, 0.3, 1.0)
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
                "row": calibration_row(hits) if hits else [0.0, 0.0],
                "answerable": question.answerable,
                "right": bool(hits) and hits[0].article_id == question.article,
                "in_top3": any(h.article_id == question.article for h in hits),
            }
        )
    return rows


def outcome_value(row: dict[str, Any], confidence: float, answer: float, suggest: float) -> float:
    """What one question is worth to the customer and the team under the bands (answer, suggest)."""
    if confidence >= answer:
        return VALUE_RIGHT if row["answerable"] and row["right"] else VALUE_WRONG
    if confidence >= suggest:
        return VALUE_SUGGEST_HELPFUL if row["answerable"] and row["in_top3"] else VALUE_SUGGEST_UNHELPFUL
    return 0.0


def choose_thresholds(confidences: list[float], rows: list[dict[str, Any]]) -> tuple[float, float]:
    """The (answer, suggest) pair of least cost, answering at most NONE_ANSWER_RATE of `none` questions."""
    n_none = sum(1 for r in rows if not r["answerable"]) or 1
    best: tuple[float, float, float] | None = None
    for answer in GRID:
        none_rate = sum(
            1 for c, r in zip(confidences, rows, strict=True) if c >= answer and not r["answerable"]
        )
        if none_rate / n_none > NONE_ANSWER_RATE:
            continue
        for suggest in (g for g in GRID if g <= answer):
            value = sum(outcome_value(r, c, answer, suggest) for c, r in zip(confidences, rows, strict=True))
            # ties go to the higher bars (the grid ascends): answer and suggest less, the cautious choice
            if best is None or value >= best[0] - 1e-9:
                best = (value, answer, suggest)
    if best is None:
        return GRID[-1], GRID[-1] / 2
    return best[1], best[2]


def _calibration_c(features: np.ndarray, labels: np.ndarray) -> float:
    """The regularisation of a many-input calibration, by cross-validated log-loss on the fit split.

    Some 200 questions and 17 inputs: too little regularisation learns the fit split's few
    `none` questions by heart, and the answer band then lets through many more elsewhere.
    """
    best_c, best_loss = CALIBRATION_C[0], float("inf")
    for c in CALIBRATION_C:
        losses = []
        for fold in range(CV_FOLDS):
            held = np.arange(len(labels)) % CV_FOLDS == fold
            if len(set(labels[~held].tolist())) < 2:
                continue
            model = _fit_logistic(features[~held], labels[~held], c=c)
            logits = features[held] @ np.asarray(model["coef"]) + model["intercept"]
            p = np.clip(1 / (1 + np.exp(-logits)), 1e-6, 1 - 1e-6)
            y = labels[held]
            losses.append(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))
        loss = float(np.mean(losses)) if losses else float("inf")
        if loss < best_loss - 1e-9:
            best_c, best_loss = c, loss
    return best_c


def _out_of_fold(features: np.ndarray, labels: np.ndarray, c: float) -> list[float]:
    """Each question's confidence from a calibration fitted without it; [] where a fold cannot fit."""
    out = np.zeros(len(labels))
    for fold in range(CV_FOLDS):
        held = np.arange(len(labels)) % CV_FOLDS == fold
        if len(set(labels[~held].tolist())) < 2:
            return []
        model = _fit_logistic(features[~held], labels[~held], c=c)
        out[held] = 1 / (1 + np.exp(-(features[held] @ np.asarray(model["coef"]) + model["intercept"])))
    return [float(x) for x in out]


def fit_calibration(retriever: Retriever, questions: list[Question], language: str) -> dict[str, Any]:
    rows = outcomes(retriever, questions, language)
    width = max(len(r["row"]) for r in rows) if rows else 2
    # the hybrid's confidence also reads the top hit's features (is a customer wording close, how much
    # of the question does the section cover): top score and gap alone cannot tell a near miss
    # ("send the code as a gift with a greeting") from a question the article answers
    features = np.asarray([r["row"] + [0.0] * (width - len(r["row"])) for r in rows])
    labels = np.asarray([int(r["right"]) for r in rows])
    try:
        c = _calibration_c(features, labels) if width > 2 else 10.0
        model = _fit_logistic(features, labels, c=c)
        model["c"] = c
    except ValueError:
        model = dict(DEFAULT_CALIBRATION)
    coef = np.asarray(model["coef"])
    confidences = [
        float(1 / (1 + np.exp(-(model["intercept"] + float(coef @ f[: len(coef)]))))) for f in features
    ]
    if width > 2 and "c" in model:
        # the bands are chosen on out-of-fold confidences: a model scored on the questions it was fitted
        # on has pushed exactly those `none` questions down, and would set the bar too low
        confidences = _out_of_fold(features, labels, float(model["c"])) or confidences
    answer, suggest = choose_thresholds(confidences, rows)
    model.update(answer_threshold=answer, suggest_threshold=suggest, fitted_on=len(rows))
    return model


def fit(build_dir: Path, config: KnowledgeConfig) -> dict[str, Any]:
    """Fit every model on the fit split and write build_dir/fusion.json (no-op without questions)."""
    questions = fitting_questions(config.eval_dir) if config.eval_dir.is_dir() else []
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
