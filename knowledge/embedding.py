"""Sentence embeddings: sentence-transformers for index builds, ONNX Runtime for queries.

Both run the same weights (the ONNX graph is exported from the loaded
sentence-transformers model at build time and checked against it), so
document and query vectors live in one space. Queries go through ONNX Runtime
because a single short query costs ~6 ms there against ~16 ms in PyTorch on
this 2-core machine, and the action server then needs no PyTorch at all.
Models load from local directories only; nothing is fetched from a hub.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from knowledge.text import has_han, romanise

logger = logging.getLogger(__name__)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MAX_TOKENS = 256
_PROBE = "充值退款"


class Encoder(Protocol):
    dimensions: int

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray: ...


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
    unknown = sum(1 for piece in pieces if piece == "[UNK]" or piece == "<unk>")
    return unknown >= len(_PROBE) // 2


def prepare(texts: list[str], romanise_han: bool) -> list[str]:
    if not romanise_han:
        return texts
    return [romanise(t) if has_han(t) else t for t in texts]


class SentenceTransformerEncoder:
    """Batch encoding for index builds (PyTorch)."""

    def __init__(self, model_dir: Path, romanise_han: bool) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self.model_dir = model_dir
        self.romanise_han = romanise_han
        dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dimensions = int(dimension() or 0)

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        vectors = self.model.encode(
            prepare(texts, self.romanise_han),
            batch_size=32,
            normalize_embeddings=True,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def export_onnx(self, target: Path) -> None:
        """Write model.onnx + tokenizer.json to target (mean pooling and normalisation inside the graph)."""
        import torch

        transformer: Any = self.model[0].auto_model
        transformer.eval()

        class Pooled(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
                hidden = self.inner(
                    input_ids=ids, attention_mask=mask, token_type_ids=types
                ).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, dim=1)

        target.mkdir(parents=True, exist_ok=True)
        sample = self.model.tokenizer(["warm up"], return_tensors="pt")
        tmp = target / "model.onnx.tmp"
        with torch.inference_mode():
            torch.onnx.export(
                Pooled(transformer),
                (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
                str(tmp),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "token_type_ids": {0: "batch", 1: "tokens"},
                    "embedding": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
        tmp.replace(target / "model.onnx")
        shutil.copy2(self.model_dir / "tokenizer.json", target / "tokenizer.json")
        # the graph must give the same vectors as the model it came from
        probe = ["how do I top up my game account", "dian ka chong zhi shi bai"]
        expected = self.model.encode(probe, normalize_embeddings=True, convert_to_numpy=True)
        got = OnnxEncoder(target, romanise_han=False).encode(probe)
        if float(np.abs(expected - got).max()) > 1e-3:
            raise RuntimeError("the exported ONNX model disagrees with sentence-transformers")


class OnnxEncoder:
    """Query encoding with ONNX Runtime: one thread unless told otherwise, no PyTorch."""

    def __init__(self, directory: Path, romanise_han: bool, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        # one query at a time: a second thread costs more in hand-over than it gains;
        # bulk passes (training a classifier on thousands of examples) may ask for more
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.romanise_han = romanise_han
        self.dimensions = int(self.session.get_outputs()[0].shape[-1] or 0)
        self._lock = threading.Lock()

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        rows = []
        for text in prepare(texts, self.romanise_han):
            encoding = self.tokenizer.encode(text)
            ids = np.asarray([encoding.ids], dtype=np.int64)
            feeds = {
                "input_ids": ids,
                "attention_mask": np.asarray([encoding.attention_mask], dtype=np.int64),
                "token_type_ids": np.zeros_like(ids),
            }
            rows.append(self.session.run(None, feeds)[0][0])
        return (
            np.ascontiguousarray(np.vstack(rows), dtype=np.float32)
            if rows
            else np.zeros((0, self.dimensions), np.float32)
        )

    def encode_many(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Bulk encoding: length-sorted, padded batches (the graph pools over the mask only)."""
        encodings = self.tokenizer.encode_batch(prepare(texts, self.romanise_han))
        out = np.zeros((len(texts), self.dimensions), np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros((len(batch), width), np.int64)
            for row, i in enumerate(batch):
                ids[row, : len(encodings[i].ids)] = encodings[i].ids
                mask[row, : len(encodings[i].ids)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            out[batch] = self.session.run(None, feeds)[0]
        return out
