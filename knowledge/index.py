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

from knowledge.articles import LANGUAGES, Article, load_corpus
from knowledge.bm25 import BM25Index
from knowledge.chunking import Chunk, chunk_article
from knowledge.config import KnowledgeConfig
from knowledge.embedding import (
    OnnxEncoder,
    SentenceTransformerEncoder,
    model_fingerprint,
    needs_romanising,
)
from knowledge.text import bm25_tokens

logger = logging.getLogger(__name__)

FORMAT_VERSION = 3
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


def _settings_key(config: KnowledgeConfig, fingerprint: str, romanise_han: bool) -> dict[str, Any]:
    """Everything besides article text that changes the vectors or chunks."""
    return {
        "format": FORMAT_VERSION,
        "model_fingerprint": fingerprint,
        "romanise_han": romanise_han,
        "max_chunk_chars_en": config.max_chunk_chars_en,
        "max_chunk_chars_zh": config.max_chunk_chars_zh,
        "hnsw_min_chunks": config.hnsw_min_chunks,
    }


def _eval_hash(config: KnowledgeConfig) -> str:
    import hashlib

    digest = hashlib.sha256()
    if config.eval_dir.is_dir():
        for path in sorted(config.eval_dir.glob("*.yml")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class _Inputs:
    """Everything a build depends on; an index whose manifest records the same is current."""

    articles: list[Article]
    model_dir: Path
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
    model_dir = config.model_path()
    romanise_han = needs_romanising(model_dir, config.romanise_han)
    return _Inputs(
        articles=articles,
        model_dir=model_dir,
        settings=_settings_key(config, model_fingerprint(model_dir), romanise_han),
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


def _encoder_dir(
    config: KnowledgeConfig, fingerprint: str, load: Callable[[], SentenceTransformerEncoder]
) -> Path:
    """The ONNX export of the model, made once per model and shared by builds (PyTorch loads only then)."""
    directory = (config.encoder_cache or config.index_root / "encoders") / fingerprint
    if not (directory / "model.onnx").is_file():
        logger.info("exporting the embedding model to ONNX (%s)", directory)
        staging = directory.with_name(directory.name + f".tmp-{uuid.uuid4().hex[:6]}")
        load().export_onnx(staging)
        directory.parent.mkdir(parents=True, exist_ok=True)
        if directory.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.rename(directory)
    return directory


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
    articles, model_dir, settings, documents = (
        inputs.articles,
        inputs.model_dir,
        inputs.settings,
        inputs.documents,
    )
    romanise_han = bool(settings["romanise_han"])
    fingerprint = str(settings["model_fingerprint"])
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
    encoder: SentenceTransformerEncoder | None = None
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
                if encoder is None:
                    encoder = SentenceTransformerEncoder(model_dir, romanise_han)
                fresh = encoder.encode([chunks[i].index_text for i in to_embed], show_progress=show_progress)
                # headings are phrased like customers' questions: a second, short view of each chunk
                headings = encoder.encode([chunks[i].heading for i in to_embed], show_progress=show_progress)
                for position, row, heading_row in zip(to_embed, fresh, headings, strict=True):
                    vectors[position] = row
                    heading_vectors[position] = heading_row
            if encoder is not None:
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
            import faiss

            faiss.write_index(build_faiss(matrix, config.hnsw_min_chunks), str(directory / "faiss.index"))
            BM25Index.build([bm25_tokens(c.index_text, language) for c in chunks]).save(directory)
            language_info[language] = {
                "chunks": len(chunks),
                "index": "hnsw" if len(chunks) >= config.hnsw_min_chunks else "flat",
            }
            report.chunks[language] = len(chunks)

        # a build that embedded nothing (only deletions) need not load PyTorch at all
        encoder_dir = _encoder_dir(
            config, fingerprint, lambda: encoder or SentenceTransformerEncoder(model_dir, romanise_han)
        )
        shutil.copytree(encoder_dir, staging / "encoder")
        report.removed = sorted(set(old_documents) - set(documents))
        manifest = {
            "build_id": build_id,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": config.model,
            "model_path": str(model_dir),
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


@dataclass
class LanguageIndex:
    """One language's chunks with their vectors, FAISS index and BM25 index."""

    chunks: list[Chunk]
    vectors: np.ndarray
    heading_vectors: np.ndarray
    faiss_index: Any
    bm25: BM25Index


@dataclass
class Snapshot:
    """A loaded build: what the retrievers search."""

    directory: Path
    manifest: dict[str, Any]
    languages: dict[str, LanguageIndex]
    encoder: OnnxEncoder
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
        languages[language] = LanguageIndex(
            chunks=read_chunks(sub),
            vectors=np.load(sub / "vectors.npy", mmap_mode="r"),
            heading_vectors=np.load(sub / "heading-vectors.npy", mmap_mode="r"),
            faiss_index=faiss.read_index(str(sub / "faiss.index")),
            bm25=BM25Index.load(sub),
        )
    encoder = OnnxEncoder(directory / "encoder", romanise_han=bool(manifest["settings"]["romanise_han"]))
    fusion_path = directory / "fusion.json"
    fusion = json.loads(fusion_path.read_text("utf-8")) if fusion_path.is_file() else {}
    return Snapshot(
        directory=directory, manifest=manifest, languages=languages, encoder=encoder, fusion=fusion
    )
