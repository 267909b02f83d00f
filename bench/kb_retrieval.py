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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from tqdm import tqdm  # noqa: E402

from common.encoders import MINILM, canonical_name  # noqa: E402
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


@dataclass(frozen=True)
class FollowUp:
    """A question that only makes sense after the one before it (knowledge/eval/followups)."""

    first: str
    first_article: str
    text: str
    article: str
    language: str


def load_followups(eval_dir: Path) -> list[FollowUp]:
    pairs = []
    for path in sorted((eval_dir / "followups").glob("*.yml")):
        data = yaml.safe_load(path.read_text("utf-8")) or {}
        for row in data.get("followups", []):
            pairs.append(
                FollowUp(
                    str(row["first"]),
                    str(row["first_article"]),
                    str(row["q"]),
                    str(row["article"]),
                    path.stem,
                )
            )
    return pairs


def followup_quality(snapshot: Snapshot, pairs: list[FollowUp]) -> dict[str, Any]:
    """The hybrid on follow-ups, alone and read with the question before (as action_kb_answer does)."""
    table: dict[str, Any] = {}
    retriever = create(snapshot, "hybrid")
    for language in ("zh", "en"):
        mine = [p for p in pairs if p.language == language]
        answer_t, _ = retriever.thresholds(language)
        row: dict[str, Any] = {"language": language, "pairs": len(mine), "answer_threshold": answer_t}
        for mode in ("alone", "in_context"):
            right_at_1 = answered_right = answered_wrong = none_answered = 0
            for pair in tqdm(mine, desc=f"follow-ups {language} {mode}", leave=False):
                previous = pair.first if mode == "in_context" else None
                hits, confidence, _ = retriever.search_in_context(pair.text, previous, language, 5)
                top = hits[0].article_id if hits else None
                if pair.article == "none":
                    none_answered += int(confidence >= answer_t)
                    continue
                right_at_1 += int(top == pair.article)
                if confidence >= answer_t:
                    answered_right += int(top == pair.article)
                    answered_wrong += int(top != pair.article)
            answerable = sum(1 for p in mine if p.article != "none") or 1
            n_none = sum(1 for p in mine if p.article == "none")
            row[mode] = {
                "recall_at_1": right_at_1 / answerable,
                "answered_right": answered_right / answerable,
                "answered_wrong": answered_wrong / answerable,
                "none_false_answer_rate": none_answered / n_none if n_none else None,
            }
        table[language] = row
    return table


def new_topic_quality(snapshot: Snapshot, questions: list[Question]) -> dict[str, Any]:
    """Does reading in context hurt a new topic? Each report question after another article's question."""
    rng = random.Random(SEED)
    retriever = create(snapshot, "hybrid")
    table: dict[str, Any] = {}
    for language in ("zh", "en"):
        mine = [q for q in questions if q.language == language and q.answerable]
        alone = after = 0
        for question in tqdm(mine, desc=f"new topic {language}", leave=False):
            previous = rng.choice([q for q in mine if q.article != question.article]).text
            plain, _, _ = retriever.search_in_context(question.text, None, language, 1)
            joined, _, _ = retriever.search_in_context(question.text, previous, language, 1)
            alone += int(bool(plain) and plain[0].article_id == question.article)
            after += int(bool(joined) and joined[0].article_id == question.article)
        n = len(mine) or 1
        table[language] = {
            "questions": len(mine),
            "recall_at_1_alone": alone / n,
            "recall_at_1_after": after / n,
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
            questions=index.questions,
            question_vectors=index.question_vectors,
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
        "# Knowledge retrieval: dense vs BM25 vs hybrid, new encoder vs the previous one",
        "",
        f"Produced by `{result['command']}` on {result['date']} ({result['machine']}).",
        f"Report split of knowledge/eval: {result['report_questions']} questions "
        f"(fit split: {result['fit_questions']}, used only for fitting, with "
        f"{result.get('fit_only_none_questions', 0)} fit-only questions no article answers, "
        "knowledge/eval/fit-none). "
        f"Articles: {result['articles']}, "
        f"with {sum(result['article_wordings'].values())} customer wordings in their front matter. "
        f"Follow-up pairs (knowledge/eval/followups, none used for fitting): {result['followup_pairs']}.",
        "",
        "| encoder | language | method | R@1 | R@5 | MRR | answer threshold | answer precision"
        " | answered right / answerable | false answers on `none` |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system in result["systems"].values():
        for row in system["quality"].values():
            precision = "-" if row["answer_precision"] is None else f"{row['answer_precision']:.3f}"
            lines.append(
                f"| {system['encoder']} | {row['language']} | {row['method']} | {row['recall_at_1']:.3f} | "
                f"{row['recall_at_5']:.3f} | {row['mrr']:.3f} | {row['answer_threshold']:.2f} | "
                f"{precision} | "
                f"{row['answer_coverage']:.3f} | "
                f"{row['none_false_answer_rate']:.3f} ({row['none']} questions) |"
            )
    lines += [
        "",
        "Goals (hybrid): R@1 zh >= 0.85, en >= 0.90; answered right / answerable >= 0.80; "
        "false answers on `none` <= 0.05.",
    ]
    for name, system in result["systems"].items():
        met = ", ".join(
            f"{language} " + " ".join(f"{k}={'yes' if v else 'NO'}" for k, v in goals.items())
            for language, goals in system["goals_met"].items()
        )
        lines.append(f"- {name} ({system['encoder']}): {met}")
    if result.get("ratios_product_to_baseline"):
        lines.append(
            "- ratios product / baseline: "
            + ", ".join(f"{k} {v:.3f}" for k, v in result["ratios_product_to_baseline"].items())
        )
    lines += [
        "",
        "Follow-ups, hybrid: the second question alone, and read with the first (as the bot does).",
        "",
        "| encoder | language | pairs | mode | R@1 | answered right | answered wrong"
        " | false answers on `none` |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for system in result["systems"].values():
        for language, row in system["followups"].items():
            for mode in ("alone", "in_context"):
                cell = row[mode]
                none_rate = (
                    "-" if cell["none_false_answer_rate"] is None else f"{cell['none_false_answer_rate']:.3f}"
                )
                lines.append(
                    f"| {system['encoder']} | {language} | {row['pairs']} | {mode} | "
                    f"{cell['recall_at_1']:.3f} | "
                    f"{cell['answered_right']:.3f} | {cell['answered_wrong']:.3f} | {none_rate} |"
                )
    lines += [
        "",
        "A new topic right after an answer (each answerable report question after another article's "
        "question), hybrid R@1:",
        "",
    ]
    for system in result["systems"].values():
        for language, row in system["new_topic_after_an_answer"].items():
            lines.append(
                f"- {system['encoder']} {language}: alone {row['recall_at_1_alone']:.3f}, "
                f"after another question {row['recall_at_1_after']:.3f} ({row['questions']} questions)"
            )
    lines += [
        "",
        "Latency of one query (encode + search) with the product's encoder, ms. Padding chunks: shuffled "
        "sentences of real articles, vectors mixed from real ones.",
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


GOALS = {
    "zh": {"recall_at_1": 0.85, "answer_coverage": 0.80},
    "en": {"recall_at_1": 0.90, "answer_coverage": 0.80},
}
GOAL_NONE_RATE = 0.05


def evaluate(config: KnowledgeConfig, workdir: Path, questions: list[Question], pairs: list[FollowUp]) -> Any:
    """Build an index with config's encoder in workdir and measure it: (snapshot, result)."""
    from knowledge.fusion import fit

    build(replace(config, index_root=workdir), show_progress=True, fit=fit)
    directory = current_dir(workdir)
    assert directory is not None
    snapshot = load_snapshot(directory)
    report = [q for q in questions if q.split == "report"]
    table = quality(snapshot, report)
    ratios = {}
    for language in ("zh", "en"):
        hybrid = table[f"{language}/hybrid"]["recall_at_1"]
        for base in ("dense", "bm25"):
            ratios[f"{language} vs {base}"] = hybrid / max(table[f"{language}/{base}"]["recall_at_1"], 1e-9)
    goals = {}
    for language, wanted in GOALS.items():
        row = table[f"{language}/hybrid"]
        goals[language] = {
            "recall_at_1": row["recall_at_1"] >= wanted["recall_at_1"],
            "answer_coverage": row["answer_coverage"] >= wanted["answer_coverage"],
            "none_false_answer_rate": (row["none_false_answer_rate"] or 0.0) <= GOAL_NONE_RATE,
        }
    return snapshot, {
        "encoder": snapshot.encoder.spec.name,
        "encoder_fingerprint": snapshot.encoder.spec.fingerprint,
        "romanise_han": snapshot.encoder.spec.romanise_han,
        "quality": table,
        "ratios": ratios,
        "goals_met": goals,
        "followups": followup_quality(snapshot, pairs),
        "new_topic_after_an_answer": new_topic_quality(snapshot, report),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--queries", type=int, default=300, help="timed queries per size, language and method"
    )
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--baseline", default=MINILM, help="the encoder measured beside (KB_MODEL value)")
    parser.add_argument("--out", default=str(RESULTS / "kb_retrieval"))
    args = parser.parse_args()
    config = KnowledgeConfig.from_env()
    questions = load_questions(config.eval_dir)
    pairs = load_followups(config.eval_dir)
    report = [q for q in questions if q.split == "report"]
    # the bench builds its own indexes so that it measures exactly the committed articles
    workdir = Path(tempfile.mkdtemp(prefix="kb-bench-"))
    try:
        snapshot, product = evaluate(config, workdir / "product", questions, pairs)
        systems = {"product": product}
        if canonical_name(args.baseline) != canonical_name(config.model):
            baseline_config = replace(
                config, model=args.baseline, encoder_cache=config.index_root / "encoders"
            )
            _, systems["baseline"] = evaluate(baseline_config, workdir / "baseline", questions, pairs)
        sizes = tuple(int(s) for s in args.sizes.split(","))
        result = {
            "command": "make bench-kb",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "articles": len(snapshot.manifest["documents"]),
            "article_wordings": {
                language: len(index.questions) for language, index in snapshot.languages.items()
            },
            "fit_questions": len(questions) - len(report),
            "fit_only_none_questions": len(load_questions(config.eval_dir / "fit-none", fit_only=True)),
            "report_questions": len(report),
            "followup_pairs": len(pairs),
            "systems": systems,
            "ratios_product_to_baseline": {
                f"{language} hybrid R@1": systems["product"]["quality"][f"{language}/hybrid"]["recall_at_1"]
                / max(systems["baseline"]["quality"][f"{language}/hybrid"]["recall_at_1"], 1e-9)
                for language in ("zh", "en")
            }
            if "baseline" in systems
            else {},
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
