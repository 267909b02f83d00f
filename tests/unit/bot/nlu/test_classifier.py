"""bot.nlu.classifier: logistic regression over every featurizer's sentence vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, FEATURE_TYPE_SEQUENCE, INTENT, TEXT
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.nlu.classifier import LinearIntentClassifier

WORDS = ["card", "arrived", "refund", "money", "back", "noise"]


def message(text: str, intent: str | None = None, dense: list[float] | None = None) -> Message:
    """A message with word counts, a huge char-like count block and an optional dense vector."""
    m = Message(data={TEXT: text, **({INTENT: intent} if intent else {})})
    counts = np.array([[text.split().count(w) for w in WORDS]], dtype=float)
    m.add_features(Features(sp.csr_matrix(counts), FEATURE_TYPE_SENTENCE, TEXT, "words"))
    m.add_features(Features(sp.csr_matrix(counts), FEATURE_TYPE_SEQUENCE, TEXT, "words"))
    # the same noise for every message, with big counts: it must not swamp the words
    m.add_features(Features(sp.csr_matrix(np.full((1, 50), 40.0)), FEATURE_TYPE_SENTENCE, TEXT, "chars"))
    if dense is not None:
        m.add_features(Features(np.array([dense]), FEATURE_TYPE_SENTENCE, TEXT, "embedding"))
    return m


TRAIN = [
    ("my card arrived", "card_arrival", [1.0, 0.0]),
    ("card has not arrived", "card_arrival", [0.9, 0.1]),
    ("where is my card", "card_arrival", [0.8, 0.2]),
    ("I want a refund", "refund", [0.0, 1.0]),
    ("refund my money", "refund", [0.1, 0.9]),
    ("money back please", "refund", [0.2, 0.8]),
]


@pytest.fixture
def storage(tmp_path: Path) -> LocalModelStorage:
    (tmp_path / "model").mkdir()
    return LocalModelStorage(tmp_path / "model")


def trained(storage: LocalModelStorage, examples: list[tuple[str, str, list[float]]] = TRAIN) -> Resource:
    resource = Resource("intents")
    classifier = LinearIntentClassifier.create(
        LinearIntentClassifier.get_default_config(),
        storage,
        resource,
        ExecutionContext.__new__(ExecutionContext),
    )
    classifier.train(TrainingData([message(t, i, d) for t, i, d in examples]))
    return resource


def loaded(storage: LocalModelStorage, resource: Resource) -> LinearIntentClassifier:
    return LinearIntentClassifier.load(
        LinearIntentClassifier.get_default_config(),
        storage,
        resource,
        ExecutionContext.__new__(ExecutionContext),
    )


def test_a_loaded_model_ranks_intents_with_probabilities(storage: LocalModelStorage) -> None:
    classifier = loaded(storage, trained(storage))
    card, refund = message("card arrived yet", dense=[0.9, 0.1]), message("refund money", dense=[0.1, 0.9])
    classifier.process([card, refund])
    assert card.get(INTENT)["name"] == "card_arrival"
    assert refund.get(INTENT)["name"] == "refund"
    ranking = card.get("intent_ranking")
    assert [r["name"] for r in ranking] == ["card_arrival", "refund"]
    assert sum(r["confidence"] for r in ranking) == pytest.approx(1.0)
    assert ranking[0]["confidence"] > 0.5


def test_probabilities_are_scikit_learns_for_two_and_many_intents(storage: LocalModelStorage) -> None:
    from sklearn.linear_model import LogisticRegression

    three = [*TRAIN, ("noise noise", "other", [0.5, 0.5]), ("just noise", "other", [0.4, 0.6])]
    for examples in (TRAIN, three):
        resource = trained(storage, examples)
        classifier = loaded(storage, resource)
        assert classifier._layout is not None
        rows = [message(t, i, d) for t, i, d in examples]
        from bot.nlu.classifier import sentence_blocks

        matrix = classifier._layout.matrix([sentence_blocks(m) for m in rows])
        reference = LogisticRegression(C=30.0, max_iter=3000).fit(matrix, [i for _, i, _ in examples])
        assert np.allclose(classifier.probabilities(rows), reference.predict_proba(matrix), atol=1e-6)


def test_each_featurizer_is_normalised_on_its_own(storage: LocalModelStorage) -> None:
    classifier = loaded(storage, trained(storage))
    assert classifier._layout is not None
    from bot.nlu.classifier import sentence_blocks

    row = classifier._layout.matrix([sentence_blocks(message("card arrived", dense=[3.0, 4.0]))]).toarray()[0]
    widths = dict(zip(classifier._layout.origins, classifier._layout.widths, strict=True))
    blocks, start = {}, 0
    for origin in classifier._layout.origins:
        blocks[origin] = row[start : start + widths[origin]]
        start += widths[origin]
    # counts of 40 in 50 columns would outweigh two words 1000:1 if left raw
    for origin in ("words", "chars", "embedding"):
        assert np.linalg.norm(blocks[origin]) == pytest.approx(1.0)


def test_messages_without_text_features_get_an_empty_intent_for_the_fallback(
    storage: LocalModelStorage,
) -> None:
    classifier = loaded(storage, trained(storage))
    bare = Message(data={TEXT: "?"})  # punctuation only: the tokenizer leaves nothing to count
    empty = Message(data={TEXT: ""})
    classifier.process([bare, empty])
    for m in (bare, empty):
        # FallbackClassifier reads message.data["intent"] and makes this nlu_fallback
        assert m.get(INTENT) == {"name": None, "confidence": 0.0}
        assert m.get("intent_ranking") == []


def test_one_intent_trains_nothing_and_answers_nothing(storage: LocalModelStorage) -> None:
    resource = trained(storage, TRAIN[:3])
    classifier = loaded(storage, resource)
    m = message("card arrived", dense=[1.0, 0.0])
    classifier.process([m])
    assert m.get(INTENT) == {"name": None, "confidence": 0.0}


def test_ranking_length_zero_lists_every_intent(storage: LocalModelStorage) -> None:
    resource = trained(storage)
    config = {**LinearIntentClassifier.get_default_config(), "ranking_length": 0}
    classifier = LinearIntentClassifier.load(
        config, storage, resource, ExecutionContext.__new__(ExecutionContext)
    )
    m = message("card arrived", dense=[1.0, 0.0])
    classifier.process([m])
    assert len(m.get("intent_ranking")) == 2


def test_the_model_is_stored_without_pickles(storage: LocalModelStorage) -> None:
    resource = trained(storage)
    with storage.read_from(resource) as directory:
        names = sorted(p.name for p in Path(directory).iterdir())
        assert names == ["model.json", "model.npz"]
        np.load(Path(directory) / "model.npz", allow_pickle=False)
