"""Knowledge retrieval: dense vs BM25 vs hybrid, and latency at 1k / 10k / 100k chunks.

    make bench-kb        (.venv; a few minutes on 2 cores)

Quality is measured on the report split of knowledge/eval (the fit split
trained the hybrid ranker and every method's confidence calibration, see
knowledge/fusion.py) against the index `python -m knowledge build` made:
R@1, R@5, MRR over answerable questions (article level), and at each method's
own calibrated answer threshold: answer precision (right answers / answers,
`none` questions answered count as wrong) and the false-answer rate on `none`
questions.

Latency is encode + search for one query, measured per method on indexes
padded to 1k, 10k and 100k chunks per language. Padding chunks are labelled
as such: their text is sentences of the real articles shuffled into new
chunks (for BM25) and their vectors are random mixtures of real chunk vectors
plus noise (for FAISS), so postings and the vector space look like a larger
knowledge base. Indexes of 20k chunks and more use HNSW (the
configured switch), smaller ones exact search.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from knowledge.bm25 import BM25Index  # noqa: E402
from knowledge.chunking import Chunk, split_sentences  # noqa: E402
from knowledge.config import KnowledgeConfig  # noqa: E402
from knowledge.evalset import Question, load_questions  # noqa: E402
from knowledge.index import LanguageIndex, Snapshot, build, build_faiss, current_dir, load_snapshot  # noqa: E402
from knowledge.retriever import METHODS, create  # noqa: E402
from knowledge.text import bm25_tokens  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SEED = 7
SIZES = (1_000, 10_000, 100_000)


def quality(snapshot: Snapshot, questions: list[Question]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for language in ("zh", "en"):
        mine = [q for q in questions if q.language == language]
        for method in METHODS:
            retriever = create(snapshot, method)
            answer_t, _ = retriever.thresholds(language)
            ranks, answered, right_answers, none_answered = [], 0, 0, 0
            for question in tqdm(mine, desc=f"{language} {method}", leave=False):
                hits = retriever.search(question.text, language, k=5)
                confident = retriever.confidence(hits, language) >= answer_t
                if question.answerable:
                    ids = [h.article_id for h in hits]
                    ranks.append(ids.index(question.article) + 1 if question.article in ids else 0)
                if confident:
                    answered += 1
                    if question.answerable and hits[0].article_id == question.article:
                        right_answers += 1
                    if not question.answerable:
                        none_answered += 1
            n = len(ranks)
            n_none = sum(1 for q in mine if not q.answerable)
            table[f"{language}/{method}"] = {
                "language": language,
                "method": method,
                "answerable": n,
                "none": n_none,
                "recall_at_1": sum(1 for r in ranks if r == 1) / n,
                "recall_at_5": sum(1 for r in ranks if r) / n,
                "mrr": sum(1 / r for r in ranks if r) / n,
                "answer_threshold": answer_t,
                "answered": answered,
                "answer_precision": right_answers / answered if answered else None,
                "answer_coverage": right_answers / n,
                "none_false_answer_rate": none_answered / n_none if n_none else None,
            }
    return table


def padded_snapshot(base: Snapshot, size: int, hnsw_min: int, rng: random.Random) -> Snapshot:
    """base's chunks plus padding chunks up to `size` per language (vectors embedded for real)."""
    languages = {}
    for language, index in base.languages.items():
        sentences = [s for c in index.chunks for s in split_sentences(c.text)]
        chunks = list(index.chunks)
        padding: list[Chunk] = []
        while len(chunks) + len(padding) < size:
            text = ("" if language == "zh" else " ").join(rng.sample(sentences, 3))
            padding.append(Chunk(f"padding-{len(padding)}", language, "padding", "padding", text, 0, ""))
        vectors = np.asarray(index.vectors)
        heading_vectors = np.asarray(index.heading_vectors)
        if padding:
            fresh = padding_vectors(base, [p.text for p in padding], language)
            vectors = np.vstack([vectors, fresh]).astype(np.float32)
            heading_vectors = np.vstack([heading_vectors, fresh]).astype(np.float32)
        chunks += padding
        languages[language] = LanguageIndex(
            chunks=chunks,
            vectors=vectors,
            heading_vectors=heading_vectors,
            faiss_index=build_faiss(vectors, hnsw_min),
            bm25=BM25Index.build([bm25_tokens(c.index_text, language) for c in chunks]),
        )
    return Snapshot(base.directory, base.manifest, languages, base.encoder, base.fusion)


def padding_vectors(base: Snapshot, texts: list[str], language: str) -> np.ndarray:
    """Vectors for padding chunks: random mixtures of three real chunk vectors plus noise.

    Embedding 200k padding texts would take most of an hour on 2 cores and
    measure nothing extra: search cost depends on the number and spread of
    vectors, which mixtures of real ones reproduce.
    """
    rng = np.random.default_rng(SEED)
    real = np.asarray(base.languages[language].vectors, dtype=np.float32)
    picks = rng.integers(0, len(real), size=(len(texts), 3))
    weights = rng.dirichlet(np.ones(3), size=len(texts)).astype(np.float32)
    mixed = np.einsum("nk,nkd->nd", weights, real[picks])
    mixed += rng.normal(0, 0.05, size=mixed.shape).astype(np.float32)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    return mixed.astype(np.float32)


def latency(
    base: Snapshot, questions: list[Question], sizes: tuple[int, ...], queries: int
) -> dict[str, Any]:
    rng = random.Random(SEED)
    out: dict[str, Any] = {}
    hnsw_min = KnowledgeConfig().hnsw_min_chunks
    for size in sizes:
        snapshot = padded_snapshot(base, size, hnsw_min, random.Random(SEED))
        for language in ("zh", "en"):
            sample = [q.text for q in questions if q.language == language]
            sample = [rng.choice(sample) for _ in range(queries)]
            for method in METHODS:
                retriever = create(snapshot, method)
                for text in sample[:10]:  # warm-up
                    retriever.search(text, language, 5)
                times = []
                for text in tqdm(sample, desc=f"{size} {language} {method}", leave=False):
                    started = time.perf_counter()
                    retriever.search(text, language, 5)
                    times.append((time.perf_counter() - started) * 1000)
                times.sort()
                out[f"{size}/{language}/{method}"] = {
                    "chunks": len(snapshot.languages[language].chunks),
                    "padding_chunks": len(snapshot.languages[language].chunks)
                    - len(base.languages[language].chunks),
                    "index": "hnsw" if len(snapshot.languages[language].chunks) >= hnsw_min else "flat",
                    "queries": len(times),
                    "p50_ms": round(times[len(times) // 2], 3),
                    "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
                }
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Knowledge retrieval: dense vs BM25 vs hybrid",
        "",
        f"Produced by `{result['command']}` on {result['date']} ({result['machine']}).",
        f"Report split of knowledge/eval: {result['report_questions']} questions "
        f"(fit split: {result['fit_questions']}, used only for fitting). Articles: {result['articles']}.",
        "",
        "| language | method | R@1 | R@5 | MRR | answer threshold | answer precision"
        " | answered right / answerable"
        " | false answers on `none` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["quality"].values():
        precision = "-" if row["answer_precision"] is None else f"{row['answer_precision']:.3f}"
        lines.append(
            f"| {row['language']} | {row['method']} | {row['recall_at_1']:.3f} | {row['recall_at_5']:.3f} | "
            f"{row['mrr']:.3f} | {row['answer_threshold']:.2f} | {precision} | "
            f"{row['answer_coverage']:.3f} | "
            f"{row['none_false_answer_rate']:.3f} ({row['none']} questions) |"
        )
    lines += [
        "",
        "Ratios hybrid / baseline (R@1): " + ", ".join(f"{k} {v:.3f}" for k, v in result["ratios"].items()),
    ]
    lines += [
        "",
        "Latency of one query (encode + search), ms. Padding chunks: shuffled sentences of real "
        "articles, vectors mixed from real ones.",
        "",
        "| chunks per language | index | language | method | p50 | p99 |",
        "|---|---|---|---|---|---|",
    ]
    for row_key, row in result["latency"].items():
        _, language, method = row_key.split("/")
        lines.append(
            f"| {row['chunks']} ({row['padding_chunks']} padding) | {row['index']} | {language} | {method} | "
            f"{row['p50_ms']} | {row['p99_ms']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--queries", type=int, default=300, help="timed queries per size, language and method"
    )
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--out", default=str(RESULTS / "kb_retrieval"))
    args = parser.parse_args()
    config = KnowledgeConfig.from_env()
    # the bench builds its own index so that it measures exactly the committed articles
    workdir = Path(tempfile.mkdtemp(prefix="kb-bench-"))
    try:
        from dataclasses import replace

        from knowledge.fusion import fit

        bench_config = replace(config, index_root=workdir)
        build(bench_config, show_progress=True, fit=fit)
        directory = current_dir(workdir)
        assert directory is not None
        snapshot = load_snapshot(directory)
        questions = load_questions(config.eval_dir)
        report = [q for q in questions if q.split == "report"]
        table = quality(snapshot, report)
        ratios = {}
        for language in ("zh", "en"):
            hybrid = table[f"{language}/hybrid"]["recall_at_1"]
            for base in ("dense", "bm25"):
                ratios[f"{language} vs {base}"] = hybrid / max(
                    table[f"{language}/{base}"]["recall_at_1"], 1e-9
                )
        sizes = tuple(int(s) for s in args.sizes.split(","))
        result = {
            "command": "make bench-kb",
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "model": snapshot.manifest["model"],
            "romanise_han": snapshot.manifest["settings"]["romanise_han"],
            "articles": len(snapshot.manifest["documents"]),
            "fit_questions": len(questions) - len(report),
            "report_questions": len(report),
            "quality": table,
            "ratios": ratios,
            "latency": latency(snapshot, questions, sizes, args.queries),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", "utf-8")
    out.with_suffix(".md").write_text(markdown(result), "utf-8")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
