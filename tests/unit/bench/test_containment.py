"""bench.containment: how one turn's tracker events and REST reply become an outcome."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.containment import (
    Case,
    Observation,
    Outcome,
    Record,
    baseline_config,
    observe,
    score,
    spread,
    summarise,
)

CATEGORIES = {
    "refund-how-to": "refunds",
    "refund-status": "refunds",
    "order-status": "orders",
    "payment-methods": "payments",
    "card-code-invalid": "card-codes",
}


def user(text: str, intent: str = "nlu_fallback") -> dict[str, Any]:
    return {"event": "user", "text": text, "parse_data": {"intent": {"name": intent, "confidence": 0.5}}}


def action(name: str) -> dict[str, Any]:
    return {"event": "action", "name": name}


def slot(name: str, value: Any) -> dict[str, Any]:
    return {"event": "slot", "name": name, "value": value}


def bot(text: str, utter: str | None = None) -> dict[str, Any]:
    return {"event": "bot", "text": text, "metadata": {"utter_action": utter} if utter else {}}


def kb_answer(article: str, title: str = "Title") -> list[dict[str, Any]]:
    return [action("action_kb_answer"), bot(f"... (Source: {title})"), slot("kb_article", article)]


def suggestions(*articles: str) -> list[dict[str, Any]]:
    buttons = [{"title": a, "payload": f'/kb_article{{"kb_article":"{a}"}}'} for a in articles]
    return [
        {
            "text": "Did you mean:",
            "buttons": [*buttons, {"title": "Talk to a person", "payload": "/ask_human"}],
        }
    ]


def verdict(
    events: list[dict[str, Any]], article: str, replies: Any = (), loop: str | None = None
) -> Outcome:
    return score(observe(events, loop, list(replies)), article, CATEGORIES).outcome


def test_an_answer_counts_only_from_the_expected_article() -> None:
    events = [action("action_listen"), user("how long until my refund arrives"), *kb_answer("refund-status")]
    seen = observe(
        events, None, [{"text": "Refunds take 1-7 days.\n(Source: Refund approved but money not back yet)"}]
    )
    assert seen.answered == "refund-status" and seen.intent == "nlu_fallback"
    assert seen.source == "Refund approved but money not back yet"
    assert (
        observe(events, None, [{"text": "退款 1-7 个工作日到账。\n（来源：退款进度）"}]).source == "退款进度"
    )
    assert score(seen, "refund-status", CATEGORIES).outcome is Outcome.CONTAINED
    assert score(seen, "refund-how-to", CATEGORIES).outcome is Outcome.WRONG
    assert score(seen, "refund-how-to", CATEGORIES).detail == "article: refund-status"


def test_the_previous_turns_answer_is_not_this_turns() -> None:
    events = [
        user("how do i get a refund"),
        *kb_answer("refund-how-to"),
        action("action_listen"),
        user("and when does the money come back"),
        action("action_kb_answer"),
        bot("Did you mean", "utter_kb_suggest"),
    ]
    replies = suggestions("refund-policy", "refund-status")
    assert verdict(events, "refund-how-to", replies) is Outcome.OTHER  # suggestions without it
    assert verdict(events, "refund-status", replies) is Outcome.ONE_CLICK
    seen = observe(events, None, replies)
    assert seen.answered is None and seen.suggested == ("refund-policy", "refund-status")


def test_a_slot_set_by_another_action_is_no_answer() -> None:
    # kb_article set by a button payload's entity (action_extract_slots), not by action_kb_answer
    events = [
        user('/kb_article{"kb_article":"order-status"}', "kb_article"),
        action("action_extract_slots"),
        slot("kb_article", "order-status"),
    ]
    assert observe(events, None, []).answered is None


def test_the_right_flow_is_contained_another_flow_is_wrong() -> None:
    started = [user("where is my order", "order_status"), action("order_lookup_form")]
    started += [
        {"event": "active_loop", "name": "order_lookup_form"},
        bot("Your order id?", "utter_ask_order_id"),
    ]
    assert verdict(started, "order-status", loop="order_lookup_form") is Outcome.CONTAINED
    assert verdict(started, "refund-status", loop="order_lookup_form") is Outcome.WRONG
    # still running from the first turn: the flow at the end of the turn counts
    asked_again = [
        user("what does delivering mean"),
        action("order_lookup_form"),
        bot("?", "utter_ask_order_id"),
    ]
    assert verdict(asked_again, "order-status", loop="order_lookup_form") is Outcome.CONTAINED
    assert verdict(asked_again, "payment-methods", loop="order_lookup_form") is Outcome.WRONG
    refund = [user("i want my money back", "refund_request"), {"event": "active_loop", "name": "refund_form"}]
    assert verdict(refund, "refund-how-to", loop="refund_form") is Outcome.CONTAINED
    assert verdict(refund, "refund-status", loop="refund_form") is Outcome.WRONG


def test_a_form_answering_a_question_aside_is_an_answer() -> None:
    aside = [
        user("can i still cancel it"),
        action("order_lookup_form"),
        bot("Only paid, undelivered orders ... (Source: Cancel an order)"),
        slot("kb_article", "order-cancel"),
        bot("Your order id?", "utter_ask_order_id"),
    ]
    seen = observe(aside, "order_lookup_form", [])
    assert seen.answered == "order-cancel"
    assert score(seen, "order-cancel", CATEGORIES).detail == "article inside order_lookup_form"
    assert verdict(aside, "refund-status", loop="order_lookup_form") is Outcome.WRONG


def test_handoff_is_read_from_the_slot() -> None:
    events = [
        user("asdf qwer zxcv"),
        action("action_kb_answer"),
        bot("No reliable answer", "utter_kb_no_answer"),
        bot("A person will take over", "utter_handoff_no_agent"),
        slot("handoff_requested", True),
    ]
    assert verdict(events, "order-status") is Outcome.HANDOFF
    assert verdict(events, "none") is Outcome.HANDOFF
    cancelled = [user("cancel"), action("action_cancel_handoff"), slot("handoff_requested", False)]
    assert verdict(cancelled, "order-status") is Outcome.OTHER


def test_questions_no_article_answers() -> None:
    answered = [user("do you sell gpus"), *kb_answer("payment-methods")]
    assert verdict(answered, "none") is Outcome.FALSE_ANSWER
    asked = [user("do you sell gpus"), action("action_kb_answer"), bot("Did you mean", "utter_kb_suggest")]
    assert verdict(asked, "none", suggestions("payment-methods")) is Outcome.NO_ANSWER
    rephrase = [user("???"), action("action_kb_answer"), bot("Please rephrase", "utter_kb_rephrase")]
    assert verdict(rephrase, "none") is Outcome.NO_ANSWER


def test_curated_responses_by_topic() -> None:
    events = [user("refund?", "refund"), action("action_kb_answer"), bot("Refunds ...", "utter_refund")]
    assert verdict(events, "refund-status") is Outcome.OTHER  # right topic, but not the article
    assert verdict(events, "order-status") is Outcome.WRONG
    greeting = [user("hi", "greet"), action("utter_greet"), bot("Hi!", "utter_greet")]
    assert score(observe(greeting, None, []), "order-status", CATEGORIES).detail == "response: utter_greet"


def test_failed_requests_are_errors_not_answers() -> None:
    failed = Observation(error="ReadTimeout: timed out")
    assert score(failed, "none", CATEGORIES).outcome is Outcome.ERROR
    assert score(failed, "order-status", CATEGORIES).outcome is Outcome.ERROR


def record(article: str, outcome: Outcome) -> Record:
    return Record(
        system="product",
        part="single",
        language="en",
        question="q",
        article=article,
        outcome=outcome.value,
        detail="",
        intent=None,
        answered=None,
        suggested=[],
        form=None,
        handoff=False,
        responses=[],
        reply="",
        source_title_shown=None,
    )


def test_rates_and_goals() -> None:
    rows = [record("order-status", Outcome.CONTAINED)] * 17 + [record("order-status", Outcome.ONE_CLICK)] * 2
    rows += [record("order-status", Outcome.WRONG)]
    rows += [
        record("none", Outcome.FALSE_ANSWER),
        record("none", Outcome.HANDOFF),
        record("none", Outcome.NO_ANSWER),
    ]
    summary = summarise(rows)
    assert summary["answerable"] == 20 and summary["none"] == 3
    assert summary["rates"]["contained"] == 0.85 and summary["rates"]["wrong"] == 0.05
    assert summary["rates"]["false_answers_on_none"] == round(1 / 3, 4)
    assert summary["goals_met"] is True
    worse = summarise([*rows, record("order-status", Outcome.WRONG)])
    assert worse["goals_met"] is False  # wrong 2/21 > 0.05
    errored = summarise([*rows, record("order-status", Outcome.ERROR)])
    assert errored["rates"]["contained"] == 0.85 and errored["errors"] == 1 and errored["goals_met"] is False


def test_baseline_config_points_the_featurizer_at_the_encoder() -> None:
    config = Path(__file__).resolve().parents[3] / "config.yml"
    copy = yaml.safe_load(baseline_config(config.read_text("utf-8"), Path("/tmp/kb/current/encoder")))
    featurizers = [
        c for c in copy["pipeline"] if c["name"] == "bot.nlu.embeddings.SentenceEmbeddingFeaturizer"
    ]
    assert featurizers[0]["model_dir"] == "/tmp/kb/current/encoder"
    assert copy["policies"] == yaml.safe_load(config.read_text("utf-8"))["policies"]
    with pytest.raises(ValueError, match="expected one"):
        baseline_config("pipeline:\n  - name: RegexFeaturizer\n", Path("/x"))


def test_limit_spreads_over_each_language_and_part() -> None:
    cases = [Case("single", lang, f"q{i}", "a") for lang in ("zh", "en") for i in range(30)]
    cases += [Case("followup", "en", f"f{i}", "a", "first", "a") for i in range(5)]
    picked = spread(cases, 3)
    assert [c.question for c in picked if c.language == "zh" and c.part == "single"] == ["q0", "q10", "q20"]
    assert len([c for c in picked if c.part == "followup"]) == 3
    assert spread(cases, None) == cases
