"""bench.nlu_cv keeps each (system, fold) part under a hash of its inputs."""

from __future__ import annotations

import json
from pathlib import Path

from bench import nlu_cv


def _ours(tmp_path: Path, name: str) -> dict[str, object]:
    encoder = tmp_path / name
    encoder.mkdir()
    (encoder / "encoder.json").write_text(json.dumps({"name": name}), "utf-8")
    return nlu_cv.our_config(encoder)


def test_the_parts_hash_follows_data_pipeline_and_encoder(tmp_path: Path) -> None:
    systems = {"stock_rasa": nlu_cv.stock_config(), "ours": _ours(tmp_path, "e5")}
    same = nlu_cv.inputs_hash("nlu: a", systems)
    assert nlu_cv.inputs_hash("nlu: a", dict(reversed(list(systems.items())))) == same
    assert nlu_cv.inputs_hash("nlu: b", systems) != same
    assert nlu_cv.inputs_hash("nlu: a", {**systems, "ours": _ours(tmp_path, "minilm")}) != same
    assert nlu_cv.inputs_hash("nlu: a", {"stock_rasa": nlu_cv.stock_config()}) != same


def test_a_row_survives_the_part_file() -> None:
    row = {
        "language": "zh",
        "intent": "order_status",
        "predicted": "order_status",
        "gold_entities": {("order_id", 3, 17)},
        "pred_entities": set(),
    }
    assert nlu_cv._row_from_json(json.loads(json.dumps(nlu_cv._row_to_json(row)))) == row
