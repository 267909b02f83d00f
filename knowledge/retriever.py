"""The Retriever interface and its dense, BM25 and hybrid implementations.

All three search one language's chunks and return at most one hit per article
(its best chunk), best first. The hybrid retriever scores the union of both
candidate lists with a small logistic model over dense and lexical features
(fitted on the evaluation set's fit part, see knowledge/fusion.py); its top
score is then calibrated into the probability that the answer is right, which
is what the bot's answer / suggest / hand-off bands compare against.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.chunking import Chunk
from knowledge.config import KnowledgeConfig
from knowledge.index import LanguageIndex, Snapshot, current_dir, load_snapshot
from knowledge.text import bm25_tokens

logger = logging.getLogger(__name__)

CANDIDATES = 30
FEATURES = (
    "dense",
    "dense_gap",
    "bm25_rel",
    "bm25_log",
    "coverage",
    "bm25_rank",
    "dense_rank",
    "article_dense",
    "article_bm25_rel",
    "article_chunks",
    "char_overlap",
    "heading_dense",
    "article_heading_dense",
    "article_question_dense",
    "article_question_overlap",
)
# used when a corpus has no evaluation questions to fit on
DEFAULT_RANKER = {
    "coef": [6.0, 4.0, 2.0, 0.3, 2.0, 1.0, 1.0, 2.0, 1.0, 0.5, 1.0, 2.0, 1.0, 4.0, 1.0],
    "intercept": -11.0,
}
DEFAULT_CALIBRATION = {
    "coef": [1.0, 0.0],
    "intercept": 0.0,
    "answer_threshold": 0.6,
    "suggest_threshold": 0.3,
}


@dataclass(frozen=True)
class Hit:
    """One article found for a query, through its best chunk."""

    article_id: str
    title: str
    language: str
    heading: str
    chunk: str  # the chunk's display text
    score: float
    source: str  # the article's URL, or its title when it has none
    chunk_id: str
    category: str = ""
    # the hybrid's feature row of this chunk (FEATURES order): what the confidence calibration reads
    features: tuple[float, ...] = ()

    @classmethod
    def of(cls, chunk: Chunk, score: float = 1.0) -> Hit:
        """A chunk shown as it is (an article the customer picked, or one read from its file)."""
        return cls(
            article_id=chunk.article_id,
            title=chunk.title,
            language=chunk.language,
            heading=chunk.heading,
            chunk=chunk.display_text,
            score=score,
            source=chunk.url or chunk.title,
            chunk_id=chunk.chunk_id,
            category=chunk.category,
        )


_NOT_WORD = re.compile(r"[\W_]+")


def _compact(text: str) -> str:
    return _NOT_WORD.sub("", text.lower())


def _char_bigrams(text: str) -> set[str]:
    compact = _compact(text)
    return {compact[i : i + 2] for i in range(len(compact) - 1)}


def _char_overlap(wanted: set[str], text: str) -> float:
    """Share of the query's character bigrams found in the text: survives word segmentation
    that differs between question and article (充值失败 vs 充值 / 失败) and English typos."""
    if not wanted:
        return 0.0
    compact = _compact(text)
    return sum(1 for bigram in wanted if bigram in compact) / len(wanted)


_ZH_BACK = re.compile(
    r"^(那|那么|那如果|那要是|还有|另外|然后|如果|要是|万一|可是|但是)|这个|那个|它|这样|那样|这种"
)
_EN_POINTERS = {"it", "that", "this", "they", "them", "those", "these", "one", "there's"}
_EN_OPENERS = ("and ", "so ", "then ", "but ", "also ", "what about", "how about", "and if", "what if", "ok ")


def looks_elliptic(text: str, language: str) -> bool:
    """A short message that leans on what was said before: an opener like 那 / "and", or a pointer word."""
    stripped = text.strip().lower()
    if language == "zh":
        han = sum(1 for ch in stripped if "\u4e00" <= ch <= "\u9fff")
        return han <= 12 and bool(_ZH_BACK.search(stripped))
    words = re.findall(r"[a-z']+", stripped)
    if not words or len(words) > 10:
        return False
    return stripped.startswith(_EN_OPENERS) or any(w in _EN_POINTERS for w in words)


def calibration_row(hits: list[Hit]) -> list[float]:
    """What the confidence is computed from: top score, gap to the second article, the top's features."""
    top = hits[0].score
    gap = top - (hits[1].score if len(hits) > 1 else 0.0)
    return [top, gap, *hits[0].features]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 40.0), -40.0)))


class Retriever(ABC):
    """search(query, language, k) -> hits; confidence(hits) -> calibrated probability the first is right."""

    method = "base"

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def index(self, language: str) -> LanguageIndex:
        if language not in self.snapshot.languages:
            raise ValueError(f"unsupported language {language!r}")
        return self.snapshot.languages[language]

    @abstractmethod
    def scored_chunks(
        self, query: str, language: str, vector: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """(chunk index, score) pairs, best first; vector: the query's embedding when already known."""

    def scored_rows(
        self, query: str, language: str, vector: np.ndarray | None = None
    ) -> list[tuple[int, float, tuple[float, ...]]]:
        """(chunk index, score, feature row) triples, best first; only the hybrid has rows."""
        return [(i, score, ()) for i, score in self.scored_chunks(query, language, vector)]

    def search(self, query: str, language: str, k: int = 5, vector: np.ndarray | None = None) -> list[Hit]:
        """Hits for query; vector is its embedding when the NLU already computed it (once per turn)."""
        if not query.strip():
            return []
        index = self.index(language)
        hits: list[Hit] = []
        seen: set[str] = set()
        for chunk_index, score, features in self.scored_rows(query, language, vector):
            chunk = index.chunks[chunk_index]
            if chunk.article_id in seen:
                continue
            seen.add(chunk.article_id)
            hits.append(
                Hit(
                    article_id=chunk.article_id,
                    title=chunk.title,
                    language=chunk.language,
                    heading=chunk.heading,
                    chunk=chunk.display_text,
                    score=float(score),
                    source=chunk.url or chunk.title,
                    chunk_id=chunk.chunk_id,
                    category=chunk.category,
                    features=features,
                )
            )
            if len(hits) >= k:
                break
        return hits

    def search_in_context(
        self, query: str, previous: str | None, language: str, k: int = 5, vector: np.ndarray | None = None
    ) -> tuple[list[Hit], float, bool]:
        """(hits, confidence, read in context) for a message that may follow up on the previous question.

        "那多久到账？" after "怎么退款" means the refund's timing. The message is searched
        alone and joined to the previous question; the more confident reading wins, so a
        new topic right after an answer ("发票怎么开") keeps its own, clearer match.
        """
        hits = self.search(query, language, k, vector)
        confidence = self.confidence(hits, language)
        if not previous or not previous.strip() or not query.strip():
            return hits, confidence, False
        joined = self.search(f"{previous.strip()} {query.strip()}", language, k)
        joined_confidence = self.confidence(joined, language)
        answer_at, _ = self.thresholds(language)
        # a message that points back ("那多久到账", "how long does that take") means the topic before,
        # however well it matches some other heading alone; one that is answered confidently on its
        # own is a question of its own; in between, the more confident reading
        if joined and (
            looks_elliptic(query, language) or (confidence < answer_at and joined_confidence > confidence)
        ):
            return joined, joined_confidence, True
        return hits, confidence, False

    def calibration(self, language: str) -> dict[str, Any]:
        fitted = self.snapshot.fusion.get(language, {}).get("calibration", {}).get(self.method)
        return dict(fitted or DEFAULT_CALIBRATION)

    def confidence(self, hits: list[Hit], language: str) -> float:
        if not hits:
            return 0.0
        model = self.calibration(language)
        row = calibration_row(hits)
        coef = model["coef"]
        # a calibration fitted on the feature row too reads it; the default one reads top and gap
        used = row if len(coef) == len(row) else row[:2]
        return _sigmoid(model["intercept"] + sum(c * x for c, x in zip(coef, used, strict=False)))

    def thresholds(self, language: str) -> tuple[float, float]:
        model = self.calibration(language)
        return float(model["answer_threshold"]), float(model["suggest_threshold"])

    def understood(self, query: str, language: str) -> bool:
        """Whether the query shares any word with the knowledge base (else it is noise, not a question)."""
        vocabulary = self.index(language).bm25.vocabulary
        return any(token in vocabulary for token in bm25_tokens(query, language))

    def article(self, article_id: str, language: str) -> Hit | None:
        """The introduction of one article (for a suggestion the customer picked)."""
        for chunk in self.index(language).chunks:
            if chunk.article_id == article_id:
                return Hit.of(chunk)
        return None


class DenseRetriever(Retriever):
    method = "dense"

    def query_vector(self, query: str, vector: np.ndarray | None = None) -> np.ndarray:
        if vector is not None and vector.shape == (self.snapshot.encoder.dimensions,):
            return np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        return self.snapshot.encoder.queries([query])

    def scored_chunks(
        self, query: str, language: str, vector: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        index = self.index(language)
        if not index.chunks:
            return []
        scores, ids = index.faiss_index.search(
            self.query_vector(query, vector), min(CANDIDATES, len(index.chunks))
        )
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]


class BM25Retriever(Retriever):
    method = "bm25"

    def scored_chunks(
        self, query: str, language: str, vector: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        return self.index(language).bm25.top(bm25_tokens(query, language), CANDIDATES)


QUESTION_ARTICLES = 5


def _article_question_scores(index: LanguageIndex, vector: np.ndarray) -> dict[str, float]:
    """article id -> the cosine of its closest customer wording (front matter `questions:`)."""
    if not index.questions or index.question_vectors.shape[0] != len(index.questions):
        return {}
    scores = np.asarray(index.question_vectors @ vector, dtype=np.float32)
    best: dict[str, float] = {}
    for question, score in zip(index.questions, scores.tolist(), strict=True):
        if score > best.get(question.article_id, -1.0):
            best[question.article_id] = float(score)
    return best


def _article_question_overlap(index: LanguageIndex, wanted: set[str]) -> dict[str, float]:
    """article id -> the best share of the query's character bigrams found in one of its wordings."""
    best: dict[str, float] = {}
    for question in index.questions:
        share = _char_overlap(wanted, question.text)
        if share > best.get(question.article_id, 0.0):
            best[question.article_id] = share
    return best


class HybridRetriever(Retriever):
    method = "hybrid"

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot)
        self.dense = DenseRetriever(snapshot)

    def candidate_features(
        self, query: str, language: str, vector: np.ndarray | None = None
    ) -> tuple[list[int], np.ndarray]:
        """Candidate chunk indices and their feature rows (FEATURES order)."""
        index = self.index(language)
        if not index.chunks:
            return [], np.zeros((0, len(FEATURES)), dtype=np.float32)
        vector = self.dense.query_vector(query, vector)
        depth = min(CANDIDATES, len(index.chunks))
        _, dense_ids = index.faiss_index.search(vector, depth)
        dense_list = [int(i) for i in dense_ids[0] if i >= 0]
        tokens = bm25_tokens(query, language)
        lexical = index.bm25.scores(tokens)
        if lexical.any():
            top = np.argpartition(-lexical, depth - 1)[:depth]
            bm25_list = [int(i) for i in top[np.argsort(-lexical[top])] if lexical[i] > 0]
        else:
            bm25_list = []
        # articles whose customer wordings are close bring all their sections in as candidates
        question_scores = _article_question_scores(index, vector[0])
        asked = sorted(question_scores, key=lambda a: -question_scores[a])[:QUESTION_ARTICLES]
        asked_chunks = [i for i, c in enumerate(index.chunks) if c.article_id in asked]
        candidates = list(dict.fromkeys(dense_list + bm25_list + asked_chunks))
        dense_scores = np.asarray(index.vectors[candidates] @ vector[0], dtype=np.float32)
        lexical_scores = lexical[candidates]
        best_lexical = float(lexical.max()) if lexical.size else 0.0
        dense_rank = {c: r for r, c in enumerate(dense_list)}
        bm25_rank = {c: r for r, c in enumerate(bm25_list)}
        terms = list({index.bm25.vocabulary[t] for t in tokens if t in index.bm25.vocabulary})
        n_terms = len(set(tokens)) or 1
        if terms:
            present = index.bm25.weights[terms][:, candidates]
            coverage = np.asarray((present > 0).sum(axis=0)).ravel() / n_terms
        else:
            coverage = np.zeros(len(candidates))
        rows = np.zeros((len(candidates), len(FEATURES)), dtype=np.float32)
        rows[:, 0] = dense_scores
        rows[:, 1] = dense_scores - float(dense_scores.max())
        rows[:, 2] = lexical_scores / best_lexical if best_lexical > 0 else 0.0
        rows[:, 3] = np.log1p(lexical_scores)
        rows[:, 4] = coverage
        rows[:, 5] = [1.0 / (1 + bm25_rank[c]) if c in bm25_rank else 0.0 for c in candidates]
        rows[:, 6] = [1.0 / (1 + dense_rank[c]) if c in dense_rank else 0.0 for c in candidates]
        wanted = _char_bigrams(query)
        rows[:, 10] = [_char_overlap(wanted, index.chunks[c].index_text) for c in candidates]
        rows[:, 11] = np.asarray(index.heading_vectors[candidates] @ vector[0], dtype=np.float32)
        rows[:, 13] = [question_scores.get(index.chunks[c].article_id, 0.0) for c in candidates]
        overlap = _article_question_overlap(index, wanted)
        rows[:, 14] = [overlap.get(index.chunks[c].article_id, 0.0) for c in candidates]
        # evidence spread over an article's sections counts for each of them
        groups: dict[str, list[int]] = {}
        for position, chunk_index in enumerate(candidates):
            groups.setdefault(index.chunks[chunk_index].article_id, []).append(position)
        for members in groups.values():
            rows[members, 7] = rows[members, 0].max()
            rows[members, 8] = rows[members, 2].max()
            rows[members, 9] = min(len(members), 5) / 5.0
            rows[members, 12] = rows[members, 11].max()
        return candidates, rows

    def ranker(self, language: str) -> dict[str, Any]:
        return dict(self.snapshot.fusion.get(language, {}).get("ranker") or DEFAULT_RANKER)

    def scored_rows(
        self, query: str, language: str, vector: np.ndarray | None = None
    ) -> list[tuple[int, float, tuple[float, ...]]]:
        candidates, rows = self.candidate_features(query, language, vector)
        if not candidates:
            return []
        model = self.ranker(language)
        logits = rows @ np.asarray(model["coef"], dtype=np.float32) + float(model["intercept"])
        probabilities = 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))
        order = np.argsort(-probabilities)
        return [(candidates[i], float(probabilities[i]), tuple(float(x) for x in rows[i])) for i in order]

    def scored_chunks(
        self, query: str, language: str, vector: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        return [(i, score) for i, score, _ in self.scored_rows(query, language, vector)]


METHODS: dict[str, type[Retriever]] = {
    "dense": DenseRetriever,
    "bm25": BM25Retriever,
    "hybrid": HybridRetriever,
}


def create(snapshot: Snapshot, method: str = "hybrid") -> Retriever:
    """A retriever of the given kind over a loaded snapshot."""
    if method not in METHODS:
        raise ValueError(f"unknown retriever {method!r}; choose one of {sorted(METHODS)}")
    return METHODS[method](snapshot)


class ReloadingRetriever:
    """The current index, re-read when a new build becomes current (checked at most once a second).

    The action server and the web service keep one of these; a rebuilt index is
    picked up on the next query, no restart needed.
    """

    def __init__(self, config: KnowledgeConfig, method: str = "hybrid", check_every: float = 1.0) -> None:
        self.config = config
        self.method = method
        self.check_every = check_every
        self._lock = threading.Lock()
        self._loaded_from: Path | None = None
        self._retriever: Retriever | None = None
        self._checked = 0.0

    def thresholds(self, retriever: Retriever, language: str) -> tuple[float, float]:
        """(answer, suggest) thresholds: the fitted ones unless the configuration overrides them."""
        answer, suggest = retriever.thresholds(language)
        return (
            self.config.answer_threshold if self.config.answer_threshold is not None else answer,
            self.config.suggest_threshold if self.config.suggest_threshold is not None else suggest,
        )

    def get(self) -> Retriever:
        now = time.monotonic()
        if self._retriever is not None and now - self._checked < self.check_every:
            return self._retriever
        with self._lock:
            self._checked = now
            target = current_dir(self.config.index_root)
            if target is None:
                if self._retriever is not None:
                    return self._retriever
                raise FileNotFoundError(
                    f"no knowledge index under {self.config.index_root}; run `python -m knowledge build`"
                )
            if target != self._loaded_from or self._retriever is None:
                snapshot = load_snapshot(target)
                self._retriever = create(snapshot, self.method)
                self._loaded_from = target
                logger.info("knowledge index %s loaded (%s)", snapshot.build_id, self.method)
            return self._retriever
