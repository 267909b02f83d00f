"""Building and loading the knowledge index.

A build goes into a fresh directory under <index_root>/builds/ and only then
becomes current (a symlink replaced atomically), so a bad article or a crash
mid-build never damages the index the bot is using. Builds are incremental:
chunks of unchanged articles keep their vectors; only new or changed articles
are embedded, and deleted ones simply are not carried over.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from common.encoders import Encoder, from_directory
from knowledge.articles import LANGUAGES, Article, load_corpus
from knowledge.bm25 import BM25Index
from knowledge.chunking import Chunk, chunk_article
from knowledge.config import KnowledgeConfig
from knowledge.embedding import configured_encoder
from knowledge.text import bm25_tokens

logger = logging.getLogger(__name__)

FORMAT_VERSION = 4
KEEP_BUILDS = 3


@dataclass
class BuildReport:
    """What a build did: which articles were embedded, reused, removed."""

    build_id: str
    up_to_date: bool = False
    embedded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    chunks: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    path: Path | None = None


def current_dir(index_root: Path) -> Path | None:
    link = index_root / "current"
    if not link.exists():
        return None
    return link.resolve()


def read_manifest(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / "manifest.json").read_text("utf-8")))


def _settings_key(config: KnowledgeConfig, encoder: Encoder) -> dict[str, Any]:
    """Everything besides article text that changes the vectors or chunks."""
    return {
        "format": FORMAT_VERSION,
        "encoder": encoder.spec.name,
        "encoder_fingerprint": encoder.spec.fingerprint,
        "max_chunk_chars_en": config.max_chunk_chars_en,
        "max_chunk_chars_zh": config.max_chunk_chars_zh,
        "hnsw_min_chunks": config.hnsw_min_chunks,
    }


def _eval_hash(config: KnowledgeConfig) -> str:
    import hashlib

    digest = hashlib.sha256()
    if config.eval_dir.is_dir():
        # the fit-only questions fit the calibration too (knowledge/evalset.py: fitting_questions)
        for path in sorted([*config.eval_dir.glob("*.yml"), *config.eval_dir.glob("fit-none/*.yml")]):
            digest.update(path.relative_to(config.eval_dir).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class _Inputs:
    """Everything a build depends on; an index whose manifest records the same is current."""

    articles: list[Article]
    encoder: Encoder
    settings: dict[str, Any]
    documents: dict[str, str]
    eval_hash: str

    def matches(self, manifest: dict[str, Any]) -> bool:
        return (
            manifest.get("settings") == self.settings
            and manifest.get("documents") == self.documents
            and manifest.get("eval_hash") == self.eval_hash
        )


def _inputs(config: KnowledgeConfig) -> _Inputs:
    articles = load_corpus(config.articles_dir)  # raises ArticleError before anything is written
    encoder = configured_encoder(config, threads=config.build_threads)
    return _Inputs(
        articles=articles,
        encoder=encoder,
        settings=_settings_key(config, encoder),
        documents={a.key: a.content_hash for a in articles},
        eval_hash=_eval_hash(config),
    )


def is_stale(config: KnowledgeConfig) -> bool:
    """True when articles, model or settings differ from the current index (or there is none)."""
    current = current_dir(config.index_root)
    if current is None or not (current / "manifest.json").is_file():
        return True
    return not _inputs(config).matches(read_manifest(current))


def _write_chunks(directory: Path, chunks: list[Chunk], hashes: list[str]) -> None:
    with (directory / "chunks.jsonl").open("w", encoding="utf-8") as handle:
        for chunk, content_hash in zip(chunks, hashes, strict=True):
            handle.write(
                json.dumps({**asdict(chunk), "document_hash": content_hash}, ensure_ascii=False) + "\n"
            )


def read_chunks(directory: Path) -> list[Chunk]:
    chunks = []
    with (directory / "chunks.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            row.pop("document_hash", None)
            row["tags"] = tuple(row.get("tags") or ())
            chunks.append(Chunk(**row))
    return chunks


def _previous_vectors(
    previous: Path | None, settings: dict[str, Any]
) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """chunk_id -> (document hash, vector, heading vector) from the current build, if built alike."""
    if previous is None or not (previous / "manifest.json").is_file():
        return {}
    if read_manifest(previous).get("settings") != settings:
        return {}
    reuse: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    for language in LANGUAGES:
        directory = previous / language
        if not (directory / "chunks.jsonl").is_file():
            continue
        vectors = np.load(directory / "vectors.npy")
        heading_vectors = np.load(directory / "heading-vectors.npy")
        with (directory / "chunks.jsonl").open(encoding="utf-8") as handle:
            for row_index, line in enumerate(handle):
                row = json.loads(line)
                chunk_id = f"{row['language']}/{row['article_id']}#{row['position']}"
                reuse[chunk_id] = (row["document_hash"], vectors[row_index], heading_vectors[row_index])
    return reuse


def build_faiss(vectors: np.ndarray, hnsw_min_chunks: int) -> Any:
    """Exact inner-product search for small collections, HNSW above hnsw_min_chunks."""
    import faiss

    dimensions = vectors.shape[1]
    index: Any
    if len(vectors) >= hnsw_min_chunks:
        index = faiss.IndexHNSWFlat(dimensions, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 96
    else:
        index = faiss.IndexFlatIP(dimensions)
    if len(vectors):
        index.add(vectors)
    return index


def _swap_current(index_root: Path, target: Path) -> None:
    link = index_root / "current"
    tmp = index_root / f".current-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.relpath(target, index_root), tmp)
    os.replace(tmp, link)


def _prune(index_root: Path, keep: Path) -> None:
    builds = sorted((index_root / "builds").iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[KEEP_BUILDS:]:
        if old.resolve() != keep.resolve():
            shutil.rmtree(old, ignore_errors=True)


def build(
    config: KnowledgeConfig,
    force: bool = False,
    show_progress: bool = True,
    fit: Callable[[Path, KnowledgeConfig], object] | None = None,
) -> BuildReport:
    """Build (or bring up to date) the index; returns what was done."""
    started = time.monotonic()
    inputs = _inputs(config)
    articles, encoder, settings, documents = (
        inputs.articles,
        inputs.encoder,
        inputs.settings,
        inputs.documents,
    )
    previous = current_dir(config.index_root)

    if not force and previous is not None and (previous / "manifest.json").is_file():
        manifest = read_manifest(previous)
        if inputs.matches(manifest):
            return BuildReport(build_id=manifest["build_id"], up_to_date=True, path=previous)

    reuse = {} if force else _previous_vectors(previous, settings)
    old_documents = read_manifest(previous).get("documents", {}) if previous and not force else {}
    build_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    builds = config.index_root / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    staging = builds / f".{build_id}.partial"
    report = BuildReport(build_id=build_id)
    try:
        staging.mkdir()
        language_info: dict[str, Any] = {}
        dimensions = 0
        for language in LANGUAGES:
            directory = staging / language
            directory.mkdir()
            chunks: list[Chunk] = []
            hashes: list[str] = []
            vectors: list[np.ndarray | None] = []
            heading_vectors: list[np.ndarray | None] = []
            to_embed: list[int] = []
            for article in (a for a in articles if a.language == language):
                article_chunks = chunk_article(article, config.max_chunk_chars_en, config.max_chunk_chars_zh)
                reused = all(
                    c.chunk_id in reuse and reuse[c.chunk_id][0] == article.content_hash
                    for c in article_chunks
                )
                (report.reused if reused else report.embedded).append(article.key)
                for chunk in article_chunks:
                    chunks.append(chunk)
                    hashes.append(article.content_hash)
                    if reused:
                        vectors.append(reuse[chunk.chunk_id][1])
                        heading_vectors.append(reuse[chunk.chunk_id][2])
                    else:
                        vectors.append(None)
                        heading_vectors.append(None)
                        to_embed.append(len(chunks) - 1)
            if to_embed:
                fresh = _encode(encoder.passages, [chunks[i].index_text for i in to_embed], show_progress)
                # headings are phrased like customers' questions: a second, short view of each chunk
                headings = _encode(encoder.queries, [chunks[i].heading for i in to_embed], show_progress)
                for position, row, heading_row in zip(to_embed, fresh, headings, strict=True):
                    vectors[position] = row
                    heading_vectors[position] = heading_row
            dimensions = encoder.dimensions
            matrix = (
                np.vstack([v for v in vectors if v is not None]).astype(np.float32)
                if chunks
                else np.zeros((0, dimensions or 384), dtype=np.float32)
            )
            dimensions = dimensions or int(matrix.shape[1])
            np.save(directory / "vectors.npy", matrix)
            np.save(
                directory / "heading-vectors.npy",
                np.vstack([v for v in heading_vectors if v is not None]).astype(np.float32)
                if chunks
                else matrix,
            )
            _write_chunks(directory, chunks, hashes)
            _write_questions(directory, [a for a in articles if a.language == language], encoder, dimensions)
            import faiss

            faiss.write_index(build_faiss(matrix, config.hnsw_min_chunks), str(directory / "faiss.index"))
            BM25Index.build([bm25_tokens(c.index_text, language) for c in chunks]).save(directory)
            language_info[language] = {
                "chunks": len(chunks),
                "index": "hnsw" if len(chunks) >= config.hnsw_min_chunks else "flat",
            }
            report.chunks[language] = len(chunks)

        # the encoder travels with its vectors: the retriever and the NLU load exactly this one
        encoder.save(staging / "encoder")
        report.removed = sorted(set(old_documents) - set(documents))
        manifest = {
            "build_id": build_id,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": config.model,
            "encoder": {"name": encoder.spec.name, "backend": encoder.spec.backend},
            "dimensions": dimensions,
            "settings": settings,
            "documents": documents,
            "languages": language_info,
            "eval_hash": inputs.eval_hash,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), "utf-8")
        if fit is not None:
            fit(staging, config)
        final = builds / build_id
        staging.rename(final)
        _swap_current(config.index_root, final)
        _prune(config.index_root, final)
        report.path = final
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _encode(encode: Callable[[list[str]], np.ndarray], texts: list[str], show_progress: bool) -> np.ndarray:
    """Encode in batches of 32 behind a progress bar (a first build embeds a few thousand texts)."""
    from tqdm import tqdm

    rows = [
        encode(texts[start : start + 32])
        for start in tqdm(range(0, len(texts), 32), disable=not show_progress, desc="embedding", unit="batch")
    ]
    return np.vstack(rows) if rows else np.zeros((0, 0), np.float32)


def _write_questions(directory: Path, articles: list[Article], encoder: Encoder, dimensions: int) -> None:
    """The customer wordings of the articles' front matter, with their vectors (queries, like messages)."""
    rows = [{"article_id": a.id, "text": q} for a in articles for q in a.questions]
    with (directory / "questions.jsonl").open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    vectors = encoder.queries([r["text"] for r in rows]) if rows else np.zeros((0, dimensions), np.float32)
    np.save(directory / "question-vectors.npy", vectors.astype(np.float32))


@dataclass(frozen=True)
class Question:
    """A customer wording an article answers (front matter `questions:`)."""

    article_id: str
    text: str


def read_questions(directory: Path) -> list[Question]:
    path = directory / "questions.jsonl"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return [Question(**json.loads(line)) for line in handle if line.strip()]


@dataclass
class LanguageIndex:
    """One language's chunks with their vectors, FAISS index and BM25 index, and the articles' wordings."""

    chunks: list[Chunk]
    vectors: np.ndarray
    heading_vectors: np.ndarray
    faiss_index: Any
    bm25: BM25Index
    questions: list[Question] = field(default_factory=list)
    question_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


@dataclass
class Snapshot:
    """A loaded build: what the retrievers search."""

    directory: Path
    manifest: dict[str, Any]
    languages: dict[str, LanguageIndex]
    encoder: Encoder
    fusion: dict[str, Any]

    @property
    def build_id(self) -> str:
        return str(self.manifest["build_id"])


def load_snapshot(directory: Path) -> Snapshot:
    import faiss

    manifest = read_manifest(directory)
    languages = {}
    for language in LANGUAGES:
        sub = directory / language
        questions = read_questions(sub)
        languages[language] = LanguageIndex(
            chunks=read_chunks(sub),
            vectors=np.load(sub / "vectors.npy", mmap_mode="r"),
            heading_vectors=np.load(sub / "heading-vectors.npy", mmap_mode="r"),
            faiss_index=faiss.read_index(str(sub / "faiss.index")),
            bm25=BM25Index.load(sub),
            questions=questions,
            question_vectors=np.load(sub / "question-vectors.npy")
            if (sub / "question-vectors.npy").is_file()
            else np.zeros((0, int(manifest.get("dimensions") or 1)), np.float32),
        )
    encoder = from_directory(directory / "encoder")
    fusion_path = directory / "fusion.json"
    fusion = json.loads(fusion_path.read_text("utf-8")) if fusion_path.is_file() else {}
    return Snapshot(
        directory=directory, manifest=manifest, languages=languages, encoder=encoder, fusion=fusion
    )
