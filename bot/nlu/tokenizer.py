"""Tokenizer for mixed Chinese/English customer messages.

Rasa's JiebaTokenizer emits whitespace as tokens and treats English poorly;
its WhitespaceTokenizer cannot segment Chinese. Customers mix both in one line
("steam卡密用不了", "order号DG202611230017"), so text is split into runs of
Han ideographs, segmented by jieba, and everything else, tokenized by a blank
spaCy English pipeline whose tokenizer knows our card-code and order-id
shapes (so "K7QM-2XPA-9FTR-4WZD" stays one token). The spaCy pipeline is
created in code at training time, saved into the model and loaded from it,
so serving always tokenizes exactly as training did.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Text

from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.tokenizers.tokenizer import Token, Tokenizer
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

logger = logging.getLogger(__name__)

_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# whole tokens the English tokenizer must not split at hyphens or dots
_WHOLE_WORD_PATTERN = (
    r"^(?:[A-Za-z0-9]{4}-\*{4}-\*{4}-[A-Za-z0-9]{4}"  # card code, masked by the channel
    r"|[A-Za-z0-9]{4}(?:-[A-Za-z0-9]{4}){3}"  # card code
    r"|[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"  # e-mail
    r"|\+?\d[\d\-]{5,}\d)$"  # phone numbers with dashes
)
# ids customers glue to other words ("orderDG202611230017") are cut out first
_ID_RE = re.compile(
    r"(?i)DG\d{12}(?!\d)"
    r"|(?<![A-Za-z0-9])[A-Za-z0-9]{4}-\*{4}-\*{4}-[A-Za-z0-9]{4}(?![A-Za-z0-9])"
    r"|(?<![A-Za-z0-9])[A-Za-z0-9]{4}(?:-[A-Za-z0-9]{4}){3}(?![A-Za-z0-9])"
    r"|[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"
)
_SPACY_DIR = "spacy_tokenizer"

# shop words jieba's general dictionary does not know; without them "卡密用不了"
# splits as "卡密用 / 不了" and the model never sees the word 卡密
DOMAIN_WORDS = (
    "卡密",
    "转人工",
    "人工客服",
    "点券",
    "充值卡",
    "礼品卡",
    "兑换码",
    "激活码",
    "直充",
    "到账",
    "原神",
    "王者荣耀",
    "和平精英",
    "创世结晶",
    "Q币",
    "星卡",
    "小卡",
    "电子发票",
    "退款",
    "扣款",
    "重复扣款",
    "盗号",
    "被盗",
    "改绑",
    "会员",
    "代充",
    "未到账",
    "已使用",
    "已兑换",
    "订单号",
)
_words_added = False


def _add_domain_words() -> None:
    global _words_added
    if _words_added:
        return
    import jieba

    for word in DOMAIN_WORDS:
        jieba.add_word(word, freq=20000)
    _words_added = True


def build_latin_pipeline() -> Any:
    """A blank spaCy English pipeline with our token rules."""
    import spacy

    nlp = spacy.blank("en")
    nlp.tokenizer.token_match = re.compile(_WHOLE_WORD_PATTERN).match
    return nlp


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=True)
class BilingualTokenizer(Tokenizer):
    """jieba for Chinese runs, spaCy for the rest; punctuation is dropped."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            "intent_tokenization_flag": False,
            "intent_split_symbol": "_",
            "token_pattern": None,
            "prefix_separator_symbol": None,
        }

    @staticmethod
    def required_packages() -> List[Text]:
        return ["jieba", "spacy"]

    def __init__(
        self,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        nlp: Any = None,
    ) -> None:
        super().__init__(config)
        self._model_storage = model_storage
        self._resource = resource
        self._nlp = nlp if nlp is not None else build_latin_pipeline()

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "BilingualTokenizer":
        return cls(config, model_storage, resource)

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "BilingualTokenizer":
        import spacy

        try:
            with model_storage.read_from(resource) as directory:
                nlp = spacy.load(directory / _SPACY_DIR)
                # token_match is a callable: spaCy stores its pattern, re-attach ours
                nlp.tokenizer.token_match = re.compile(_WHOLE_WORD_PATTERN).match
        except (ValueError, OSError):
            logger.warning("tokenizer resource missing from the model; using a fresh pipeline")
            nlp = None
        return cls(config, model_storage, resource, nlp)

    def train(self, training_data: TrainingData) -> Resource:
        with self._model_storage.write_to(self._resource) as directory:
            self._nlp.to_disk(directory / _SPACY_DIR)
        return self._resource

    def tokenize(self, message: Message, attribute: Text) -> List[Token]:
        text = message.get(attribute) or ""
        tokens: List[Token] = []
        position = 0
        for match in _HAN_RUN.finditer(text):
            tokens.extend(self._latin_tokens(text[position : match.start()], position))
            tokens.extend(self._han_tokens(match.group(), match.start()))
            position = match.end()
        tokens.extend(self._latin_tokens(text[position:], position))
        return self._apply_token_pattern(tokens)

    def _latin_tokens(self, chunk: str, offset: int) -> List[Token]:
        tokens: List[Token] = []
        position = 0
        for match in _ID_RE.finditer(chunk):
            tokens.extend(self._spacy_tokens(chunk[position : match.start()], offset + position))
            tokens.append(Token(match.group(), offset + match.start()))
            position = match.end()
        tokens.extend(self._spacy_tokens(chunk[position:], offset + position))
        return tokens

    def _spacy_tokens(self, chunk: str, offset: int) -> List[Token]:
        if not chunk.strip():
            return []
        doc = self._nlp.make_doc(chunk)
        return [
            Token(token.text, offset + token.idx) for token in doc if not (token.is_space or token.is_punct)
        ]

    @staticmethod
    def _han_tokens(chunk: str, offset: int) -> List[Token]:
        import jieba

        _add_domain_words()
        return [Token(word, offset + start) for word, start, _end in jieba.tokenize(chunk)]
