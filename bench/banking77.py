"""BANKING77: intent accuracy and knowing what it does not know, ours against two baselines.

    make bench-banking77     (runs in .venv-rasa; most of its time is stock Rasa's 100 DIET epochs)

Three systems learn the 77 intents from the train split and answer the test
split, all in this run:

- stock_rasa: the pipeline `rasa init` writes for Rasa 3.6 (bench.nlu_cv.STOCK_PIPELINE:
  WhitespaceTokenizer, RegexFeaturizer, LexicalSyntacticFeaturizer, word and char_wb 1-4
  CountVectors, DIETClassifier 100 epochs, FallbackClassifier 0.3; ResponseSelector is left out
  because BANKING77 has no retrieval intents for it).
- embeddings_lr: the same sentence embeddings our featurizer uses (the knowledge index's encoder,
  multilingual-e5-small by default), scikit-learn's logistic regression on top.
- ours: config.yml's pipeline as shipped: those sentence embeddings (bot.nlu.embeddings) and the
  n-gram count vectors into bot.nlu.classifier.LinearIntentClassifier (see our_config()).

`--encoder-dir` points both at another index's encoder record (e.g. one built with KB_MODEL=minilm,
the previous encoder), `--systems` chooses which systems run, `--out` where the results go.

Reported per system: accuracy and macro F1 of the top intent (nlu_fallback set aside, so the
classifier is compared), the same with the system's fallback threshold applied (a fallback counts
as wrong), training wall time, and parse latency p50/p99 for one message at a time.

Out of scope: a quarter of the intents (19 of 77, random.Random(42), listed in the results) is
removed from training; ours and embeddings_lr are trained again on the other 58, and every test
question is parsed. A held-out question is handled right when it ends in fallback, an in-scope one
when it gets its intent without fallback. The curve over the fallback threshold (with the shipped
ambiguity threshold) gives in-scope accuracy, out-of-scope recall and precision; the threshold
config.yml ships is reported on it, and the one the rule in choose_threshold() picks.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import platform
import random
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

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.nlu_cv import STOCK_PIPELINE  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "banking77"
RESULTS = ROOT / "bench" / "results"
ENCODER = ROOT / "var" / "knowledge" / "current" / "encoder"
SEED = 42
HELD_OUT_SHARE = 0.25
FALLBACK = "nlu_fallback"
DEFAULT_SYSTEMS = "stock_rasa,embeddings_lr,ours"
THRESHOLDS = [round(0.05 * i, 2) for i in range(0, 20)]
EMBEDDING_FEATURIZER = "bot.nlu.embeddings.SentenceEmbeddingFeaturizer"
CLASSIFIER = "bot.nlu.classifier.LinearIntentClassifier"
ENTITY_EXTRACTORS = {"RegexEntityExtractor", "EntitySynonymMapper"}


def read_split(name: str) -> list[tuple[str, str]]:
    with (DATA / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
        return [(row["text"].strip(), row["category"]) for row in csv.DictReader(handle)]


def held_out_intents(intents: list[str]) -> list[str]:
    count = round(len(intents) * HELD_OUT_SHARE)
    return sorted(random.Random(SEED).sample(sorted(intents), count))


def shipped_fallback() -> dict[str, float]:
    config = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))
    for component in config["pipeline"]:
        if component["name"] == "FallbackClassifier":
            return {
                "threshold": float(component.get("threshold", 0.3)),
                "ambiguity_threshold": float(component.get("ambiguity_threshold", 0.1)),
            }
    raise SystemExit("config.yml has no FallbackClassifier")


def our_config(encoder_dir: Path = ENCODER) -> dict[str, Any]:
    """config.yml's pipeline as shipped (sentence features from encoder_dir), without its entity extractor.

    BANKING77 has no entities and no regexes; RegexEntityExtractor would only warn on every message.
    """
    config = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))
    pipeline = [dict(c) for c in config["pipeline"] if c["name"] not in ENTITY_EXTRACTORS]
    if any(c["name"] == "DIETClassifier" for c in pipeline):
        raise SystemExit("config.yml has DIET again; update bench/banking77.py")
    for name in (EMBEDDING_FEATURIZER, CLASSIFIER):
        if not any(c["name"] == name for c in pipeline):
            raise SystemExit(f"config.yml no longer has {name}; update bench/banking77.py")
    for component in pipeline:
        if component["name"] == EMBEDDING_FEATURIZER:
            component["model_dir"] = str(encoder_dir)
    return {"recipe": "default.v1", "language": config["language"], "pipeline": pipeline}


def stock_config() -> dict[str, Any]:
    return {"recipe": "default.v1", "language": "en", "pipeline": STOCK_PIPELINE}


def nlu_yaml(examples: list[tuple[str, str]]) -> str:
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in examples:
        by_intent[intent].append(text)
    return yaml.safe_dump(
        {
            "version": "3.1",
            "nlu": [
                {"intent": intent, "examples": "".join(f"- {t}\n" for t in texts)}
                for intent, texts in sorted(by_intent.items())
            ],
        },
        allow_unicode=True,
        sort_keys=False,
        width=10_000,
    )


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 2) if values else 0.0


def ranking_of(parsed: dict[str, Any]) -> list[tuple[str, float]]:
    """The classifier's own ranking: nlu_fallback (added by FallbackClassifier) set aside."""
    ranking = [
        (r["name"], float(r["confidence"]))
        for r in parsed.get("intent_ranking") or []
        if r["name"] != FALLBACK
    ]
    if not ranking and parsed.get("intent", {}).get("name") not in (None, FALLBACK):
        ranking = [(parsed["intent"]["name"], float(parsed["intent"]["confidence"]))]
    return ranking


async def rasa_system(
    config: dict[str, Any], train: list[tuple[str, str]], test: list[tuple[str, str]], label: str
) -> dict[str, Any]:
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu

    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        (work / "config.yml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        (work / "nlu.yml").write_text(nlu_yaml(train), encoding="utf-8")
        tqdm.write(f"[{label}] training on {len(train)} examples")
        started = time.perf_counter()
        model = train_nlu(
            str(work / "config.yml"), str(work / "nlu.yml"), str(work / "models"), fixed_model_name=label
        )
        train_seconds = time.perf_counter() - started
        if model is None:
            raise RuntimeError(f"{label}: rasa did not produce a model")
        agent = Agent.load(model)
        await agent.parse_message("warm up")
        rows, latencies = [], []
        for text, intent in tqdm(test, desc=f"{label} parse", unit="msg", leave=False):
            started = time.perf_counter()
            parsed = await agent.parse_message(text)
            latencies.append((time.perf_counter() - started) * 1000)
            rows.append(
                {"intent": intent, "predicted": parsed["intent"]["name"], "ranking": ranking_of(parsed)[:2]}
            )
    return {"train_seconds": round(train_seconds, 1), "latencies_ms": latencies, "rows": rows}


def lr_system(
    train: list[tuple[str, str]], test: list[tuple[str, str]], label: str, encoder_dir: Path = ENCODER
) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    from common.encoders import from_directory

    # the encoder the knowledge index records: the one the NLU's sentence features come from
    bulk = from_directory(encoder_dir, threads=2)
    single = from_directory(encoder_dir)
    tqdm.write(f"[{label}] encoding {len(train)} examples and fitting")
    started = time.perf_counter()
    texts = [t for t, _ in train]
    vectors = np.vstack([bulk.queries(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    classifier = LogisticRegression(C=20.0, max_iter=2000)
    classifier.fit(vectors, [i for _, i in train])
    train_seconds = time.perf_counter() - started
    labels = list(classifier.classes_)
    rows, latencies = [], []
    for text, intent in tqdm(test, desc=f"{label} parse", unit="msg", leave=False):
        started = time.perf_counter()
        probabilities = classifier.predict_proba(single.queries([text]))[0]
        latencies.append((time.perf_counter() - started) * 1000)
        top = np.argsort(-probabilities)[:2]
        ranking = [(labels[i], float(probabilities[i])) for i in top]
        rows.append({"intent": intent, "predicted": ranking[0][0], "ranking": ranking})
    return {"train_seconds": round(train_seconds, 1), "latencies_ms": latencies, "rows": rows}


def falls_back(ranking: list[tuple[str, float]], threshold: float, ambiguity: float) -> bool:
    """FallbackClassifier's rule: low top confidence, or the top two too close."""
    if not ranking or ranking[0][1] < threshold:
        return True
    return len(ranking) > 1 and ranking[0][1] - ranking[1][1] < ambiguity


def accuracy_scores(result: dict[str, Any], fallback: dict[str, float] | None) -> dict[str, Any]:
    rows = result["rows"]
    truth = [r["intent"] for r in rows]
    top = [r["ranking"][0][0] if r["ranking"] else FALLBACK for r in rows]
    scores: dict[str, Any] = {
        "examples": len(rows),
        "accuracy": round(accuracy_score(truth, top), 4),
        # over the true intents only: a rare empty ranking must not add an nlu_fallback class
        "macro_f1": round(
            f1_score(truth, top, labels=sorted(set(truth)), average="macro", zero_division=0), 4
        ),
        "train_seconds": result["train_seconds"],
        "parse_ms_p50": percentile(result["latencies_ms"], 50),
        "parse_ms_p99": percentile(result["latencies_ms"], 99),
    }
    if fallback:
        answered = [
            FALLBACK
            if falls_back(r["ranking"], fallback["threshold"], fallback["ambiguity_threshold"])
            else p
            for r, p in zip(rows, top, strict=True)
        ]
        scores["fallback"] = fallback
        scores["accuracy_with_fallback"] = round(accuracy_score(truth, answered), 4)
        scores["fallback_rate"] = round(sum(a == FALLBACK for a in answered) / len(rows), 4)
    return scores


def oos_point(
    rows: list[dict[str, Any]], held_out: set[str], threshold: float, ambiguity: float
) -> dict[str, Any]:
    in_scope = [r for r in rows if r["intent"] not in held_out]
    outside = [r for r in rows if r["intent"] in held_out]
    flagged = [r for r in rows if falls_back(r["ranking"], threshold, ambiguity)]
    flagged_outside = sum(1 for r in flagged if r["intent"] in held_out)
    in_scope_right = sum(
        1
        for r in in_scope
        if not falls_back(r["ranking"], threshold, ambiguity) and r["ranking"][0][0] == r["intent"]
    )
    confident_wrong = sum(1 for r in outside if not falls_back(r["ranking"], threshold, ambiguity))
    if not in_scope or not outside:
        raise ValueError("the test questions need both in-scope and held-out intents")
    return {
        "threshold": threshold,
        "in_scope_accuracy": round(in_scope_right / len(in_scope), 4),
        "oos_recall": round(flagged_outside / len(outside), 4),
        "oos_precision": round(flagged_outside / len(flagged), 4) if flagged else 1.0,
        "in_scope_fallback_rate": round(
            sum(1 for r in in_scope if falls_back(r["ranking"], threshold, ambiguity)) / len(in_scope), 4
        ),
        "oos_answered_confidently": confident_wrong,
        "handled_right": round((in_scope_right + flagged_outside) / len(rows), 4),
    }


def choose_threshold(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """The threshold that handles the most test questions right (the lowest one on a tie).

    Right means an in-scope question answered with its intent, or a held-out one ending in
    fallback. In this assistant a fallback is not a dead end: the question goes to the knowledge
    base, and a second miss to a person, while a confident wrong intent starts the wrong flow. So
    every question counts once, whichever side it is on, at the mix the test split has (about a
    quarter out of scope, as the held-out share).
    """
    return max(curve, key=lambda p: (p["handled_right"], -p["threshold"]))


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    logging.getLogger("rasa").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    encoder_dir = Path(args.encoder_dir)
    if not (encoder_dir / "encoder.json").is_file():
        raise SystemExit(f"{encoder_dir} is missing: run `make setup` first (it builds the knowledge index)")
    encoder = json.loads((encoder_dir / "encoder.json").read_text(encoding="utf-8"))
    train, test = read_split("train"), read_split("test")
    if args.per_intent:
        kept: dict[str, int] = defaultdict(int)
        sampled = []
        for text, intent in train:
            if kept[intent] < args.per_intent:
                kept[intent] += 1
                sampled.append((text, intent))
        train = sampled
        test = test[:: args.test_stride]
    intents = sorted({i for _, i in train})
    held_out = held_out_intents(intents)
    shipped = shipped_fallback()
    systems = [s for s in ("embeddings_lr", "ours", "stock_rasa") if s in args.systems]
    steps = len(systems) + sum(1 for s in systems if s != "stock_rasa")
    progress = tqdm(total=steps, desc="banking77", unit="system")
    report: dict[str, Any] = {
        "benchmark": "banking77",
        "command": "make bench-banking77"
        if args.systems == DEFAULT_SYSTEMS and not args.per_intent
        else "python -m bench.banking77 " + " ".join(sys.argv[1:]),
        "systems_requested": systems,
        "complete": False,
        "data": "../shared/datasets/banking77 (PolyAI, CC BY 4.0)",
        "train_examples": len(train),
        "test_examples": len(test),
        "intents": len(intents),
        "subset": bool(args.per_intent),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "encoder": {"name": encoder.get("name"), "fingerprint": encoder.get("fingerprint")},
        "systems": {},
        "out_of_scope": {
            "seed": SEED,
            "held_out_intents": held_out,
            "ambiguity_threshold": shipped["ambiguity_threshold"],
            "shipped_threshold": shipped["threshold"],
            "systems": {},
        },
    }
    in_scope_train = [(t, i) for t, i in train if i not in held_out]
    for system in systems:
        progress.set_postfix(system=system, part="all intents")
        if system == "embeddings_lr":
            result = lr_system(train, test, system, encoder_dir)
            fallback = None
        else:
            config = stock_config() if system == "stock_rasa" else our_config(encoder_dir)
            result = asyncio.run(rasa_system(config, train, test, system))
            fallback = {"threshold": 0.3, "ambiguity_threshold": 0.1} if system == "stock_rasa" else shipped
        report["systems"][system] = accuracy_scores(result, fallback)
        save(report, out)
        tqdm.write(f"[{system}] {json.dumps(report['systems'][system])}")
        progress.update(1)
        if system == "stock_rasa":
            continue
        progress.set_postfix(system=system, part="out of scope")
        if system == "embeddings_lr":
            oos = lr_system(in_scope_train, test, f"{system}-oos", encoder_dir)
        else:
            oos = asyncio.run(rasa_system(our_config(encoder_dir), in_scope_train, test, f"{system}-oos"))
        held = set(held_out)
        curve = [oos_point(oos["rows"], held, t, shipped["ambiguity_threshold"]) for t in THRESHOLDS]
        report["out_of_scope"]["systems"][system] = {
            "train_seconds": oos["train_seconds"],
            "curve": curve,
            "at_shipped_threshold": oos_point(
                oos["rows"], held, shipped["threshold"], shipped["ambiguity_threshold"]
            ),
            "chosen_by_rule": choose_threshold(curve),
        }
        save(report, out)
        progress.update(1)
    progress.close()
    report["complete"] = True
    if "ours" in report["systems"] and "stock_rasa" in report["systems"]:
        ours, stock = report["systems"]["ours"], report["systems"]["stock_rasa"]
        report["ours_vs_stock"] = {
            "accuracy_points": round(100 * (ours["accuracy"] - stock["accuracy"]), 2),
            "macro_f1_ratio": round(ours["macro_f1"] / max(stock["macro_f1"], 1e-9), 3),
            "train_time_ratio": round(ours["train_seconds"] / max(stock["train_seconds"], 1e-9), 3),
        }
    return report


def missing_systems(report: dict[str, Any]) -> list[str]:
    wanted = ["stock_rasa", "embeddings_lr", "ours"]
    missing = [s for s in wanted if s not in report["systems"]]
    if not missing and report.get("complete", True):
        return []
    state = "finished" if report.get("complete", True) else "was interrupted or is still running"
    return [
        f"**Partial run** (`{report['command']}`, {state}): not measured here: {', '.join(missing) or '-'}. "
        "`make bench-banking77` runs all three in one run.",
        "",
    ]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# BANKING77 intent accuracy and out-of-scope detection",
        "",
        f"Produced by `{report['command']}`: {report['train_examples']} training and "
        f"{report['test_examples']} test questions, {report['intents']} intents, "
        f"{report['machine']['cpus']} CPUs. Accuracy and macro F1 are of the top intent; "
        "'with fallback' counts a fallback as wrong. Parse latency is one message at a time, in process.",
        "",
        *missing_systems(report),
        "| system | accuracy | macro F1 | with fallback (threshold) | training | parse p50 | parse p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for system, s in report["systems"].items():
        with_fallback = (
            f"{s['accuracy_with_fallback']:.2%} ({s['fallback']['threshold']})" if "fallback" in s else "-"
        )
        lines.append(
            f"| {system} | {s['accuracy']:.2%} | {s['macro_f1']:.4f} | {with_fallback} | "
            f"{s['train_seconds']:.0f} s | {s['parse_ms_p50']:.1f} ms | {s['parse_ms_p99']:.1f} ms |"
        )
    if "ours_vs_stock" in report:
        v = report["ours_vs_stock"]
        lines += [
            "",
            f"Ours against stock Rasa: {v['accuracy_points']:+.2f} accuracy points, "
            f"macro F1 x{v['macro_f1_ratio']}, "
            f"training time x{v['train_time_ratio']}.",
        ]
    lines += [
        "",
        "ours is config.yml's pipeline minus its regex entity extractor (BANKING77 has no entities). "
        "Stock's ResponseSelector is left out too: nothing to select.",
    ]
    oos = report["out_of_scope"]
    lines += [
        "",
        "## Out of scope",
        "",
        f"{len(oos['held_out_intents'])} intents held out of training (random.Random({oos['seed']})): "
        + ", ".join(oos["held_out_intents"])
        + ".",
        f"Ambiguity threshold {oos['ambiguity_threshold']} throughout; config.yml ships "
        f"threshold {oos['shipped_threshold']}.",
        "",
    ]
    for system, s in oos["systems"].items():
        lines += [
            f"### {system}",
            "",
            "| threshold | handled right | in-scope accuracy | OOS recall | OOS precision "
            "| in-scope fallback | OOS answered |",
            "|---|---|---|---|---|---|---|",
        ]
        marks: dict[float, str] = defaultdict(str)
        marks[s["at_shipped_threshold"]["threshold"]] += " shipped"
        marks[s["chosen_by_rule"]["threshold"]] += " rule"
        points = {p["threshold"]: p for p in s["curve"]}
        points[s["at_shipped_threshold"]["threshold"]] = s["at_shipped_threshold"]
        for threshold in sorted(points):
            p = points[threshold]
            label = f" ({marks[threshold].strip()})" if threshold in marks else ""
            lines.append(
                f"| {threshold}{label} | {p['handled_right']:.2%} | "
                f"{p['in_scope_accuracy']:.2%} | {p['oos_recall']:.2%} | "
                f"{p['oos_precision']:.2%} | {p['in_scope_fallback_rate']:.2%} | "
                f"{p['oos_answered_confidently']} |"
            )
        lines.append("")
    if "ours" in oos["systems"]:
        chosen = oos["systems"]["ours"]["chosen_by_rule"]
        shipped = oos["systems"]["ours"]["at_shipped_threshold"]
        lines += [
            "Handled right = in-scope questions answered with their intent plus held-out ones that fell "
            "back, over all test questions. The rule (bench/banking77.choose_threshold) takes the threshold "
            "that handles the most right, because here a fallback goes to the knowledge base and then to a "
            "person, "
            f"while a confident wrong intent starts the wrong flow. For ours it picks {chosen['threshold']}; "
            f"config.yml ships {shipped['threshold']}: in-scope accuracy {shipped['in_scope_accuracy']:.2%}, "
            f"out-of-scope recall {shipped['oos_recall']:.2%}, precision {shipped['oos_precision']:.2%}.",
            "The curve is measured on the test split and the rule picks on it, so the chosen point is "
            "optimistic for questions never seen; BANKING77 is English only.",
            "",
        ]
    return "\n".join(lines)


def save(report: dict[str, Any], out: Path) -> None:
    """Written after every system, so an interrupted run still shows (and says) what it measured."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS)
    parser.add_argument(
        "--per-intent", type=int, default=0, help="development only: N training examples per intent"
    )
    parser.add_argument(
        "--test-stride", type=int, default=1, help="with --per-intent: every Nth test question"
    )
    parser.add_argument("--out", default=str(RESULTS / "banking77"), help="results path without suffix")
    parser.add_argument(
        "--encoder-dir", default=str(ENCODER), help="an index's encoder record (default: the current index's)"
    )
    parser.add_argument("--render", action="store_true", help="rewrite the .md from the committed .json")
    args = parser.parse_args()
    out = Path(args.out)
    if args.render:
        report = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
        return 0
    report = run(args, out)
    save(report, out)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
