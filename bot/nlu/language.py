"""NLU component that tags every message with the customer's language.

The language is emitted as a ``language`` entity so the ``language`` slot
fills itself through a plain from_entity mapping on every message, before the
bot picks a response variation. The entity is declared with
``influence_conversation: false`` so it never changes dialogue predictions.
Messages without letters (an order id alone, digits) emit nothing, which
keeps the conversation's previous language.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message

from common.language import detect_language

_HAS_LETTERS = re.compile(r"[A-Za-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff01-\uff5e]")
_IDS_ONLY = re.compile(
    r"^[\s,;:#]*(?:(?:DG\d{12}|[A-Z0-9]{4}(?:-(?:[A-Z0-9]{4}|\*{4})){2}-[A-Z0-9]{4}|\S+@\S+)[\s,;:#]*)+$",
    re.IGNORECASE,
)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=False)
class LanguageDetector(GraphComponent):
    """Adds {"entity": "language", "value": "zh"|"en"} to parsed messages."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"entity_name": "language"}

    def __init__(self, config: Dict[Text, Any]) -> None:
        self._entity = config.get("entity_name", "language")

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "LanguageDetector":
        return cls(config)

    @staticmethod
    def supported_languages() -> Optional[List[Text]]:
        return None

    def language_of(self, text: str) -> Optional[str]:
        """The detected language, or None when the text carries no language."""
        if not text or not _HAS_LETTERS.search(text) or _IDS_ONLY.match(text):
            return None
        return detect_language(text)

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT) or ""
            language = self.language_of(text)
            if language is None:
                continue
            entity = {
                "entity": self._entity,
                "value": language,
                "start": 0,
                "end": len(text),
                "confidence": 1.0,
                "extractor": self.__class__.__name__,
            }
            message.set(ENTITIES, [*message.get(ENTITIES, []), entity], add_to_output=True)
        return messages
