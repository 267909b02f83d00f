"""actions.refunds: a refund request or its status, after the ownership check.

A real SQLite shop seeded in a temporary directory (no network).
"""

from __future__ import annotations

from typing import Any

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import ActionHandoff
from actions.refunds import ActionRefund
from handoff.records import Reason
from shop.backend import ShopBackend
from tests.conftest import make_tracker, user_event
from tests.unit.actions.conftest import SilentShop
from tests.unit.actions.test_handoff import FakeRequestLog


async def refund(
    order_id: str, shop: ShopBackend, domain: Any, language: str = "en", verified: bool = True
) -> tuple[CollectingDispatcher, list[Any], FakeRequestLog]:
    action = ActionRefund()
    action.backend = shop
    log = FakeRequestLog()
    action.handoff = ActionHandoff()
    action.handoff.request_log = log  # type: ignore[assignment]
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(
        [user_event("I bought the wrong card, refund K7QM-****-****-4WZD", "refund_request", 1)],
        slots={"language": language, "order_id": order_id, "owner_verified": verified or None},
    )
    events = await action.run(dispatcher, tracker, domain)
    return dispatcher, events, log


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_inside_the_policy_a_ticket_is_created_once(
    shop: ShopBackend, domain: Any, language: str
) -> None:
    dispatcher, _, _ = await refund("DG202611200001", shop, domain, language)
    text = dispatcher.messages[0]["text"]
    reference = next(
        word.strip("，。;,.") for word in text.replace("，", " ").split() if word.startswith("RF")
    )
    assert ("参考号" if language == "zh" else "your reference is") in text
    again, _, _ = await refund("DG202611200001", shop, domain, language)
    assert reference in again.messages[0]["text"]
    assert ("处理中" if language == "zh" else "already in progress") in again.messages[0]["text"]


@pytest.mark.parametrize(
    ("order_id", "words", "person"),
    [
        ("DG202611200002", "has been redeemed", True),  # redeemed code
        ("DG202610010005", "7-day refund window", True),  # 50 days old
        ("DG202611230010", "completed top-up", True),
        ("DG202611190008", "already been refunded", False),
        ("DG202611190009", "was cancelled", False),
    ],
)
async def test_outside_the_policy_the_customer_hears_why(
    shop: ShopBackend, domain: Any, order_id: str, words: str, person: bool
) -> None:
    dispatcher, _, log = await refund(order_id, shop, domain)
    (message,) = dispatcher.messages
    assert words in message["text"]
    assert bool(message["buttons"]) is person
    assert log.records == []


async def test_nothing_happens_without_the_ownership_check(shop: ShopBackend, domain: Any) -> None:
    dispatcher, events, _ = await refund("DG202611200001", shop, domain, verified=False)
    assert events == [] and dispatcher.messages == []


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_a_silent_shop_gets_an_apology_and_a_person(domain: Any, language: str) -> None:
    dispatcher, _, log = await refund("DG202611200001", SilentShop(), domain, language)
    assert [m["response"] for m in dispatcher.messages] == ["utter_shop_unavailable", "utter_handoff"]
    assert log.records[0].reason is Reason.ACTION_FAILURE
