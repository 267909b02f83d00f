"""Handing the conversation to a person.

``action_handoff`` runs on an explicit request, on urgent topics and when a
customer accepts the offer of a person; ``action_default_fallback`` (Rasa's
default, overridden) runs when the dialogue policies are unsure what to do;
actions/knowledge.py hands off through ``hand_off`` when the knowledge base
has no answer. Both build the
handoff record of the contract in ARCHITECTURE.md and append it to the request
log; the queue, positions and the agent console come with the handoff issue.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from redis.exceptions import RedisError

from actions.conversation import (
    customer_language,
    first_customer_question,
    response_text,
    transcript,
    whole_conversation,
)
from actions.metrics import handoff_requested
from common.masking import mask_card_codes
from common.settings import Settings
from common.tracker_keys import window_start
from handoff.queue import HandoffQueue, State
from handoff.records import HandoffRecord, Priority, Reason
from handoff.requests import HandoffRequestLog, Outcome
from handoff.tickets import TicketBook

logger = logging.getLogger(__name__)

URGENT_CATEGORIES = {
    "account_security": "account_security",
    "payment_dispute": "payment_dispute",
}
# categories that are urgent whatever intent led there (card_dispute: a code redeemed by someone else)
URGENT_CATEGORY_NAMES = {"account_security", "payment_dispute", "card_dispute", "fraud"}
# intent -> category for the agent's routing
CATEGORIES = {
    "order_status": "order",
    "cancel_order": "order",
    "card_code_problem": "card_code",
    "resend_code": "card_code",
    "refund": "refund",
    "refund_request": "refund",
    "payment_failed": "payment",
    "complaint": "complaint",
    "change_contact": "account",
    "account_help": "account",
    **URGENT_CATEGORIES,
}
# a message with words in it (not just an order id or digits answering a form)
_WORDS = re.compile(r"[A-Za-z]{3,}|[\u4e00-\u9fff]")
_ENTITY_SLOTS = ("order_id", "card_code", "phone", "email")
# the customer already tried to help themselves and something on our side failed
HIGH_PRIORITY_REASONS = {Reason.ACTION_FAILURE: Priority.HIGH, Reason.VERIFICATION_FAILED: Priority.HIGH}

_request_log: HandoffRequestLog | None = None
_queue: HandoffQueue | None = None
_tickets: TicketBook | None = None


def default_request_log() -> HandoffRequestLog:
    """The process-wide log, created on first use (no import-time connections)."""
    global _request_log
    if _request_log is None:
        settings = Settings.from_env()
        _request_log = HandoffRequestLog.create(
            settings.redis_url,
            settings.key_prefix,
            Path(settings.var_dir) / "spool" / "handoff-requests.jsonl",
        )
    return _request_log


def default_queue() -> HandoffQueue:
    """The process-wide queue client, created on first use."""
    global _queue
    if _queue is None:
        settings = Settings.from_env()
        _queue = HandoffQueue.create(settings.redis_url, settings.key_prefix)
    return _queue


def default_tickets() -> TicketBook:
    global _tickets
    if _tickets is None:
        _tickets = TicketBook(default_queue().client, Settings.from_env().key_prefix)
    return _tickets


# intents that say nothing about the problem (an empty message or a photo included)
NOT_A_TOPIC = frozenset(
    {"affirm", "deny", "ask_human", "nlu_fallback", "thanks", "greet", "inform"}
    | {"empty_message", "message_too_long"}
)


def _topic_intent(tracker: Tracker) -> str:
    """The last intent that says what the problem is (not yes/no/please-a-human)."""
    for event in reversed(tracker.events):
        if event.get("event") != "user":
            continue
        name = (event.get("parse_data") or {}).get("intent", {}).get("name")
        # answers to a form's questions (an order id, "8000") say nothing about the topic
        if not _WORDS.search(str(event.get("text") or "")):
            continue
        if name and name not in NOT_A_TOPIC:
            return str(name)
    return "none"


def _summary(tracker: Tracker, topic: str, reason: Reason) -> str:
    parts = [f"reason: {reason.value}", f"topic: {topic}"]
    question = first_customer_question(tracker)
    if question:
        parts.append(f"first question: {question[:200]}")
    known = {slot: tracker.get_slot(slot) for slot in _ENTITY_SLOTS if tracker.get_slot(slot)}
    if known:
        parts.append("given: " + ", ".join(f"{k}={mask_card_codes(str(v))}" for k, v in known.items()))
    tried = bot_attempts(tracker.events)
    if tried:
        parts.append("bot tried: " + ", ".join(tried))
    return "; ".join(parts)


# bookkeeping, not attempts to help
_NOT_ATTEMPTS = frozenset(
    {"action_listen", "action_session_start", "action_restart", "action_handoff", "action_deactivate_loop"}
    | {"action_extract_slots", "action_unlikely_intent", "action_back"}
)


def bot_attempts(events: list[dict[str, Any]]) -> list[str]:
    """What the bot did before the handoff, in order, once each: responses, forms, self-service
    actions, and which knowledge article it answered with (the agent should not repeat it)."""
    tried: list[str] = []
    for event in events:
        name = str(event.get("name") or "")
        if event.get("event") == "action" and name and name not in _NOT_ATTEMPTS:
            tried.append(name)
        elif event.get("event") == "slot" and name == "kb_article" and event.get("value"):
            tried.append(f"kb article {event['value']}")
    return list(dict.fromkeys(tried))


class ActionHandoff(Action):
    """Tell the customer a person takes over, and record the request."""

    request_log: HandoffRequestLog | None = None
    queue: HandoffQueue | None = None

    def name(self) -> str:
        return "action_handoff"

    def reason(self, tracker: Tracker) -> Reason:
        latest = (tracker.latest_message or {}).get("intent", {}).get("name")
        if latest in URGENT_CATEGORIES:
            return Reason.URGENT_TOPIC
        return Reason.CUSTOMER_REQUEST

    def build_record(
        self,
        tracker: Tracker,
        reason: Reason | None = None,
        category: str | None = None,
        note: str | None = None,
    ) -> HandoffRecord:
        reason = reason or self.reason(tracker)
        topic = _topic_intent(tracker)
        category = category or CATEGORIES.get(topic, "general")
        urgent = (
            reason is Reason.URGENT_TOPIC or topic in URGENT_CATEGORIES or category in URGENT_CATEGORY_NAMES
        )

        return HandoffRecord.build(
            conversation_id=tracker.sender_id,
            channel=tracker.get_latest_input_channel() or "unknown",
            language=customer_language(tracker),
            reason=reason,
            priority=Priority.URGENT if urgent else HIGH_PRIORITY_REASONS.get(reason, Priority.NORMAL),
            category=category,
            # a note first: what the agent must know before reading on (e.g. an attacked proof)
            summary=(f"{note}; " if note else "") + _summary(tracker, topic, reason),
            transcript=transcript(tracker),
            entities={
                slot: mask_card_codes(str(tracker.get_slot(slot)))
                for slot in _ENTITY_SLOTS
                if tracker.get_slot(slot)
            },
        )

    def response_for(self, outcome: Outcome, record: HandoffRecord) -> str:
        if outcome is Outcome.SPOOLED:
            return "utter_handoff_failed"
        if outcome is Outcome.ALREADY_QUEUED:
            return "utter_handoff_pending"
        if record.priority is Priority.URGENT:
            return "utter_handoff_urgent"
        return "utter_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        return await self.hand_off(dispatcher, tracker)

    async def hand_off(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        reason: Reason | None = None,
        category: str | None = None,
        note: str | None = None,
    ) -> list[EventType]:
        """Record the request (once per conversation) and tell the customer; other actions call this too."""
        log = self.request_log or default_request_log()
        whole = tracker
        if window_start(tracker.events):  # Rasa sent only the latest events
            whole = await whole_conversation(tracker, log.client, log.prefix)
        record = self.build_record(whole, reason, category, note)
        outcome = await log.record(record)
        logger.info(
            "conversation %s: handoff %s (reason %s, priority %s)",
            tracker.sender_id,
            outcome.value,
            record.reason.value,
            record.priority.value,
        )
        handoff_requested(record.reason.value, record.priority.value, outcome.value)
        response = self.response_for(outcome, record)
        if response == "utter_handoff" and not await self._anyone_on_duty(tracker):
            # the entrance never closes: stay queued, or leave a message for later
            response = "utter_handoff_no_agent"
        dispatcher.utter_message(response=response)
        return [SlotSet("handoff_requested", True)]

    async def _anyone_on_duty(self, tracker: Tracker) -> bool:
        try:
            return bool(await (self.queue or default_queue()).online_agents())
        except (RedisError, OSError) as error:
            logger.warning("conversation %s: cannot tell who is online: %s", tracker.sender_id, error)
            return True  # say the usual thing; the queue still has the request


class ActionDefaultFallback(ActionHandoff):
    """Rasa's core fallback, overridden: when the policies cannot tell what to do next, a person."""

    def name(self) -> str:
        return "action_default_fallback"

    def reason(self, tracker: Tracker) -> Reason:
        return Reason.SECOND_FALLBACK

    def response_for(self, outcome: Outcome, record: HandoffRecord) -> str:
        if outcome is Outcome.QUEUED:
            return "utter_default"
        return super().response_for(outcome, record)


class ActionCancelHandoff(Action):
    """The customer leaves the queue and goes on with the bot."""

    queue: HandoffQueue | None = None

    def name(self) -> str:
        return "action_cancel_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        queue = self.queue or default_queue()
        conversation = await queue.get(tracker.sender_id)
        if conversation is None or conversation.state is not State.WAITING:
            # also clear a request the service has not admitted yet
            cleared = await queue.client.delete(queue.gate_key(tracker.sender_id))
            dispatcher.utter_message(
                response="utter_handoff_cancelled" if cleared else "utter_handoff_not_queued"
            )
            return [SlotSet("handoff_requested", False)]
        if not await queue.end(tracker.sender_id, State.CANCELLED, only_if=State.WAITING):
            # an agent claimed it a moment ago; the agent now decides
            dispatcher.utter_message(response="utter_handoff_pending")
            return []
        logger.info("conversation %s: customer left the queue", tracker.sender_id)
        dispatcher.utter_message(response="utter_handoff_cancelled")
        return [SlotSet("handoff_requested", False)]


class ActionRate(Action):
    """Store the 1-5 rating the customer gave after an agent closed the conversation."""

    queue: HandoffQueue | None = None

    def name(self) -> str:
        return "action_rate"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        raw = next(tracker.get_latest_entity_values("rating"), None) or tracker.get_slot("rating")
        try:
            rating = int(str(raw))
            stored = await (self.queue or default_queue()).rate(tracker.sender_id, rating)
        except (TypeError, ValueError):
            stored = False
        logger.info(
            "conversation %s: rating %s %s", tracker.sender_id, raw, "stored" if stored else "refused"
        )
        dispatcher.utter_message(response="utter_rating_thanks" if stored else "utter_rating_not_expected")
        return [SlotSet("rating", None)]


CONTACT = re.compile(r"^(?:[^@\s]+@[^@\s]+\.[^@\s]+|\+?[\d\s-]{7,20})$")


class ValidateLeaveMessageForm(FormValidationAction):
    def name(self) -> str:
        return "validate_leave_message_form"

    async def validate_ticket_message(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        text = mask_card_codes(str(value or "").strip())
        return {"ticket_message": text[:4000] or None}

    async def validate_ticket_contact(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        contact = str(value or "").strip()
        if not CONTACT.match(contact):
            dispatcher.utter_message(response="utter_ticket_contact_invalid")
            return {"ticket_contact": None}
        return {"ticket_contact": contact}


class ActionLeaveMessage(Action):
    """The message becomes a ticket in the agents' console."""

    tickets: TicketBook | None = None

    def name(self) -> str:
        return "action_leave_message"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        contact = str(tracker.get_slot("ticket_contact") or "")
        message = str(tracker.get_slot("ticket_message") or "")
        if not contact or not message:
            return []
        ticket = await (self.tickets or default_tickets()).create(
            tracker.sender_id, customer_language(tracker), contact, message
        )
        text = response_text(domain, "utter_ticket_created", customer_language(tracker)).format(
            ticket_id=ticket.ticket_id, contact=contact
        )
        dispatcher.utter_message(text=text)
        return [SlotSet("ticket_message", None), SlotSet("ticket_contact", None)]
