"""5-fold cross-validation of the NLU, ours against stock Rasa, per language.

    make bench-nlu     (runs in .venv-rasa; about 30 minutes on 2 cores for three systems)

Each (system, fold) is one part, kept in bench/results/nlu_cv-parts/<inputs hash>/
as soon as it is done: the hash covers data/nlu.yml, the system's pipeline and
the encoder record it reads, so `--max-new-parts N` runs N parts and stops, a
later run picks up where it stopped, and the report is written once every part
of the same inputs is there. Changed inputs start a new directory.

Both pipelines are trained on the same stratified folds of data/nlu.yml
(seed 42). "stock" is the pipeline `rasa init` writes for Rasa 3.6
(WhitespaceTokenizer ... DIETClassifier 100 epochs, FallbackClassifier 0.3),
minus ResponseSelector, which has nothing to select here. "ours" is
config.yml. Intent accuracy and macro F1 are reported per language (decided
by common.language on each example); a prediction of nlu_fallback counts as
wrong and is also reported as the fallback rate. Entity scores are exact
matches of (entity, start, end) over order_id, card_code, phone and email.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Rasa's training cache would restore an identical model from an earlier run in seconds and
# report that as its training time
os.environ.setdefault("RASA_MAX_CACHE_SIZE", "0")

import yaml  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from tqdm import tqdm  # noqa: E402

from common.language import detect_language  # noqa: E402

FOLDS = 5
SEED = 42
ENTITY_TYPES = {"order_id", "card_code", "phone", "email"}
RESULTS = ROOT / "bench" / "results"

STOCK_PIPELINE: list[dict[str, Any]] = [
    {"name": "WhitespaceTokenizer"},
    {"name": "RegexFeaturizer"},
    {"name": "LexicalSyntacticFeaturizer"},
    {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
    {"name": "DIETClassifier", "epochs": 100, "constrain_similarities": True, "random_seed": SEED},
    {"name": "EntitySynonymMapper"},
    {"name": "FallbackClassifier", "threshold": 0.3, "ambiguity_threshold": 0.1},
]


def our_config(encoder_dir: Path | None = None) -> dict[str, Any]:
    """config.yml; with encoder_dir, its sentence features from another index's encoder record."""
    config = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))
    pipeline = [dict(c) for c in config["pipeline"]]
    if encoder_dir is not None:
        for component in pipeline:
            if component["name"] == "bot.nlu.embeddings.SentenceEmbeddingFeaturizer":
                component["model_dir"] = str(encoder_dir)
    return {"recipe": "default.v1", "language": config["language"], "pipeline": pipeline}


def stock_config() -> dict[str, Any]:
    return {"recipe": "default.v1", "language": "en", "pipeline": STOCK_PIPELINE}


def entity_set(entities: list[dict[str, Any]]) -> set[tuple[str, int, int]]:
    return {(e["entity"], int(e["start"]), int(e["end"])) for e in entities if e["entity"] in ENTITY_TYPES}


async def evaluate_fold(config: dict[str, Any], train: Any, test: list[Any], workdir: Path) -> dict[str, Any]:
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu

    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    nlu_path = workdir / "nlu.yml"
    nlu_path.write_text(train.nlu_as_yaml(), encoding="utf-8")
    started = time.perf_counter()
    model = train_nlu(str(config_path), str(nlu_path), str(workdir / "models"), fixed_model_name="fold")
    train_seconds = time.perf_counter() - started
    agent = Agent.load(model)
    predictions = []
    for message in test:
        parsed = await agent.parse_message(message.get("text"))
        predictions.append(parsed)
    return {"train_seconds": train_seconds, "predictions": predictions}


def scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    truth = [r["intent"] for r in rows]
    predicted = [r["predicted"] for r in rows]
    tp = sum(len(r["gold_entities"] & r["pred_entities"]) for r in rows)
    n_pred = sum(len(r["pred_entities"]) for r in rows)
    n_gold = sum(len(r["gold_entities"]) for r in rows)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "examples": len(rows),
        "intent_accuracy": round(accuracy_score(truth, predicted), 4),
        "intent_macro_f1": round(f1_score(truth, predicted, average="macro", zero_division=0), 4),
        "fallback_rate": round(sum(p == "nlu_fallback" for p in predicted) / len(rows), 4),
        "entity_precision": round(precision, 4),
        "entity_recall": round(recall, 4),
        "entity_f1": round(f1, 4),
        "entity_examples": n_gold,
    }


# the previous encoder's record, from `KB_MODEL=minilm KB_INDEX_DIR=var/bench/minilm-index make kb`
BASELINE_ENCODER = ROOT / "var" / "bench" / "minilm-index" / "current" / "encoder"


def encoder_name(directory: Path) -> str:
    return str(json.loads((directory / "encoder.json").read_text("utf-8")).get("name"))


PARTS = RESULTS / "nlu_cv-parts"
PARTS_FORMAT = 1


def _encoder_record(config: dict[str, Any]) -> str:
    """The encoder.json a pipeline's sentence features read ('' for a pipeline without them)."""
    for component in config["pipeline"]:
        if component["name"] == "bot.nlu.embeddings.SentenceEmbeddingFeaturizer":
            directory = Path(str(component.get("model_dir", "var/knowledge/current/encoder")))
            directory = directory if directory.is_absolute() else ROOT / directory
            return (directory / "encoder.json").read_text("utf-8")
    return ""


def inputs_hash(nlu_text: str, systems: dict[str, dict[str, Any]]) -> str:
    """What the parts depend on: the data, the folds and each system's pipeline with its encoder."""
    digest = hashlib.sha256(f"{PARTS_FORMAT}|{FOLDS}|{SEED}|".encode())
    digest.update(nlu_text.encode("utf-8"))
    for name in sorted(systems):
        digest.update(name.encode())
        digest.update(json.dumps(systems[name], sort_keys=True).encode())
        digest.update(_encoder_record(systems[name]).encode("utf-8"))
    return digest.hexdigest()[:16]


def _part_path(directory: Path, system: str, fold: int) -> Path:
    return directory / f"{system}-fold{fold}.json"


def _row_to_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "gold_entities": sorted(row["gold_entities"]),
        "pred_entities": sorted(row["pred_entities"]),
    }


def _row_from_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "gold_entities": {tuple(e) for e in row["gold_entities"]},
        "pred_entities": {tuple(e) for e in row["pred_entities"]},
    }


def run(baseline_encoder: Path | None = None, max_new_parts: int | None = None) -> dict[str, Any] | None:
    """The report, or None when max_new_parts stopped the run before every part was done."""
    from rasa.shared.nlu.training_data.loading import load_data
    from rasa.shared.nlu.training_data.training_data import TrainingData

    logging.getLogger("rasa").setLevel(logging.ERROR)
    data = load_data(str(ROOT / "data" / "nlu.yml"))
    examples = [m for m in data.intent_examples]
    labels = [m.get("intent") for m in examples]
    folds = list(StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED).split(examples, labels))
    systems = {"stock_rasa": stock_config(), "ours": our_config()}
    if baseline_encoder is not None:
        # ours with the previous encoder's sentence features: what the new encoder changes
        systems["ours_previous_encoder"] = our_config(baseline_encoder)
    parts = PARTS / inputs_hash((ROOT / "data" / "nlu.yml").read_text("utf-8"), systems)
    parts.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    train_seconds: dict[str, list[float]] = defaultdict(list)
    new_parts = 0
    progress = tqdm(total=FOLDS * len(systems), desc="nlu cross-validation", unit="part")
    for fold, (train_idx, test_idx) in enumerate(folds):
        train = TrainingData(
            training_examples=[examples[i] for i in train_idx],
            regex_features=data.regex_features,
            lookup_tables=data.lookup_tables,
            entity_synonyms=data.entity_synonyms,
        )
        test = [examples[i] for i in test_idx]
        for system, config in systems.items():
            progress.set_postfix(fold=fold + 1, system=system)
            path = _part_path(parts, system, fold)
            if not path.is_file():
                if max_new_parts is not None and new_parts >= max_new_parts:
                    progress.update(1)
                    continue
                with tempfile.TemporaryDirectory() as workdir:
                    result = asyncio.run(evaluate_fold(config, train, test, Path(workdir)))
                fold_rows = [
                    {
                        "language": detect_language(message.get("text")),
                        "intent": message.get("intent"),
                        "predicted": (parsed.get("intent") or {}).get("name"),
                        "gold_entities": entity_set(message.get("entities") or []),
                        "pred_entities": entity_set(parsed.get("entities") or []),
                    }
                    for message, parsed in zip(test, result["predictions"], strict=True)
                ]
                part = {
                    "system": system,
                    "fold": fold,
                    "train_seconds": round(result["train_seconds"], 1),
                    "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                    "rows": [_row_to_json(r) for r in fold_rows],
                }
                path.write_text(json.dumps(part, ensure_ascii=False) + "\n", encoding="utf-8")
                new_parts += 1
            part = json.loads(path.read_text("utf-8"))
            train_seconds[system].append(part["train_seconds"])
            rows[system].extend(_row_from_json(r) for r in part["rows"])
            progress.update(1)
    progress.close()
    missing = [
        f"{s} fold {f}" for f in range(FOLDS) for s in systems if not _part_path(parts, s, f).is_file()
    ]
    if missing:
        print(f"{len(missing)} parts still to run in {parts.relative_to(ROOT)}: {', '.join(missing)}")
        return None
    report: dict[str, Any] = {
        "benchmark": "nlu_cv",
        "command": "make bench-nlu",
        "data": "data/nlu.yml",
        "folds": FOLDS,
        "parts": str(parts.relative_to(ROOT)),
        "seed": SEED,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "encoders": {
            "ours": encoder_name(ROOT / "var" / "knowledge" / "current" / "encoder"),
            **({"ours_previous_encoder": encoder_name(baseline_encoder)} if baseline_encoder else {}),
        },
        "systems": {},
    }
    for system in systems:
        per_language = {
            language: scores([r for r in rows[system] if r["language"] == language])
            for language in ("zh", "en")
        }
        report["systems"][system] = {
            "all": scores(rows[system]),
            **per_language,
            "train_seconds_per_fold": train_seconds[system],
        }
    ours, stock = report["systems"]["ours"], report["systems"]["stock_rasa"]
    report["ratio_ours_to_stock"] = {
        f"{lang}_intent_macro_f1": round(
            ours[lang]["intent_macro_f1"] / max(stock[lang]["intent_macro_f1"], 1e-9), 3
        )
        for lang in ("all", "zh", "en")
    }
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# NLU 5-fold cross-validation",
        "",
        f"Produced by `{report['command']}` on data/nlu.yml "
        f"({report['folds']} stratified folds, seed {report['seed']}).",
        "Sentence features: "
        + ", ".join(f"{system} {name}" for system, name in report.get("encoders", {}).items())
        + ". Fallback predictions count as wrong. "
        "Entities: exact (type, span) over order_id, card_code, phone, email.",
        "",
        "| system | language | examples | intent acc. | intent macro F1 | fallback rate | entity F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for system, result in report["systems"].items():
        for language in ("all", "zh", "en"):
            s = result[language]
            lines.append(
                f"| {system} | {language} | {s['examples']} | {s['intent_accuracy']:.2%} | "
                f"{s['intent_macro_f1']:.4f} | {s['fallback_rate']:.2%} | {s['entity_f1']:.4f} |"
            )
    lines += [
        "",
        "Training seconds per fold: "
        + "; ".join(
            f"{system} {result['train_seconds_per_fold']}" for system, result in report["systems"].items()
        ),
        "",
        "Ratio ours / stock (intent macro F1): "
        + ", ".join(f"{k} {v}" for k, v in report["ratio_ours_to_stock"].items()),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--baseline-encoder-dir",
        default=str(BASELINE_ENCODER),
        help="an index's encoder record for ours_previous_encoder ('' to leave that system out)",
    )
    parser.add_argument(
        "--max-new-parts",
        type=int,
        default=None,
        help="run at most this many (system, fold) parts, keep them, stop (the rest on a later run)",
    )
    args = parser.parse_args()
    baseline = Path(args.baseline_encoder_dir) if args.baseline_encoder_dir else None
    if baseline is not None and not (baseline / "encoder.json").is_file():
        print(f"{baseline} has no encoder record: build it with", file=sys.stderr)
        print("  KB_MODEL=minilm KB_INDEX_DIR=var/bench/minilm-index make kb", file=sys.stderr)
        return 2
    report = run(baseline, args.max_new_parts)
    if report is None:  # a part run: what it did is kept, the report waits for the rest
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nlu_cv.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (RESULTS / "nlu_cv.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
