"""Intent classifier: multinomial logistic regression over sentence embeddings and n-gram weights.

On BANKING77 (bench/banking77.py) a linear model over the MiniLM sentence
embedding (bot.nlu.embeddings) plus the count vectors of the words and
character n-grams beats DIET by a wide margin, trains in about a minute
instead of most of an hour on 2 cores, and gives probabilities that sort
in-scope from out-of-scope questions well enough to pick a fallback threshold
from. Entities come from RegexEntityExtractor (config.yml), so DIET is gone.

Rasa's LogisticRegressionClassifier feeds raw counts next to the embedding, so
the character n-grams (hundreds of non-zero counts) drown the embedding and
the words. Here every featurizer's sentence vector becomes sublinear tf-idf,
L2-normalised on its own, so each source weighs in at the same scale.

The model is stored as plain arrays (numpy .npz plus JSON), never a pickle.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Text

import numpy as np
import scipy.sparse as sp
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

logger = logging.getLogger(__name__)


def sentence_blocks(message: Message) -> Dict[str, Any]:
    """The message's sentence-level text features, one entry per featurizer."""
    blocks: Dict[str, Any] = {}
    for feature in message.features:
        if feature.attribute == TEXT and feature.type == FEATURE_TYPE_SENTENCE:
            blocks[str(feature.origin)] = feature.features
    return blocks


def _l2_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ matrix)


class _Layout:
    """Which featurizers feed the model, their widths, and the idf of the sparse ones."""

    def __init__(self, origins: List[str], widths: List[int], sparse: List[bool], idf: Dict[str, np.ndarray]):
        self.origins, self.widths, self.sparse, self.idf = origins, widths, sparse, idf

    @classmethod
    def fit(cls, rows: List[Dict[str, Any]]) -> "_Layout":
        origins = sorted({origin for row in rows for origin in row})
        widths, sparse, idf = [], [], {}
        for origin in origins:
            sample = next(row[origin] for row in rows if origin in row)
            widths.append(int(sample.shape[-1]))
            sparse.append(sp.issparse(sample))
            if sp.issparse(sample):
                counts = sp.vstack([sp.csr_matrix(row[origin]) for row in rows if origin in row]).tocsr()
                document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
                n = counts.shape[0]
                idf[origin] = np.log((1.0 + n) / (1.0 + document_frequency)) + 1.0
        return cls(origins, widths, sparse, idf)

    def matrix(self, rows: List[Dict[str, Any]]) -> sp.csr_matrix:
        blocks = []
        for origin, width, is_sparse in zip(self.origins, self.widths, self.sparse, strict=True):
            if is_sparse:
                counts = sp.vstack(
                    [
                        sp.csr_matrix(row[origin]) if origin in row else sp.csr_matrix((1, width))
                        for row in rows
                    ]
                ).tocsr()
                counts.data = 1.0 + np.log(np.maximum(counts.data, 1e-12))
                blocks.append(_l2_rows(sp.csr_matrix(counts.multiply(self.idf[origin]))))
            else:
                dense = np.vstack(
                    [
                        np.asarray(row[origin]).reshape(1, -1) if origin in row else np.zeros((1, width))
                        for row in rows
                    ]
                )
                blocks.append(_l2_rows(sp.csr_matrix(dense)))
        return sp.hstack(blocks).tocsr()

    def to_json(self) -> Dict[str, Any]:
        return {"origins": self.origins, "widths": self.widths, "sparse": self.sparse}


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class LinearIntentClassifier(IntentClassifier, GraphComponent):
    """Sets intent and intent_ranking from a logistic regression over all sentence features."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            # inverse regularisation; 30 was best of 10/30 on BANKING77, flat around it
            "C": 30.0,
            "max_iter": 3000,
            # how many intents the ranking lists; 0 lists all, as in Rasa's classifiers
            "ranking_length": 10,
        }

    @staticmethod
    def supported_languages() -> Optional[List[Text]]:
        return None

    def __init__(self, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource) -> None:
        self._config = config
        self._model_storage = model_storage
        self._resource = resource
        self._layout: Optional[_Layout] = None
        self._weights: Optional[np.ndarray] = None
        self._bias: Optional[np.ndarray] = None
        self._labels: List[str] = []

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "LinearIntentClassifier":
        return cls(config, model_storage, resource)

    def train(self, training_data: TrainingData) -> Resource:
        from sklearn.linear_model import LogisticRegression

        examples = [e for e in training_data.intent_examples if e.get(INTENT) and e.get(TEXT)]
        labels = sorted({str(e.get(INTENT)) for e in examples})
        if len(labels) < 2:
            logger.warning("LinearIntentClassifier needs at least two intents with examples; not trained")
            return self._resource
        rows = [sentence_blocks(e) for e in examples]
        layout = _Layout.fit(rows)
        model = LogisticRegression(C=float(self._config["C"]), max_iter=int(self._config["max_iter"]))
        model.fit(layout.matrix(rows), [str(e.get(INTENT)) for e in examples])
        self._layout, self._labels = layout, [str(c) for c in model.classes_]
        self._weights, self._bias = np.asarray(model.coef_), np.asarray(model.intercept_)
        self._persist()
        return self._resource

    def _persist(self) -> None:
        assert self._layout is not None and self._weights is not None and self._bias is not None
        with self._model_storage.write_to(self._resource) as directory:
            arrays = {"weights": self._weights, "bias": self._bias}
            arrays.update({f"idf:{origin}": idf for origin, idf in self._layout.idf.items()})
            np.savez(Path(directory) / "model.npz", **arrays)  # type: ignore[arg-type]
            meta = {"labels": self._labels, "layout": self._layout.to_json()}
            (Path(directory) / "model.json").write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "LinearIntentClassifier":
        component = cls(config, model_storage, resource)
        try:
            with model_storage.read_from(resource) as directory:
                meta = json.loads((Path(directory) / "model.json").read_text(encoding="utf-8"))
                with np.load(Path(directory) / "model.npz", allow_pickle=False) as arrays:
                    layout = meta["layout"]
                    idf = {
                        o: arrays[f"idf:{o}"]
                        for o, s in zip(layout["origins"], layout["sparse"], strict=True)
                        if s
                    }
                    component._layout = _Layout(layout["origins"], layout["widths"], layout["sparse"], idf)
                    component._weights, component._bias = arrays["weights"], arrays["bias"]
                component._labels = list(meta["labels"])
        except (ValueError, FileNotFoundError):
            # an untrained classifier (fewer than two intents) answers nothing, as Rasa's do
            logger.debug("LinearIntentClassifier: no trained model in %s", resource.name)
        return component

    def probabilities(self, messages: List[Message]) -> np.ndarray:
        assert self._layout is not None and self._weights is not None and self._bias is not None
        scores = self._layout.matrix([sentence_blocks(m) for m in messages]) @ self._weights.T + self._bias
        scores = np.asarray(scores)
        if self._weights.shape[0] == 1:
            # two intents: scikit-learn keeps one row, the log-odds of the second class
            scores = np.hstack([np.zeros_like(scores), scores])
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))

    def process(self, messages: List[Message]) -> List[Message]:
        todo = [m for m in messages if m.get(TEXT) and sentence_blocks(m)] if self._layout else []
        answered = {id(m) for m in todo}
        for message in messages:
            if id(message) not in answered:
                # what DIET did: an empty intent, which FallbackClassifier turns into nlu_fallback
                message.set(INTENT, {"name": None, "confidence": 0.0}, add_to_output=True)
                message.set(INTENT_RANKING_KEY, [], add_to_output=True)
        if not todo:
            return messages
        length = int(self._config["ranking_length"]) or len(self._labels)
        for message, row in zip(todo, self.probabilities(todo), strict=True):
            order = np.argsort(-row)[:length]
            ranking = [{"name": self._labels[i], "confidence": float(row[i])} for i in order]
            message.set(INTENT, ranking[0], add_to_output=True)
            message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
        return messages
