"""actions.handoff: the handoff record and what the customer is told."""

from __future__ import annotations

from typing import Any

import pytest
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import (
    ActionCancelHandoff,
    ActionDefaultFallback,
    ActionHandoff,
    ActionRate,
    ValidateLeaveMessageForm,
)
from handoff.records import HandoffRecord, Priority, Reason
from handoff.requests import Outcome
from tests.conftest import bot_event, make_tracker, user_event
from tests.unit.actions.conftest import FakeQueue


class FakeRequestLog:
    """Stands in for Redis in unit tests; the real one is tested in tests/integration."""

    def __init__(self, outcome: Outcome = Outcome.QUEUED) -> None:
        self.outcome = outcome
        self.records: list[HandoffRecord] = []

    async def record(self, record: HandoffRecord) -> Outcome:
        self.records.append(record)
        return self.outcome


def conversation(*turns: tuple[str, str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i, (text, intent) in enumerate(turns):
        events.append(user_event(text, intent, 1_700_000_000 + 10 * i))
        events.append(bot_event(f"answer {i}", 1_700_000_001 + 10 * i))
    return events


async def run(action: ActionHandoff, tracker: Any, domain: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, tracker, domain)
    return dispatcher.messages, events


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_explicit_request_queues_a_normal_handoff(language: str, domain: dict[str, Any]) -> None:
    log = FakeRequestLog()
    action = ActionHandoff()
    action.request_log = log  # type: ignore[assignment]
    tracker = make_tracker(
        conversation(("我的卡密K7QM-2XPA-9FTR-4WZD用不了", "card_code_problem"), ("转人工", "ask_human")),
        slots={"language": language, "card_code": "K7QM-2XPA-9FTR-4WZD"},
    )
    messages, events = await run(action, tracker, domain)
    assert messages[0]["response"] == "utter_handoff"
    assert events == [SlotSet("handoff_requested", True)]
    record = log.records[0]
    assert record.reason is Reason.CUSTOMER_REQUEST and record.priority is Priority.NORMAL
    assert record.category == "card_code" and record.language == language
    assert record.channel == "rest" and record.conversation_id == "test-conversation"
    # the whole conversation, card codes masked everywhere
    assert [line.speaker for line in record.transcript] == ["customer", "bot", "customer", "bot"]
    assert "K7QM-****-****-4WZD" in record.transcript[0].text
    assert "2XPA" not in record.to_json()
    assert "first question: 我的卡密K7QM-****-****-4WZD用不了" in record.summary


async def test_urgent_topic_is_urgent_with_a_30_minute_sla(domain: dict[str, Any]) -> None:
    log = FakeRequestLog()
    action = ActionHandoff()
    action.request_log = log  # type: ignore[assignment]
    tracker = make_tracker(
        conversation(("someone hacked my account", "account_security")), slots={"language": "en"}
    )
    messages, _ = await run(action, tracker, domain)
    assert messages[0]["response"] == "utter_handoff_urgent"
    record = log.records[0]
    assert record.priority is Priority.URGENT and record.category == "account_security"
    from datetime import datetime

    due = datetime.fromisoformat(record.sla_due) - datetime.fromisoformat(record.created)
    assert due.total_seconds() == 30 * 60


@pytest.mark.parametrize(
    ("outcome", "response"),
    [(Outcome.ALREADY_QUEUED, "utter_handoff_pending"), (Outcome.SPOOLED, "utter_handoff_failed")],
)
async def test_customer_is_told_the_truth_about_the_request(
    outcome: Outcome, response: str, domain: dict[str, Any]
) -> None:
    action = ActionHandoff()
    action.request_log = FakeRequestLog(outcome)  # type: ignore[assignment]
    messages, _ = await run(action, make_tracker(conversation(("human", "ask_human"))), domain)
    assert messages[0]["response"] == response


async def test_second_fallback_hands_off_with_its_reason(domain: dict[str, Any]) -> None:
    log = FakeRequestLog()
    action = ActionDefaultFallback()
    action.request_log = log  # type: ignore[assignment]
    tracker = make_tracker(conversation(("asdf qwer", "nlu_fallback"), ("zxcv", "nlu_fallback")))
    messages, _ = await run(action, tracker, domain)
    assert action.name() == "action_default_fallback"
    assert messages[0]["response"] == "utter_default"
    assert log.records[0].reason is Reason.SECOND_FALLBACK


@pytest.mark.parametrize(
    ("online", "response"), [(["alice"], "utter_handoff"), ([], "utter_handoff_no_agent")]
)
async def test_nobody_on_duty_offers_to_leave_a_message(
    online: list[str], response: str, domain: dict[str, Any]
) -> None:
    action = ActionHandoff()
    action.request_log = FakeRequestLog()  # type: ignore[assignment]
    action.queue = FakeQueue(online)  # type: ignore[assignment]
    messages, _ = await run(action, make_tracker(conversation(("转人工", "ask_human"))), domain)
    assert messages[0]["response"] == response


async def test_leaving_the_queue(domain: dict[str, Any]) -> None:
    from handoff.queue import State

    action = ActionCancelHandoff()
    action.queue = FakeQueue(state=State.WAITING)  # type: ignore[assignment]
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, make_tracker(conversation(("cancel", "cancel_handoff"))), domain)
    assert action.queue.ended == [State.CANCELLED]  # type: ignore[attr-defined]
    assert dispatcher.messages[0]["response"] == "utter_handoff_cancelled"
    assert SlotSet("handoff_requested", False) in events


@pytest.mark.parametrize(("value", "stored"), [("5", True), ("1", True), ("9", False), ("five", False)])
async def test_ratings_are_checked_before_they_are_stored(
    value: str, stored: bool, domain: dict[str, Any]
) -> None:
    action = ActionRate()
    action.queue = FakeQueue()  # type: ignore[assignment]
    tracker = make_tracker(conversation((f'/rate{{"rating":"{value}"}}', "rate")), slots={"rating": value})
    dispatcher = CollectingDispatcher()
    await action.run(dispatcher, tracker, domain)
    expected = "utter_rating_thanks" if stored else "utter_rating_not_expected"
    assert dispatcher.messages[0]["response"] == expected


@pytest.mark.parametrize(
    ("contact", "ok"),
    [("li@example.com", True), ("+86 138 0013 8000", True), ("tomorrow", False), ("", False)],
)
async def test_a_ticket_needs_a_way_to_reach_the_customer(
    contact: str, ok: bool, domain: dict[str, Any]
) -> None:
    form = ValidateLeaveMessageForm()
    dispatcher = CollectingDispatcher()
    slots = await form.validate_ticket_contact(contact, dispatcher, make_tracker(), domain)
    assert (slots["ticket_contact"] is not None) is ok


def test_the_summary_names_what_the_bot_tried_including_knowledge_answers() -> None:
    from actions.handoff import bot_attempts

    events = [
        user_event("how long does a refund take", "nlu_fallback", 1_700_000_000),
        {"event": "action", "name": "action_kb_answer"},
        {"event": "slot", "name": "kb_article", "value": "refunds"},
        {"event": "action", "name": "action_listen"},
        user_event("where is my order", "order_status", 1_700_000_010),
        {"event": "action", "name": "order_lookup_form"},
        {"event": "action", "name": "utter_ask_order_lookup_form_order_id"},
        {"event": "action", "name": "order_lookup_form"},
        {"event": "action", "name": "action_deactivate_loop"},
        {"event": "action", "name": "action_handoff"},
    ]
    assert bot_attempts(events) == [
        "action_kb_answer",
        "kb article refunds",
        "order_lookup_form",
        "utter_ask_order_lookup_form_order_id",
    ]
