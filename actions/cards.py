"""Card-code recheck: the bot checks a code that "does not work" itself.

The customer gives a card code or an order id. A code is its own proof of
ownership (whoever holds it could redeem it); an order id needs the same
ownership check as the order lookup. Then, per code:

- pending or delivered: resend it to the registered contact (the shop makes
  this idempotent per 10 minutes and rate-limits it per customer);
- redeemed: say when, and ask whether it was the customer; "no" is an urgent
  handoff with category card_dispute;
- expired, frozen, invalid: explain and offer a person.

The tracker only ever holds the masked code (the channels mask it); the full
code comes from the sealed copy in the message metadata (common.masking).
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.conversation import customer_language, response_text
from actions.handoff import ActionHandoff
from actions.orders import (
    ORDER_ID,
    OwnedOrderForm,
    ShopAction,
    count_miss,
    local_time,
    reset_lookup,
)
from common.language import Language
from common.masking import (
    MASKED_CODE_RE,
    SEALED_CODES_KEY,
    CodeSealer,
    default_sealer,
    find_card_codes,
    mask,
)
from handoff.records import Reason
from shop.backend import CardCode, CodeStatus, ResendOutcome, ShopBackend, ShopUnavailable

logger = logging.getLogger(__name__)

FORM = "card_recheck_form"
REDEEMED = "redeemed"  # card_status while the customer is asked "was that you?"
OTHER = "other"
RESENDABLE = (CodeStatus.PENDING, CodeStatus.DELIVERED)


def unsealed_codes(tracker: Tracker, sealer: CodeSealer) -> dict[str, str]:
    """masked code -> full code, for every code the customer typed in this conversation."""
    found: dict[str, str] = {}
    for event in tracker.events:
        if event.get("event") != "user":
            continue
        for token in (event.get("metadata") or {}).get(SEALED_CODES_KEY) or []:
            code = sealer.unseal(str(token))
            if code:
                found[mask(code)] = code
    return found


def is_code_lookup(value: object) -> bool:
    return bool(MASKED_CODE_RE.search(str(value or "")))


class ValidateCardRecheckForm(OwnedOrderForm):
    """card_lookup is a (masked) card code or an order id; only an order id needs owner_proof."""

    sealer: CodeSealer | None = None

    def name(self) -> str:
        return "validate_card_recheck_form"

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
    ) -> list[str]:
        lookup = tracker.get_slot("card_lookup")
        if lookup and ORDER_ID.fullmatch(str(lookup)):
            return domain_slots
        return [slot for slot in domain_slots if slot != "owner_proof"]

    async def validate_card_lookup(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        text = str(value or "")
        masked = MASKED_CODE_RE.search(text)
        if masked:
            return await self._by_code(masked.group(0).upper(), dispatcher, tracker)
        if find_card_codes(text):
            # a full code here means the channel did not mask it; never work with it
            logger.error("conversation %s: unmasked card code reached the action server", tracker.sender_id)
            dispatcher.utter_message(response="utter_card_code_retype")
            return {"card_lookup": None}
        order = ORDER_ID.search(text)
        if order:
            slots = await self.validate_order_id(order.group(0), dispatcher, tracker, domain)
            if slots.get("order_id"):
                return {**slots, "card_lookup": slots["order_id"]}
            return {**slots, "card_lookup": None}
        aside = await self.answered_aside(dispatcher, tracker, domain)
        if not aside:
            dispatcher.utter_message(response="utter_card_lookup_invalid")
        return {"card_lookup": None, **aside}

    async def _by_code(
        self, masked: str, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        code = unsealed_codes(tracker, self.sealer or default_sealer()).get(masked)
        if code is None:
            # typed in masked form, or sealed too long ago: we need it typed again
            dispatcher.utter_message(response="utter_card_code_retype")
            return {"card_lookup": None}
        if await self.shop().find_card_code(code) is None:
            slots = count_miss(tracker)
            dispatcher.utter_message(response="utter_card_not_found")
            return {"card_lookup": None, **slots}
        return {"card_lookup": masked, "card_code": masked}


class ActionCardRecheck(ShopAction):
    """The form is complete: check each code and do what its state calls for."""

    sealer: CodeSealer | None = None

    def name(self) -> str:
        return "action_card_recheck"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        lookup = tracker.get_slot("card_lookup")
        # the form also ends when it hands off; then there is nothing to check
        if not lookup or (not is_code_lookup(lookup) and not tracker.get_slot("owner_verified")):
            # card_status is set on every path: the rules after this action depend on it
            return [SlotSet("card_status", OTHER)]
        shop = self.shop()
        try:
            codes = await self._codes(shop, tracker, str(lookup))
            status = await self._answer(shop, codes, dispatcher, tracker, domain)
        except ShopUnavailable as error:
            return [*(await self.shop_failed(dispatcher, tracker, error)), SlotSet("card_status", OTHER)]
        return [SlotSet("card_status", status), *reset_lookup()]

    async def _codes(self, shop: ShopBackend, tracker: Tracker, lookup: str) -> list[CardCode]:
        if is_code_lookup(lookup):
            full = unsealed_codes(tracker, self.sealer or default_sealer()).get(lookup)
            found = await shop.find_card_code(full) if full else None
            return [found] if found else []
        order = await shop.get_order(lookup)
        return list(order.codes) if order else []

    async def _answer(
        self,
        shop: ShopBackend,
        codes: list[CardCode],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
    ) -> str:
        """One message per code; returns "redeemed" when the customer must say whether it was them."""
        language = customer_language(tracker)
        if not codes:
            dispatcher.utter_message(response="utter_card_order_has_no_codes")
            return OTHER
        person = person_button(domain, language)
        asked = False
        for code in codes:
            if code.status in RESENDABLE:
                text, offer_person = await resend(shop, code, domain, language)
                dispatcher.utter_message(text=text, buttons=[person] if offer_person else [])
                logger.info(
                    "conversation %s: card %s %s, resend attempted",
                    tracker.sender_id,
                    code.masked,
                    code.status.value,
                )
            elif code.status is CodeStatus.REDEEMED and not asked:
                asked = True
                dispatcher.utter_message(
                    text=fill(domain, "utter_card_redeemed", language, code),
                    buttons=[
                        {
                            "title": response_text(domain, "utter_button_yes_it_was_me", language),
                            "payload": "/affirm",
                        },
                        {"title": response_text(domain, "utter_button_not_me", language), "payload": "/deny"},
                    ],
                )
            else:
                dispatcher.utter_message(
                    text=fill(domain, f"utter_card_{code.status.value}", language, code), buttons=[person]
                )
        return REDEEMED if asked else OTHER


def person_button(domain: dict[str, Any], language: Language) -> dict[str, str]:
    return {"title": response_text(domain, "utter_talk_to_person", language), "payload": "/ask_human"}


def fill(domain: dict[str, Any], response: str, language: Language, code: CardCode, **extra: Any) -> str:
    return response_text(domain, response, language).format(
        code=code.masked,
        product=code.product_in(language),
        delivered_at=local_time(code.delivered_at),
        redeemed_at=local_time(code.redeemed_at),
        expires_at=local_time(code.expires_at),
        **extra,
    )


async def resend(
    shop: ShopBackend, code: CardCode, domain: dict[str, Any], language: Language
) -> tuple[str, bool]:
    """Resend one code; the text for the customer and whether to offer a person."""
    result = await shop.resend_card_code(code.code)
    state = "pending" if code.status is CodeStatus.PENDING else "delivered"
    if result.outcome is ResendOutcome.SENT:
        return fill(
            domain,
            f"utter_card_{state}_resent",
            language,
            code,
            reference=result.reference,
            sent_to=result.sent_to,
        ), False
    if result.outcome is ResendOutcome.ALREADY_SENT:
        return fill(
            domain,
            "utter_card_already_resent",
            language,
            code,
            reference=result.reference,
            sent_to=result.sent_to,
        ), False
    if result.outcome is ResendOutcome.RATE_LIMITED:
        return fill(domain, "utter_card_resend_limited", language, code), True
    # the code changed state between the check and the resend
    return fill(domain, "utter_card_resend_failed", language, code), True


class ActionCardDispute(ActionHandoff):
    """The customer says a redeemed code was not redeemed by them: urgent, category card_dispute."""

    def name(self) -> str:
        return "action_card_dispute"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        logger.info("conversation %s: customer disputes a redeemed card code", tracker.sender_id)
        events = await self.hand_off(dispatcher, tracker, Reason.URGENT_TOPIC, category="card_dispute")
        return [*events, SlotSet("card_status", None)]
