"""bot.nlu.embeddings: MiniLM sentence features from the knowledge base's ONNX graph.

Needs the encoder that `make setup` exports with the knowledge index
(var/knowledge/current/encoder); no network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.constants import TOKENS_NAMES
from rasa.nlu.tokenizers.tokenizer import Token
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.nlu.embeddings import FILES, SentenceEmbeddingFeaturizer

ENCODER = Path(__file__).resolve().parents[4] / "var" / "knowledge" / "current" / "encoder"


@pytest.fixture(autouse=True)
def encoder_exported() -> None:
    # a missing encoder is a broken set-up, not a reason to skip: the shipped NLU needs it
    if not (ENCODER / "model.onnx").is_file():
        pytest.fail(f"{ENCODER} is missing: run `make setup` (it exports the encoder)")


def context() -> ExecutionContext:
    return ExecutionContext.__new__(ExecutionContext)


@pytest.fixture
def encoder_copy(tmp_path: Path) -> Path:
    target = tmp_path / "encoder"
    target.mkdir()
    for name in FILES:
        shutil.copy2(ENCODER / name, target / name)
    return target


def trained(tmp_path: Path, encoder_dir: Path) -> tuple[LocalModelStorage, Resource]:
    (tmp_path / "model").mkdir()
    storage, resource = LocalModelStorage(tmp_path / "model"), Resource("embeddings")
    config = {**SentenceEmbeddingFeaturizer.get_default_config(), "model_dir": str(encoder_dir)}
    featurizer = SentenceEmbeddingFeaturizer.create(config, storage, resource, context())
    featurizer.train(TrainingData([tokenized("hello")]))
    return storage, resource


def tokenized(text: str) -> Message:
    """A message as the tokenizer leaves it (one token is enough here)."""
    return Message(data={TEXT: text, TOKENS_NAMES[TEXT]: [Token(text, 0)] if text else []})


def vectors(featurizer: SentenceEmbeddingFeaturizer, texts: list[str]) -> list[np.ndarray]:
    messages = [tokenized(t) for t in texts]
    featurizer.process(messages)
    out = []
    for m in messages:
        sequence, sentence = m.get_dense_features(TEXT)
        assert sequence is None, "the pooled graph has no token vectors to give"
        assert sentence is not None
        out.append(sentence.features[0])
    return out


def test_the_trained_model_carries_its_own_copy_of_the_encoder(tmp_path: Path, encoder_copy: Path) -> None:
    storage, resource = trained(tmp_path, encoder_copy)
    shutil.rmtree(encoder_copy)  # a rebuilt index must not change a trained model
    featurizer = SentenceEmbeddingFeaturizer.load(
        SentenceEmbeddingFeaturizer.get_default_config(), storage, resource, context()
    )
    card, card_again, weather = vectors(
        featurizer, ["my card has not arrived", "where is my new card", "it is sunny today"]
    )
    assert card.shape == (384,)
    assert np.linalg.norm(card) == pytest.approx(1.0, abs=1e-4)
    assert float(card @ card_again) > float(card @ weather) + 0.2


def test_han_text_goes_in_as_pinyin_like_in_the_knowledge_base(tmp_path: Path, encoder_copy: Path) -> None:
    from knowledge.embedding import OnnxEncoder
    from knowledge.text import romanise

    storage, resource = trained(tmp_path, encoder_copy)
    featurizer = SentenceEmbeddingFeaturizer.load(
        SentenceEmbeddingFeaturizer.get_default_config(), storage, resource, context()
    )
    texts = ["充值没到账", "我的steam卡密用不了"]
    plain = OnnxEncoder(ENCODER, romanise_han=False)
    for text, vector in zip(texts, vectors(featurizer, texts), strict=True):
        # the English MiniLM has few Han pieces; the KB's queries are embedded as pinyin too
        assert np.allclose(vector, plain.encode([romanise(text)])[0], atol=1e-5)
        assert not np.allclose(vector, plain.encode([text])[0], atol=1e-2)


def test_training_data_is_featurized_in_bulk_like_single_messages(tmp_path: Path, encoder_copy: Path) -> None:
    storage, resource = trained(tmp_path, encoder_copy)
    featurizer = SentenceEmbeddingFeaturizer.load(
        SentenceEmbeddingFeaturizer.get_default_config(), storage, resource, context()
    )
    texts = ["a", "a much longer question about a refund that is padded less", "退款"]
    data = TrainingData([tokenized(t) for t in texts] + [tokenized("")])
    featurizer.process_training_data(data)
    singles = vectors(featurizer, texts)
    for message, single in zip(data.training_examples, singles, strict=False):
        bulk = message.get_dense_features(TEXT)[1]
        assert bulk is not None
        assert np.allclose(bulk.features[0], single, atol=1e-4)
    assert data.training_examples[-1].get_dense_features(TEXT)[1] is None


def test_a_missing_encoder_says_how_to_get_one(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    config = {**SentenceEmbeddingFeaturizer.get_default_config(), "model_dir": str(tmp_path / "nowhere")}
    with pytest.raises(InvalidConfigException, match="make setup"):
        SentenceEmbeddingFeaturizer.create(
            config, LocalModelStorage(tmp_path / "model"), Resource("e"), context()
        )


def test_romanise_han_setting_is_checked() -> None:
    with pytest.raises(InvalidConfigException):
        SentenceEmbeddingFeaturizer.validate_config({"romanise_han": "sometimes"})
    # YAML reads `on`/`true` as booleans
    SentenceEmbeddingFeaturizer.validate_config({"romanise_han": True})
    SentenceEmbeddingFeaturizer.validate_config({"romanise_han": "Off"})


def test_messages_without_tokens_get_no_feature(tmp_path: Path, encoder_copy: Path) -> None:
    storage, resource = trained(tmp_path, encoder_copy)
    featurizer = SentenceEmbeddingFeaturizer.load(
        SentenceEmbeddingFeaturizer.get_default_config(), storage, resource, context()
    )
    # text but no tokens ("?" alone): a sentence feature without sequence features breaks DIET
    lone = tokenized("?")
    lone.set(TOKENS_NAMES[TEXT], [])
    featurizer.process([lone])
    assert lone.get_dense_features(TEXT) == (None, None)


def test_other_weights_in_model_dir_change_the_fingerprint(encoder_copy: Path) -> None:
    config = {"model_dir": str(encoder_copy)}
    before = SentenceEmbeddingFeaturizer.fingerprint_addon(config)
    with (encoder_copy / "tokenizer.json").open("a", encoding="utf-8") as handle:
        handle.write(" ")
    assert before and SentenceEmbeddingFeaturizer.fingerprint_addon(config) != before
