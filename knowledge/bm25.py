"""Okapi BM25 over a sparse term-document matrix.

Scores for a query are one sparse column sum, so 100k chunks cost about a
millisecond; rank_bm25 scores document by document in Python and takes tens of
milliseconds at that size.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import sparse


class BM25Index:
    """BM25 (k1, b) weights precomputed per (term, document)."""

    def __init__(self, vocabulary: dict[str, int], weights: sparse.csr_matrix) -> None:
        self.vocabulary = vocabulary
        # rows = terms, so a query's scores are a sum of a few rows
        self.weights = weights

    @property
    def size(self) -> int:
        return int(self.weights.shape[1])

    @classmethod
    def build(cls, documents: list[list[str]], k1: float = 1.2, b: float = 0.75) -> BM25Index:
        vocabulary: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        freqs: list[float] = []
        lengths = np.zeros(len(documents), dtype=np.float64)
        for doc_index, tokens in enumerate(documents):
            lengths[doc_index] = len(tokens)
            for term, count in Counter(tokens).items():
                rows.append(vocabulary.setdefault(term, len(vocabulary)))
                cols.append(doc_index)
                freqs.append(count)
        n_docs = max(len(documents), 1)
        tf = sparse.csr_matrix(
            (np.asarray(freqs, dtype=np.float64), (rows, cols)), shape=(len(vocabulary), len(documents))
        )
        doc_freq = np.diff(tf.indptr)
        idf = np.log(1.0 + (n_docs - doc_freq + 0.5) / (doc_freq + 0.5))
        average = float(lengths.mean()) if len(documents) else 1.0
        coo = tf.tocoo()
        norm = k1 * (1.0 - b + b * lengths[coo.col] / max(average, 1e-9))
        values = idf[coo.row] * coo.data * (k1 + 1.0) / (coo.data + norm)
        weights = sparse.csr_matrix((values.astype(np.float32), (coo.row, coo.col)), shape=tf.shape)
        return cls(vocabulary, weights)

    def scores(self, tokens: list[str]) -> np.ndarray:
        rows = [self.vocabulary[t] for t in tokens if t in self.vocabulary]
        if not rows:
            return np.zeros(self.size, dtype=np.float32)
        counts = Counter(rows)
        selector = sparse.csr_matrix(
            (np.fromiter(counts.values(), dtype=np.float32), ([0] * len(counts), list(counts.keys()))),
            shape=(1, self.weights.shape[0]),
        )
        return np.asarray((selector @ self.weights).todense()).ravel()

    def top(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        scores = self.scores(tokens)
        if not scores.any():
            return []
        k = min(k, scores.size)
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best])]
        return [(int(i), float(scores[i])) for i in best if scores[i] > 0]

    def save(self, directory: Path) -> None:
        sparse.save_npz(directory / "bm25.npz", self.weights)
        (directory / "bm25-vocabulary.json").write_text(
            json.dumps(self.vocabulary, ensure_ascii=False), "utf-8"
        )

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        weights = sparse.load_npz(directory / "bm25.npz").tocsr()
        vocabulary = json.loads((directory / "bm25-vocabulary.json").read_text("utf-8"))
        return cls(vocabulary, weights)
