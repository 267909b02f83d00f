"""Order lookup: an order id, an ownership check, then the order.

Nothing about an order is said before the ownership check passes: an unknown
id and a known one look the same until then, except that an unknown id is
reported as "not found" (ids are not secret; what is in the order is).
Three failed checks hand the conversation to a person (verification_failed,
high priority), so does an unknown id given twice (not_found); a failing shop
backend gets an apology and a person (action_failure), never silence. The proof itself is not stored: the slot
keeps "verified".
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from datetime import datetime, timedelta, timezone
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.conversation import customer_language, response_text
from actions.handoff import ActionHandoff
from actions.knowledge import ActionAnswerFromKnowledge
from actions.proofs import ATTACKED_CATEGORY, ProofLimiter, client_address, default_limiter
from handoff.records import Reason
from shop.backend import Order, ShopBackend, ShopUnavailable, create

logger = logging.getLogger(__name__)

ORDER_ID = re.compile(r"DG\d{12}", re.IGNORECASE)
PHONE_TAIL = re.compile(r"^\d{4}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_FAILURES = 3
MAX_LOOKUP_MISSES = 2  # an unknown order id or card code twice -> a person
VERIFIED = "verified"
SHOP_TIME = timezone(timedelta(hours=8))  # the shop's business hours are Beijing time

_backend: ShopBackend | None = None


def default_backend() -> ShopBackend:
    """The process-wide shop backend, created on first use from the environment."""
    global _backend
    if _backend is None:
        _backend = create()
    return _backend


class FlowHandoff(Exception):
    """A self-service flow cannot go on: say ``response`` and hand off with ``reason``."""

    def __init__(
        self, response: str, reason: Reason, category: str | None = None, note: str | None = None
    ) -> None:
        super().__init__(reason.value)
        self.response = response
        self.reason = reason
        self.category = category
        self.note = note  # for the agent's summary


async def fail_over(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    handoff: ActionHandoff,
    response: str,
    reason: Reason,
    category: str | None = None,
    note: str | None = None,
) -> list[EventType]:
    """Stop the form, apologise and hand off."""
    dispatcher.utter_message(response=response)
    events = await handoff.hand_off(dispatcher, tracker, reason, category=category, note=note)
    return [*events, SlotSet("requested_slot", None), ActiveLoop(None)]


def count_miss(tracker: Tracker) -> dict[str, Any]:
    """One more unknown id; the second in a flow goes to a person."""
    misses = int(tracker.get_slot("lookup_misses") or 0) + 1
    if misses >= MAX_LOOKUP_MISSES:
        raise FlowHandoff("utter_lookup_not_found_twice", Reason.NOT_FOUND)
    return {"lookup_misses": misses}


class ShopUser(ABC):
    """What the self-service actions share: the shop, the handoff, and how a flow stops for a person."""

    backend: ShopBackend | None = None
    handoff: ActionHandoff | None = None

    @abstractmethod
    def name(self) -> str: ...

    def shop(self) -> ShopBackend:
        return self.backend or default_backend()

    async def stop_flow(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        response: str,
        reason: Reason,
        category: str | None = None,
        note: str | None = None,
    ) -> list[EventType]:
        """Apologise, hand off, end the form and forget the lookup (the next flow starts clean)."""
        handoff = self.handoff or ActionHandoff()
        events = await fail_over(dispatcher, tracker, handoff, response, reason, category, note)
        return [*events, *reset_lookup()]


class OwnedOrderForm(ShopUser, FormValidationAction):
    """A form that needs an order id and proof that the customer owns the order.

    Subclasses name the form; the order lookup and the refund form share the
    checks, the three-strikes rule, the limits across conversations
    (actions/proofs.py) and the failure handling.
    """

    limiter: ProofLimiter | None = None
    kb: ActionAnswerFromKnowledge | None = None

    async def answered_aside(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        """The slots of a knowledge-base answer to a question asked instead of the value ({} if none)."""
        events = await (self.kb or ActionAnswerFromKnowledge()).answer_aside(dispatcher, tracker, domain)
        return {str(e["name"]): e["value"] for e in events if e.get("event") == "slot"}

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        try:
            return list(await super().run(dispatcher, tracker, domain))
        except ShopUnavailable as error:
            logger.warning("conversation %s: %s failed: %s", tracker.sender_id, self.name(), error)
            return await self.stop_flow(dispatcher, tracker, "utter_shop_unavailable", Reason.ACTION_FAILURE)
        except FlowHandoff as stop:
            logger.info(
                "conversation %s: %s hands off (%s)", tracker.sender_id, self.name(), stop.reason.value
            )
            return await self.stop_flow(
                dispatcher, tracker, stop.response, stop.reason, stop.category, stop.note
            )

    async def validate_order_id(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        found = ORDER_ID.search(str(value or ""))
        if not found:
            aside = await self.answered_aside(dispatcher, tracker, domain)
            if not aside:
                dispatcher.utter_message(response="utter_order_id_invalid")
            return {"order_id": None, **aside}
        order_id = found.group(0).upper()
        if await self.shop().get_order(order_id) is None:
            slots = count_miss(tracker)
            dispatcher.utter_message(response="utter_order_not_found")
            return {"order_id": None, **slots}
        return {"order_id": order_id, "owner_verified": False}

    async def validate_owner_proof(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        proof = str(value or "").strip()
        if proof == VERIFIED and tracker.get_slot("owner_verified"):
            return {"owner_proof": VERIFIED}
        if not (PHONE_TAIL.match(proof) or EMAIL.match(proof)):
            aside = await self.answered_aside(dispatcher, tracker, domain)
            if not aside:
                dispatcher.utter_message(response="utter_owner_proof_invalid")
            return {"owner_proof": None, **aside}
        order_id = str(tracker.get_slot("order_id"))
        limiter = self.limiter or default_limiter()
        address = client_address(tracker)
        # an order (or an address) others have guessed at gets no more checks, only a person
        status = await limiter.status(order_id, address)
        if status.locked:
            raise FlowHandoff(
                "utter_owner_check_locked",
                Reason.VERIFICATION_FAILED,
                ATTACKED_CATEGORY,
                status.describe(order_id),
            )
        if await self.shop().verify_owner(order_id, proof):
            return {"owner_proof": VERIFIED, "owner_verified": True, "verification_failures": 0}
        status = await limiter.failed(order_id, address, tracker.sender_id)
        if status.locked:
            raise FlowHandoff(
                "utter_owner_check_locked",
                Reason.VERIFICATION_FAILED,
                ATTACKED_CATEGORY,
                status.describe(order_id),
            )
        failures = int(tracker.get_slot("verification_failures") or 0) + 1
        if failures >= MAX_FAILURES:
            logger.info("conversation %s: ownership check failed %d times", tracker.sender_id, failures)
            raise FlowHandoff("utter_owner_check_locked", Reason.VERIFICATION_FAILED)
        dispatcher.utter_message(response="utter_owner_check_failed")
        return {"owner_proof": None, "verification_failures": failures}


def reset_lookup() -> list[EventType]:
    """Forget the proof and the per-flow counters: the next flow proves ownership again."""
    return [
        SlotSet("owner_proof", None),
        SlotSet("owner_verified", None),
        SlotSet("verification_failures", 0),
        SlotSet("lookup_misses", 0),
        SlotSet("card_lookup", None),
    ]


class ValidateOrderLookupForm(OwnedOrderForm):
    def name(self) -> str:
        return "validate_order_lookup_form"


def local_time(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(SHOP_TIME).strftime("%Y-%m-%d %H:%M (UTC+8)")


def order_summary(order: Order, domain: dict[str, Any], language: Any) -> str:
    """The order as the customer sees it: status, items, paid time, codes masked."""
    if order.codes:
        codes = ", ".join(
            f"{code.masked} ({response_text(domain, f'utter_code_state_{code.status.value}', language)})"
            for code in order.codes
        )
        delivery = response_text(domain, "utter_order_codes", language).format(codes=codes)
    else:
        delivery = response_text(domain, "utter_order_no_codes", language)
    return response_text(domain, "utter_order_summary", language).format(
        order_id=order.order_id,
        status=response_text(domain, f"utter_order_state_{order.status.value}", language),
        items=", ".join(f"{item.title(language)} x{item.quantity}" for item in order.items),
        paid_at=local_time(order.paid_at),
        delivery=delivery,
    )


class ShopAction(ShopUser, Action):
    """The action after a self-service form: it talks to the shop, and a failing shop means a person."""

    async def shop_failed(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, error: ShopUnavailable
    ) -> list[EventType]:
        logger.warning("conversation %s: %s failed: %s", tracker.sender_id, self.name(), error)
        events = await self.stop_flow(dispatcher, tracker, "utter_shop_unavailable", Reason.ACTION_FAILURE)
        # the form is over already: keep the handoff's events, drop the loop's
        return [e for e in events if e.get("event") != "active_loop"]


class ActionShowOrder(ShopAction):
    def name(self) -> str:
        return "action_show_order"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        # the form also ends when it hands off; then there is nothing to show
        if not tracker.get_slot("owner_verified"):
            return []
        language = customer_language(tracker)
        try:
            order = await self.shop().get_order(str(tracker.get_slot("order_id")))
        except ShopUnavailable as error:
            return await self.shop_failed(dispatcher, tracker, error)
        if order is None:
            dispatcher.utter_message(response="utter_order_not_found")
        else:
            buttons = [
                {"title": response_text(domain, "utter_talk_to_person", language), "payload": "/ask_human"}
            ]
            dispatcher.utter_message(text=order_summary(order, domain, language), buttons=buttons)
        return reset_lookup()
