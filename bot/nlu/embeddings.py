"""Sentence embeddings as dense features for the intent classifier: the knowledge base's encoder.

The knowledge index records its encoder (common/encoders.py) in
``var/knowledge/current/encoder``: by default the packaged multilingual-e5-small,
which reads Chinese as Chinese. This featurizer loads that same encoder, so the
NLU and the knowledge base compare meaning in one vector space, and adds one
sentence feature per message next to the sparse count vectors (what lifts
intent accuracy on BANKING77, bench/banking77.py). No PyTorch in Rasa: the
packaged encoders need numpy only, a model directory runs as its ONNX export.

Training copies the encoder record (and an ONNX export's files) into the Rasa
model, so a trained model keeps the encoder it was trained with even if the
index is rebuilt with another one; loading refuses weights that differ.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Text

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import TOKENS_NAMES
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from common.encoders import (
    EMBEDDING_KEY,
    ONNX_FILES,
    SPEC_FILE,
    Encoder,
    EncoderSpec,
    EncoderUnavailable,
    from_directory,
    pack_vector,
)

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
FILES = (SPEC_FILE, *ONNX_FILES)


def in_training_graph(context: ExecutionContext) -> bool:
    """True in `rasa train`'s graph (it has train_ nodes), False when serving."""
    schema = getattr(context, "graph_schema", None)
    if schema is None:
        return True
    return any(name.startswith("train_") for name in schema.nodes)


def resolve_model_dir(setting: str) -> Path:
    """The encoder directory; relative paths are taken from the repository root."""
    path = Path(setting)
    return path if path.is_absolute() else ROOT / path


def recorded_spec(directory: Path) -> Optional[EncoderSpec]:
    path = directory / SPEC_FILE
    return EncoderSpec.from_json(path.read_text("utf-8")) if path.is_file() else None


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
class SentenceEmbeddingFeaturizer(DenseFeaturizer, GraphComponent):
    """Adds the knowledge base encoder's sentence embedding of the text as a dense sentence feature."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            **DenseFeaturizer.get_default_config(),
            # where `knowledge build` records the encoder of the current index
            "model_dir": "var/knowledge/current/encoder",
            # 2 for the one-off training pass; serving stays on one thread per call
            "training_threads": 2,
        }

    @staticmethod
    def required_packages() -> List[Text]:
        return ["numpy"]

    @staticmethod
    def supported_languages() -> Optional[List[Text]]:
        return None

    def __init__(
        self,
        config: Dict[Text, Any],
        name: Text,
        model_storage: ModelStorage,
        resource: Resource,
        model_dir: Optional[Path] = None,
    ) -> None:
        super().__init__(name, config)
        self._model_storage = model_storage
        self._resource = resource
        self._model_dir = model_dir
        self._encoder: Optional[Encoder] = None
        # serving (not training): hand each message's vector on to the action server
        self._serving = False

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        if int(config.get("training_threads", 1)) < 1:
            raise InvalidConfigException("training_threads must be 1 or more")

    @classmethod
    def fingerprint_addon(cls, config: Dict[Text, Any]) -> Optional[str]:
        """Another encoder in model_dir must not reuse a cached training result."""
        spec = recorded_spec(resolve_model_dir(str(config.get("model_dir", ""))))
        return spec.fingerprint if spec else None

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "SentenceEmbeddingFeaturizer":
        source = resolve_model_dir(str(config["model_dir"]))
        spec = recorded_spec(source)
        if spec is None:
            raise InvalidConfigException(
                f"SentenceEmbeddingFeaturizer: no {SPEC_FILE} in {source}; run `make setup` "
                "(it builds the knowledge index, which records its encoder) or point model_dir at "
                "an index's encoder directory"
            )
        return cls(config, execution_context.node_name, model_storage, resource, source)

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "SentenceEmbeddingFeaturizer":
        component = cls(config, execution_context.node_name, model_storage, resource)
        with model_storage.read_from(resource) as directory:
            # the encoders read their files into memory, so the unpacked model may go away afterwards
            component._open(Path(directory), bulk=in_training_graph(execution_context))
        return component

    def train(self, training_data: TrainingData) -> Resource:
        # finetuning builds this node with load(): take the encoder from model_dir again
        source = self._model_dir or resolve_model_dir(str(self._config["model_dir"]))
        with self._model_storage.write_to(self._resource) as directory:
            for name in FILES:
                if (source / name).is_file():
                    shutil.copy2(source / name, Path(directory) / name)
        return self._resource

    def _open(self, directory: Path, bulk: bool) -> None:
        threads = int(self._config["training_threads"]) if bulk else 1
        self._serving = not bulk
        try:
            self._encoder = from_directory(directory, threads=threads)
        except EncoderUnavailable as error:
            raise InvalidConfigException(
                f"SentenceEmbeddingFeaturizer: {error} (then `make setup` retrains the model)"
            ) from error
        logger.info("sentence features from %s (%s)", self._encoder.spec.name, self._encoder.spec.fingerprint)

    def _featurize(self, messages: List[Message], hand_on: bool = False) -> None:
        # like the count vectors, only messages with tokens: DIET, where a pipeline has it, expects
        # sequence features wherever there are sentence features ("?" alone has text but no tokens)
        todo = [m for m in messages if m.get(TEXT) and m.get(TOKENS_NAMES[TEXT])]
        if not todo or self._encoder is None:
            return
        texts = [str(m.get(TEXT)) for m in todo]
        vectors = self._encoder.queries(texts)
        for message, vector in zip(todo, vectors, strict=True):
            self.add_features_to_message(None, np.expand_dims(vector, 0), TEXT, message)
            if hand_on:
                # the knowledge search in the action server reuses it (knowledge/retriever.py)
                message.set(
                    EMBEDDING_KEY, pack_vector(vector, self._encoder.spec.fingerprint), add_to_output=True
                )

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        if self._encoder is None:
            raise RuntimeError("SentenceEmbeddingFeaturizer used before it was trained or loaded")
        examples = training_data.training_examples
        # batches of 64: the packaged encoders amortise their weights over a batch
        for start in range(0, len(examples), 64):
            self._featurize(examples[start : start + 64])
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        if self._encoder is None:
            raise RuntimeError("SentenceEmbeddingFeaturizer used before it was trained or loaded")
        self._featurize(messages, hand_on=self._serving)
        return messages
