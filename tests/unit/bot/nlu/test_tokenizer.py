"""bot.nlu.tokenizer: mixed Chinese/English tokenization."""

from pathlib import Path

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.nlu.tokenizer import BilingualTokenizer


@pytest.fixture
def storage(tmp_path: Path) -> LocalModelStorage:
    return LocalModelStorage(tmp_path)


@pytest.fixture
def tokenizer(storage: LocalModelStorage) -> BilingualTokenizer:
    context = ExecutionContext(GraphSchema({}), "test")
    config = {**BilingualTokenizer.get_default_config()}
    return BilingualTokenizer.create(config, storage, Resource("tokenizer"), context)


def words(tokenizer: BilingualTokenizer, text: str) -> list[str]:
    return [t.text for t in tokenizer.tokenize(Message(data={TEXT: text}), TEXT)]


def test_english_is_split_into_words_without_punctuation(tokenizer: BilingualTokenizer) -> None:
    assert words(tokenizer, "Where's my order?!") == ["Where", "'s", "my", "order"]


def test_chinese_is_segmented_by_jieba(tokenizer: BilingualTokenizer) -> None:
    assert words(tokenizer, "我要转人工") == ["我要", "转人工"]


def test_mixed_text_keeps_both_scripts(tokenizer: BilingualTokenizer) -> None:
    tokens = words(tokenizer, "我的steam卡密用不了")
    assert "steam" in tokens and "卡密" in tokens


def test_ids_glued_to_words_become_their_own_tokens(tokenizer: BilingualTokenizer) -> None:
    tokens = words(tokenizer, "orderDG202612010066到哪一步了")
    assert tokens[:2] == ["order", "DG202612010066"]


def test_card_codes_and_emails_stay_whole(tokenizer: BilingualTokenizer) -> None:
    assert "ABCD-EFGH-JKLM-NPQR" in words(tokenizer, "code ABCD-EFGH-JKLM-NPQR fails")
    assert "li.wei@example.com" in words(tokenizer, "邮箱是li.wei@example.com")


def test_masked_card_codes_stay_whole(tokenizer: BilingualTokenizer) -> None:
    # what the channels hand to Rasa: the middle of the code is already masked
    assert "K7QM-****-****-4WZD" in words(tokenizer, "code K7QM-****-****-4WZD fails")
    assert "K7QM-****-****-4WZD" in words(tokenizer, "卡密K7QM-****-****-4WZD提示无效")


def test_offsets_point_into_the_original_text(tokenizer: BilingualTokenizer) -> None:
    text = "卡密 K7QM-2XPA-9FTR-4WZD 用不了, help"
    for token in tokenizer.tokenize(Message(data={TEXT: text}), TEXT):
        assert text[token.start : token.end] == token.text


def test_trained_pipeline_is_saved_and_loaded(
    tokenizer: BilingualTokenizer, storage: LocalModelStorage
) -> None:
    resource = tokenizer.train(TrainingData())
    context = ExecutionContext(GraphSchema({}), "test")
    loaded = BilingualTokenizer.load(BilingualTokenizer.get_default_config(), storage, resource, context)
    text = "my code K7QM-2XPA-9FTR-4WZD 还是不行"
    assert words(loaded, text) == words(tokenizer, text)
