"""The sparse BM25 index ranks like BM25 should."""

from __future__ import annotations

from pathlib import Path

from knowledge.bm25 import BM25Index


def test_rare_terms_weigh_more_and_scores_survive_a_round_trip(tmp_path: Path) -> None:
    documents = [["refund", "money"], ["refund", "code", "code"], ["top", "up", "game"], ["refund"]]
    index = BM25Index.build(documents)
    best = index.top(["code", "refund"], 4)
    assert best[0][0] == 1
    assert {i for i, _ in best} == {0, 1, 3}
    assert index.top(["nothing"], 3) == []
    index.save(tmp_path)
    again = BM25Index.load(tmp_path)
    assert again.top(["code", "refund"], 4) == best
