"""Refunds: the status of a refund, or a new request, for one of the customer's orders.

The refund form asks for the order id and the same ownership proof as the
order lookup. The shop decides (shop.sql.refund_policy): a request inside the
policy becomes a ticket with a reference; asking again returns the same
ticket; outside the policy the customer hears why and is offered a person.
Questions about the policy itself ("how long does a refund take") stay with
the knowledge base (intent ``refund``); this flow is intent ``refund_request``.
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.conversation import customer_language, response_text
from actions.orders import OwnedOrderForm, ShopAction, reset_lookup
from common.masking import mask_card_codes
from shop.backend import RefundDecision, ShopUnavailable

logger = logging.getLogger(__name__)

# policy codes for which a person can still help (an exception, a goodwill refund)
OFFER_PERSON = {"redeemed", "topup_completed", "too_late", "not_refundable"}


class ValidateRefundForm(OwnedOrderForm):
    def name(self) -> str:
        return "validate_refund_form"


def refund_reason(tracker: Tracker) -> str:
    """What the customer said when asking for the refund, for the ticket (codes masked)."""
    for event in reversed(tracker.events):
        if event.get("event") != "user":
            continue
        if (event.get("parse_data") or {}).get("intent", {}).get("name") == "refund_request":
            return mask_card_codes(str(event.get("text") or ""))[:500]
    return "refund requested in chat"


class ActionRefund(ShopAction):
    def name(self) -> str:
        return "action_refund"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        # the form also ends when it hands off; then there is nothing to decide
        if not tracker.get_slot("owner_verified"):
            return []
        order_id = str(tracker.get_slot("order_id"))
        try:
            decision = await self.shop().request_refund(order_id, refund_reason(tracker))
        except ShopUnavailable as error:
            return await self.shop_failed(dispatcher, tracker, error)
        logger.info(
            "conversation %s: refund for %s: %s (%s)",
            tracker.sender_id,
            order_id,
            "accepted" if decision.accepted else "declined",
            decision.reason,
        )
        self.tell(dispatcher, domain, tracker, order_id, decision)
        return reset_lookup()

    def tell(
        self,
        dispatcher: CollectingDispatcher,
        domain: dict[str, Any],
        tracker: Tracker,
        order_id: str,
        decision: RefundDecision,
    ) -> None:
        language = customer_language(tracker)
        if decision.accepted and decision.reason == "already_requested":
            response = "utter_refund_in_progress"
        elif decision.accepted:
            response = "utter_refund_created"
        else:
            response = f"utter_refund_declined_{decision.reason}"
            if response not in domain.get("responses", {}):
                response = "utter_refund_declined_not_refundable"
        text = response_text(domain, response, language).format(
            order_id=order_id, reference=decision.reference
        )
        buttons = []
        if not decision.accepted and (decision.reason in OFFER_PERSON or response.endswith("not_refundable")):
            buttons = [
                {"title": response_text(domain, "utter_talk_to_person", language), "payload": "/ask_human"}
            ]
        dispatcher.utter_message(text=text, buttons=buttons)
