"""actions.orders: the order lookup form's checks and the order shown after them.

A real SQLite shop, seeded in a temporary directory (no network); a backend that
never answers stands for a shop that is down.
"""

from __future__ import annotations

from typing import Any

import pytest
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import ActionHandoff
from actions.orders import ActionShowOrder, ValidateOrderLookupForm
from handoff.records import Priority, Reason
from knowledge.config import KnowledgeConfig
from shop.backend import ShopBackend
from tests.conftest import make_tracker, user_event
from tests.unit.actions.conftest import SilentShop, knowledge_action
from tests.unit.actions.test_handoff import FakeRequestLog

ORDER = "DG202611200001"  # Steam CNY 100, code K7QM-2XPA-9FTR-4WZD delivered, phone ends 8000


def form(backend: ShopBackend) -> tuple[ValidateOrderLookupForm, FakeRequestLog]:
    action = ValidateOrderLookupForm()
    action.backend = backend
    log = FakeRequestLog()
    action.handoff = ActionHandoff()
    action.handoff.request_log = log  # type: ignore[assignment]
    return action, log


def tracker(language: str = "en", **slots: Any) -> Any:
    return make_tracker(
        [user_event("where is my order", "order_status", 1_700_000_000)],
        slots={"language": language, **slots},
    )


async def test_order_id_format_and_existence(shop: ShopBackend, domain: dict[str, Any]) -> None:
    action, _ = form(shop)
    dispatcher = CollectingDispatcher()
    assert await action.validate_order_id("DG123", dispatcher, tracker(), domain) == {"order_id": None}
    assert dispatcher.messages[-1]["response"] == "utter_order_id_invalid"
    assert await action.validate_order_id("DG000000000000", dispatcher, tracker(), domain) == {
        "order_id": None,
        "lookup_misses": 1,
    }
    assert dispatcher.messages[-1]["response"] == "utter_order_not_found"
    found = await action.validate_order_id(
        f"my order is {ORDER.lower()} thanks", dispatcher, tracker(), domain
    )
    assert found == {"order_id": ORDER, "owner_verified": False}


@pytest.mark.parametrize(
    ("language", "question", "title"),
    [("zh", "退款多久到账", "退款规则"), ("en", "how long does a refund take", "Refund policy")],
)
async def test_a_question_instead_of_an_order_id_is_answered_and_the_form_asks_again(
    shop: ShopBackend,
    domain: dict[str, Any],
    kb_config: KnowledgeConfig,
    language: str,
    question: str,
    title: str,
) -> None:
    action, _ = form(shop)
    action.kb = knowledge_action(kb_config, 0.0)  # sure of everything
    asked = make_tracker(
        [user_event("where is my order", "order_status", 1), user_event(question, "nlu_fallback", 2)],
        slots={"language": language, "requested_slot": "order_id"},
    )
    dispatcher = CollectingDispatcher()
    slots = await action.validate_order_id(question, dispatcher, asked, domain)
    assert slots == {"order_id": None, "kb_article": "refunds"}
    (answer,) = dispatcher.messages
    assert title in answer["text"] and answer.get("response") is None
    # an order id typed wrong is still a wrong order id, however sure the knowledge base is
    typo = make_tracker([user_event("DG123", "inform", 3)], slots={"language": language})
    dispatcher = CollectingDispatcher()
    assert await action.validate_order_id("DG123", dispatcher, typo, domain) == {"order_id": None}
    assert dispatcher.messages[-1]["response"] == "utter_order_id_invalid"


async def test_a_knowledge_base_that_fails_inside_a_form_leaves_the_form_as_it_was(
    shop: ShopBackend, domain: dict[str, Any], kb_config: KnowledgeConfig
) -> None:
    class BrokenHolder:
        config = kb_config

        def get(self) -> Any:
            raise OSError("index unreadable")

    action, _ = form(shop)
    action.kb = knowledge_action(kb_config, 0.0)
    action.kb.retriever = BrokenHolder()  # type: ignore[assignment]
    asked = make_tracker(
        [user_event("how long does a refund take", "nlu_fallback", 2)],
        slots={"language": "en", "requested_slot": "order_id"},
    )
    dispatcher = CollectingDispatcher()
    slots = await action.validate_order_id("how long does a refund take", dispatcher, asked, domain)
    assert slots == {"order_id": None}
    assert [m["response"] for m in dispatcher.messages] == ["utter_order_id_invalid"]


async def test_ownership_three_strikes(shop: ShopBackend, domain: dict[str, Any]) -> None:
    action, _ = form(shop)
    dispatcher = CollectingDispatcher()
    ok = await action.validate_owner_proof("8000", dispatcher, tracker(order_id=ORDER), domain)
    assert ok == {"owner_proof": "verified", "owner_verified": True, "verification_failures": 0}
    assert await action.validate_owner_proof("LIWEI@example.com", dispatcher, tracker(order_id=ORDER), domain)
    # not a proof at all: asked again, not counted
    bad = await action.validate_owner_proof("hello", dispatcher, tracker(order_id=ORDER), domain)
    assert bad == {"owner_proof": None} and dispatcher.messages[-1]["response"] == "utter_owner_proof_invalid"
    wrong = await action.validate_owner_proof("1234", dispatcher, tracker(order_id=ORDER), domain)
    assert wrong == {"owner_proof": None, "verification_failures": 1}
    assert dispatcher.messages[-1]["response"] == "utter_owner_check_failed"
    assert not any("Steam" in str(m) for m in dispatcher.messages), "nothing about the order before the check"


async def test_third_failure_hands_off_with_high_priority(shop: ShopBackend, domain: dict[str, Any]) -> None:
    action, log = form(shop)
    dispatcher = CollectingDispatcher()
    slots = {"order_id": ORDER, "verification_failures": 2, "requested_slot": "owner_proof"}
    t = make_tracker(
        [user_event("where is my order", "order_status", 1), user_event("1234", "inform", 2)],
        slots={"language": "zh", **slots},
    )
    t.events.append({"event": "slot", "name": "owner_proof", "value": "1234"})
    t.slots["owner_proof"] = "1234"
    events = await action.run(dispatcher, t, domain)
    assert [m["response"] for m in dispatcher.messages] == ["utter_owner_check_locked", "utter_handoff"]
    assert ActiveLoop(None) in events and SlotSet("requested_slot", None) in events
    record = log.records[0]
    assert record.reason is Reason.VERIFICATION_FAILED and record.priority is Priority.HIGH


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_backend_timeout_apologises_and_hands_off(domain: dict[str, Any], language: str) -> None:
    action, log = form(SilentShop())
    dispatcher = CollectingDispatcher()
    t = make_tracker(
        [user_event(ORDER, "inform", 1)], slots={"language": language, "requested_slot": "order_id"}
    )
    t.events.append({"event": "slot", "name": "order_id", "value": ORDER})
    t.slots["order_id"] = ORDER
    events = await action.run(dispatcher, t, domain)
    assert [m["response"] for m in dispatcher.messages] == ["utter_shop_unavailable", "utter_handoff"]
    assert ActiveLoop(None) in events
    assert log.records[0].reason is Reason.ACTION_FAILURE and log.records[0].priority is Priority.HIGH


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "zh",
            [
                "订单 DG202611200001",
                "状态：已发货",
                "Steam 钱包充值卡 100 元 x1",
                "K7QM-****-****-4WZD (已发放)",
                "(UTC+8)",
            ],
        ),
        (
            "en",
            [
                "Order DG202611200001",
                "Status: delivered",
                "Steam Wallet Card CNY 100 x1",
                "K7QM-****-****-4WZD (delivered)",
            ],
        ),
    ],
)
async def test_the_order_after_the_check(
    shop: ShopBackend, domain: dict[str, Any], language: str, expected: list[str]
) -> None:
    action = ActionShowOrder()
    action.backend = shop
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, tracker(language, order_id=ORDER, owner_verified=True), domain)
    text = dispatcher.messages[0]["text"]
    for piece in expected:
        assert piece in text
    assert "2XPA" not in text, "card codes are masked"
    assert SlotSet("owner_verified", None) in events
    # without the check: nothing at all
    dispatcher = CollectingDispatcher()
    assert await action.run(dispatcher, tracker(language, order_id=ORDER), domain) == []
    assert dispatcher.messages == []


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_shop_failing_after_the_check_apologises_and_hands_off(
    domain: dict[str, Any], language: str
) -> None:
    action = ActionShowOrder()
    action.backend = SilentShop()
    log = FakeRequestLog()
    action.handoff = ActionHandoff()
    action.handoff.request_log = log  # type: ignore[assignment]
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, tracker(language, order_id=ORDER, owner_verified=True), domain)
    assert [m["response"] for m in dispatcher.messages] == ["utter_shop_unavailable", "utter_handoff"]
    assert log.records[0].reason is Reason.ACTION_FAILURE
    assert not any(e.get("event") == "active_loop" for e in events), "the form is already over"
    assert SlotSet("owner_verified", None) in events


async def test_an_order_guessed_at_from_other_conversations_is_locked_for_everyone(
    shop: ShopBackend, domain: dict[str, Any], proof_limiter: Any
) -> None:
    """Issue 23: the three strikes were per conversation; a new conversation started from zero."""
    from actions.proofs import ORDER_LIMIT

    action, log = form(shop)
    for n in range(ORDER_LIMIT - 1):
        t = tracker(order_id=ORDER)
        t.sender_id = f"attacker-{n}"
        assert (await action.validate_owner_proof(f"{1000 + n}", CollectingDispatcher(), t, domain))[
            "owner_proof"
        ] is None
    # the next wrong guess, from yet another conversation, locks the order: a person, told why
    dispatcher = CollectingDispatcher()
    t = make_tracker(
        [user_event("where is my order", "order_status", 1), user_event("1999", "inform", 2)],
        slots={"language": "en", "order_id": ORDER, "requested_slot": "owner_proof", "owner_proof": "1999"},
        sender_id="attacker-last",
    )
    t.events.append({"event": "slot", "name": "owner_proof", "value": "1999"})
    await action.run(dispatcher, t, domain)
    assert dispatcher.messages[0]["response"] == "utter_owner_check_locked"
    record = log.records[-1]
    assert record.category == "proof_attacked" and "ownership proof attacked" in record.summary
    # even the right answer is no longer checked: only a person unlocks it
    owner = make_tracker(
        [user_event("8000", "inform", 1)],
        slots={"order_id": ORDER, "requested_slot": "owner_proof", "owner_proof": "8000"},
        sender_id="the-real-owner",
    )
    owner.events.append({"event": "slot", "name": "owner_proof", "value": "8000"})
    again = CollectingDispatcher()
    await action.run(again, owner, domain)
    assert again.messages[0]["response"] == "utter_owner_check_locked"
