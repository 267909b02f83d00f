"""Sentence embeddings as dense features for the intent classifier, without PyTorch in Rasa.

The knowledge base already ships MiniLM as an ONNX graph (mean pooling and
normalisation inside, exported and checked by ``knowledge build``). This
featurizer runs that graph with ONNX Runtime and adds one 384-dimensional
sentence feature per message next to the sparse count vectors, which is what
lifts intent accuracy on BANKING77 (bench/banking77.py). Han text goes in as
pinyin when the model cannot see Han characters, as in the knowledge base.

Training copies the graph and tokenizer into the Rasa model, so a trained model
keeps the exact weights it was trained with even if the index is rebuilt.
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

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
FILES = ("model.onnx", "tokenizer.json")


def romanise_setting(config: Dict[Text, Any]) -> str:
    """auto / on / off; YAML turns on and off into booleans."""
    value = config.get("romanise_han", "auto")
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).strip().lower()


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


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
class SentenceEmbeddingFeaturizer(DenseFeaturizer, GraphComponent):
    """Adds the MiniLM sentence embedding of the text as a dense sentence feature."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            **DenseFeaturizer.get_default_config(),
            # where `knowledge build` leaves the exported graph of the current index
            "model_dir": "var/knowledge/current/encoder",
            # auto: pinyin for Han when the tokenizer has no Han pieces; or on / off
            "romanise_han": "auto",
            # 2 for the one-off training pass; serving stays on one thread per call
            "training_threads": 2,
        }

    @staticmethod
    def required_packages() -> List[Text]:
        return ["onnxruntime", "tokenizers", "pypinyin"]

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
        self._encoder: Any = None
        self._batch_encoder: Any = None

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        if romanise_setting(config) not in ("auto", "on", "off", "true", "false", "1", "0"):
            raise InvalidConfigException("romanise_han must be auto, on or off")

    @classmethod
    def fingerprint_addon(cls, config: Dict[Text, Any]) -> Optional[str]:
        """Other weights in model_dir must not reuse a cached training result."""
        from knowledge.embedding import model_fingerprint

        source = resolve_model_dir(str(config.get("model_dir", "")))
        return model_fingerprint(source) if source.is_dir() else None

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "SentenceEmbeddingFeaturizer":
        source = resolve_model_dir(str(config["model_dir"]))
        missing = [name for name in FILES if not (source / name).is_file()]
        if missing:
            raise InvalidConfigException(
                f"SentenceEmbeddingFeaturizer: {', '.join(missing)} not found in {source}; "
                "run `make setup` (it builds the knowledge index, which exports the encoder) "
                "or point model_dir at a directory holding model.onnx and tokenizer.json"
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
            # the sessions read the graph into memory, so the unpacked model may go away afterwards
            component._open(Path(directory), bulk=in_training_graph(execution_context))
        return component

    def train(self, training_data: TrainingData) -> Resource:
        # finetuning builds this node with load(): take the graph from model_dir again
        source = self._model_dir or resolve_model_dir(str(self._config["model_dir"]))
        with self._model_storage.write_to(self._resource) as directory:
            for name in FILES:
                shutil.copy2(source / name, Path(directory) / name)
        return self._resource

    def _open(self, directory: Path, bulk: bool) -> None:
        from knowledge.embedding import OnnxEncoder, needs_romanising

        romanise_han = needs_romanising(directory, romanise_setting(self._config))
        self._encoder = OnnxEncoder(directory, romanise_han=romanise_han)
        if bulk:
            # a second session with more threads, only where training data gets featurized
            self._batch_encoder = OnnxEncoder(
                directory, romanise_han=romanise_han, threads=int(self._config["training_threads"])
            )

    def _featurize(self, messages: List[Message], encoder: Any, bulk: bool = False) -> None:
        # like the count vectors, only messages with tokens: DIET, where a pipeline has it, expects
        # sequence features wherever there are sentence features ("?" alone has text but no tokens)
        todo = [m for m in messages if m.get(TEXT) and m.get(TOKENS_NAMES[TEXT])]
        if not todo:
            return
        texts = [str(m.get(TEXT)) for m in todo]
        vectors = encoder.encode_many(texts) if bulk else encoder.encode(texts)
        for message, vector in zip(todo, vectors, strict=True):
            self.add_features_to_message(None, np.expand_dims(vector, 0), TEXT, message)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        if self._encoder is None:
            raise RuntimeError("SentenceEmbeddingFeaturizer used before it was trained or loaded")
        self._featurize(training_data.training_examples, self._batch_encoder or self._encoder, bulk=True)
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        if self._encoder is None:
            raise RuntimeError("SentenceEmbeddingFeaturizer used before it was trained or loaded")
        self._featurize(messages, self._encoder)
        return messages
