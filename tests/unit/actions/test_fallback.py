"""actions.fallback: the "did you mean" step in the customer's language."""

from typing import Any

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.fallback import INTENT_LABELS, ActionDefaultAskAffirmation
from tests.conftest import make_tracker, user_event

RANKING = [
    {"name": "nlu_fallback", "confidence": 0.55},
    {"name": "refund", "confidence": 0.41},
    {"name": "greet", "confidence": 0.2},
    {"name": "cancel_order", "confidence": 0.19},
    {"name": "invoice", "confidence": 0.1},
]


@pytest.mark.parametrize(
    ("language", "person", "none"), [("zh", "转人工", "都不是"), ("en", "Talk to a person", "None of these")]
)
async def test_offers_two_topics_a_person_and_none(
    language: str, person: str, none: str, domain: dict[str, Any]
) -> None:
    tracker = make_tracker(
        [user_event("钱 回来 吗", "nlu_fallback", 1.0)], slots={"language": language}, intent_ranking=RANKING
    )
    dispatcher = CollectingDispatcher()
    await ActionDefaultAskAffirmation().run(dispatcher, tracker, domain)
    message = dispatcher.messages[0]
    assert message["response"] == "utter_ask_affirmation_intro"
    titles = [b["title"] for b in message["buttons"]]
    payloads = [b["payload"] for b in message["buttons"]]
    # greet is not a topic worth suggesting; the two best topics are
    assert payloads == ["/refund", "/cancel_order", "/ask_human", "/out_of_scope"]
    assert titles == [
        INTENT_LABELS["refund"][language],
        INTENT_LABELS["cancel_order"][language],
        person,
        none,
    ]


def test_every_label_has_both_languages() -> None:
    for labels in INTENT_LABELS.values():
        assert set(labels) == {"zh", "en"} and all(labels.values())
