"""actions.cards: the card-code recheck form, the answer per code state, the dispute handoff.

A real SQLite shop seeded in a temporary directory (no network). Codes reach the
actions as the channels leave them: masked in the text, sealed in the metadata.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select
from sqlalchemy.orm import Session

from actions.cards import ActionCardDispute, ActionCardRecheck, ValidateCardRecheckForm, unsealed_codes
from actions.handoff import ActionHandoff
from common.masking import SEALED_CODES_KEY, CodeSealer, mask
from handoff.records import Priority, Reason
from shop.backend import ShopBackend
from shop.schema import OutboxRow
from shop.sql import SqlShopBackend
from tests.conftest import make_tracker, user_event
from tests.unit.actions.conftest import SilentShop
from tests.unit.actions.test_handoff import FakeRequestLog

# seeded codes: one per state (shop/seed.py)
DELIVERED = "K7QM-2XPA-9FTR-4WZD"  # order DG202611200001, Li Wei, phone ends 8000
REDEEMED = "H3LN-8VQC-5RTY-2KMB"  # order DG202611200002
PENDING = "P4XJ-7NWE-3GHU-6CZA"
EXPIRED = "X9TB-4MRV-8QPL-3DEF"
FROZEN = "N2WS-6KJH-7YUP-5RTG"
INVALID = "G8CV-3BNM-4LKJ-9HQW"
ALL_FULL = [DELIVERED, REDEEMED, PENDING, EXPIRED, FROZEN, INVALID]


def said(code: str, sealer: CodeSealer, intent: str = "card_code_problem", ts: float = 1.0) -> dict[str, Any]:
    """The user event a channel produces for a message carrying ``code``."""
    return user_event(
        f"my code {mask(code)} does not work", intent, ts, **{SEALED_CODES_KEY: [sealer.seal(code)]}
    )


def wire(action: Any, backend: ShopBackend, sealer: CodeSealer) -> FakeRequestLog:
    action.backend = backend
    action.sealer = sealer
    log = FakeRequestLog()
    action.handoff = ActionHandoff()
    action.handoff.request_log = log
    return log


def texts(dispatcher: CollectingDispatcher) -> str:
    return json.dumps(dispatcher.messages, ensure_ascii=False)


def assert_no_full_code(dispatcher: CollectingDispatcher, events: list[Any] | None = None) -> None:
    dumped = texts(dispatcher) + json.dumps(events or [], default=str)
    for code in ALL_FULL:
        assert code not in dumped and code[5:9] not in dumped, f"{code} leaked"


def test_sealed_codes_are_read_back_and_forged_ones_ignored(sealer: CodeSealer) -> None:
    forged = user_event(
        "x", "inform", 2, **{SEALED_CODES_KEY: [CodeSealer("other key").seal(REDEEMED), "junk"]}
    )
    tracker = make_tracker([said(DELIVERED, sealer), forged])
    assert unsealed_codes(tracker, sealer) == {mask(DELIVERED): DELIVERED}


async def test_a_known_code_fills_the_lookup_masked(
    shop: ShopBackend, sealer: CodeSealer, domain: Any
) -> None:
    action = ValidateCardRecheckForm()
    wire(action, shop, sealer)
    dispatcher = CollectingDispatcher()
    tracker = make_tracker([said(DELIVERED, sealer)])
    slots = await action.validate_card_lookup(mask(DELIVERED), dispatcher, tracker, domain)
    assert slots == {"card_lookup": mask(DELIVERED), "card_code": mask(DELIVERED)}
    assert dispatcher.messages == []
    # a code is its own proof: no ownership question
    assert await action.required_slots(
        ["card_lookup", "owner_proof"], dispatcher, make_tracker(slots=slots), domain
    ) == ["card_lookup"]


async def test_an_order_id_needs_the_ownership_check(
    shop: ShopBackend, sealer: CodeSealer, domain: Any
) -> None:
    action = ValidateCardRecheckForm()
    wire(action, shop, sealer)
    dispatcher = CollectingDispatcher()
    slots = await action.validate_card_lookup("order DG202611200002", dispatcher, make_tracker(), domain)
    assert slots == {"order_id": "DG202611200002", "owner_verified": False, "card_lookup": "DG202611200002"}
    required = await action.required_slots(
        ["card_lookup", "owner_proof"], dispatcher, make_tracker(slots=slots), domain
    )
    assert required == ["card_lookup", "owner_proof"]


@pytest.mark.parametrize(
    ("value", "response"),
    [
        ("hello there", "utter_card_lookup_invalid"),
        # typed masked (copied from the chat history): we need the real code once more
        ("K7QM-****-****-4WZD", "utter_card_code_retype"),
    ],
)
async def test_what_is_not_a_usable_code_is_asked_again(
    shop: ShopBackend, sealer: CodeSealer, domain: Any, value: str, response: str
) -> None:
    action = ValidateCardRecheckForm()
    wire(action, shop, sealer)
    dispatcher = CollectingDispatcher()
    assert await action.validate_card_lookup(value, dispatcher, make_tracker(), domain) == {
        "card_lookup": None
    }
    assert dispatcher.messages[-1]["response"] == response


async def test_an_unknown_code_twice_reaches_a_person(
    shop: ShopBackend, sealer: CodeSealer, domain: Any
) -> None:
    unknown = "ZZZZ-1111-2222-3333"
    action = ValidateCardRecheckForm()
    log = wire(action, shop, sealer)
    dispatcher = CollectingDispatcher()
    first = await action.validate_card_lookup(
        mask(unknown), dispatcher, make_tracker([said(unknown, sealer)]), domain
    )
    assert first == {"card_lookup": None, "lookup_misses": 1}
    assert dispatcher.messages[-1]["response"] == "utter_card_not_found"

    tracker = make_tracker(
        [said(unknown, sealer)],
        slots={"language": "zh", "lookup_misses": 1, "requested_slot": "card_lookup"},
    )
    tracker.events.append({"event": "slot", "name": "card_lookup", "value": mask(unknown)})
    tracker.slots["card_lookup"] = mask(unknown)
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, tracker, domain)
    assert [m["response"] for m in dispatcher.messages] == ["utter_lookup_not_found_twice", "utter_handoff"]
    assert ActiveLoop(None) in events
    assert log.records[0].reason is Reason.NOT_FOUND


async def recheck(
    code: str, shop: ShopBackend, sealer: CodeSealer, domain: Any, language: str = "en"
) -> tuple[CollectingDispatcher, list[Any], FakeRequestLog]:
    action = ActionCardRecheck()
    log = wire(action, shop, sealer)
    dispatcher = CollectingDispatcher()
    tracker = make_tracker([said(code, sealer)], slots={"language": language, "card_lookup": mask(code)})
    events = await action.run(dispatcher, tracker, domain)
    assert_no_full_code(dispatcher, events)
    return dispatcher, events, log


def outbox(shop: SqlShopBackend) -> list[OutboxRow]:
    with Session(shop.engine) as session:
        return list(session.scalars(select(OutboxRow)))


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_a_delivered_code_is_resent_once_per_window(
    shop: SqlShopBackend, sealer: CodeSealer, domain: Any, language: str
) -> None:
    dispatcher, events, _ = await recheck(DELIVERED, shop, sealer, domain, language)
    (message,) = dispatcher.messages
    assert mask(DELIVERED) in message["text"] and "l***@example.com" in message["text"]
    assert ("重新发送" if language == "zh" else "sent it again") in message["text"]
    assert SlotSet("card_status", "other") in events and SlotSet("card_lookup", None) in events
    # the full code goes to the registered contact, through the outbox, once
    (sent,) = outbox(shop)
    assert sent.recipient == "liwei@example.com" and DELIVERED in sent.body

    again, _, _ = await recheck(DELIVERED, shop, sealer, domain, language)
    assert ("已经重新发送" if language == "zh" else "already resent") in again.messages[0]["text"]
    assert len(outbox(shop)) == 1, "a second resend within 10 minutes sends nothing"


async def test_a_pending_code_is_sent(shop: SqlShopBackend, sealer: CodeSealer, domain: Any) -> None:
    dispatcher, _, _ = await recheck(PENDING, shop, sealer, domain)
    assert "had not reached you yet" in dispatcher.messages[0]["text"]
    assert len(outbox(shop)) == 1


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_a_redeemed_code_asks_whether_it_was_the_customer(
    shop: ShopBackend, sealer: CodeSealer, domain: Any, language: str
) -> None:
    dispatcher, events, _ = await recheck(REDEEMED, shop, sealer, domain, language)
    (message,) = dispatcher.messages
    assert ("被兑换" if language == "zh" else "was redeemed on") in message["text"] and "(UTC+8)" in message[
        "text"
    ]
    assert [b["payload"] for b in message["buttons"]] == ["/affirm", "/deny"]
    assert SlotSet("card_status", "redeemed") in events


@pytest.mark.parametrize(
    ("code", "words"), [(EXPIRED, "expired on"), (FROZEN, "frozen"), (INVALID, "voided")]
)
async def test_dead_codes_are_explained_with_a_person_offered(
    shop: ShopBackend, sealer: CodeSealer, domain: Any, code: str, words: str
) -> None:
    dispatcher, _, log = await recheck(code, shop, sealer, domain)
    (message,) = dispatcher.messages
    assert words in message["text"] and [b["payload"] for b in message["buttons"]] == ["/ask_human"]
    assert log.records == [], "offered, not forced"


async def test_by_order_id_only_after_the_ownership_check(
    shop: ShopBackend, sealer: CodeSealer, domain: Any
) -> None:
    action = ActionCardRecheck()
    wire(action, shop, sealer)
    dispatcher = CollectingDispatcher()
    unverified = make_tracker(slots={"card_lookup": "DG202611200002", "order_id": "DG202611200002"})
    assert await action.run(dispatcher, unverified, domain) == [SlotSet("card_status", "other")]
    assert dispatcher.messages == []
    verified = make_tracker(
        slots={"card_lookup": "DG202611200002", "order_id": "DG202611200002", "owner_verified": True}
    )
    events = await action.run(dispatcher, verified, domain)
    assert mask(REDEEMED) in dispatcher.messages[0]["text"]
    assert SlotSet("card_status", "redeemed") in events and SlotSet("owner_verified", None) in events


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_a_silent_shop_gets_an_apology_and_a_person(
    sealer: CodeSealer, domain: Any, language: str
) -> None:
    dispatcher, _, log = await recheck(DELIVERED, SilentShop(), sealer, domain, language)
    assert [m["response"] for m in dispatcher.messages] == ["utter_shop_unavailable", "utter_handoff"]
    assert log.records[0].reason is Reason.ACTION_FAILURE and log.records[0].priority is Priority.HIGH


async def test_not_me_is_an_urgent_card_dispute(sealer: CodeSealer, domain: Any) -> None:
    action = ActionCardDispute()
    log = FakeRequestLog()
    action.request_log = log  # type: ignore[assignment]
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(
        [said(REDEEMED, sealer), user_event("/deny", "deny", 5)],
        slots={"language": "zh", "card_code": mask(REDEEMED), "card_status": "redeemed"},
    )
    events = await action.run(dispatcher, tracker, domain)
    (record,) = log.records
    assert record.category == "card_dispute" and record.priority is Priority.URGENT
    assert record.reason is Reason.URGENT_TOPIC
    assert dispatcher.messages[0]["response"] == "utter_handoff_urgent"
    assert REDEEMED not in record.to_json() and mask(REDEEMED) in record.to_json()
    assert SlotSet("card_status", None) in events
