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
from pathlib import Path
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.conversation import customer_language, first_customer_question, transcript
from common.masking import mask_card_codes
from common.settings import Settings
from handoff.records import HandoffRecord, Priority, Reason
from handoff.requests import HandoffRequestLog, Outcome

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
    **URGENT_CATEGORIES,
}
_ENTITY_SLOTS = ("order_id", "card_code", "phone", "email")
# the customer already tried to help themselves and something on our side failed
HIGH_PRIORITY_REASONS = {Reason.ACTION_FAILURE: Priority.HIGH, Reason.VERIFICATION_FAILED: Priority.HIGH}

_request_log: HandoffRequestLog | None = None


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


def _topic_intent(tracker: Tracker) -> str:
    """The last intent that says what the problem is (not yes/no/please-a-human)."""
    for event in reversed(tracker.events):
        if event.get("event") != "user":
            continue
        name = (event.get("parse_data") or {}).get("intent", {}).get("name")
        if name and name not in ("affirm", "deny", "ask_human", "nlu_fallback", "thanks", "greet"):
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
    tried = [
        e.get("name")
        for e in tracker.events
        if e.get("event") == "action" and str(e.get("name", "")).startswith("utter_")
    ]
    if tried:
        parts.append("bot tried: " + ", ".join(dict.fromkeys(str(t) for t in tried)))
    return "; ".join(parts)


class ActionHandoff(Action):
    """Tell the customer a person takes over, and record the request."""

    request_log: HandoffRequestLog | None = None

    def name(self) -> str:
        return "action_handoff"

    def reason(self, tracker: Tracker) -> Reason:
        latest = (tracker.latest_message or {}).get("intent", {}).get("name")
        if latest in URGENT_CATEGORIES:
            return Reason.URGENT_TOPIC
        return Reason.CUSTOMER_REQUEST

    def build_record(
        self, tracker: Tracker, reason: Reason | None = None, category: str | None = None
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
            summary=_summary(tracker, topic, reason),
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
    ) -> list[EventType]:
        """Record the request (once per conversation) and tell the customer; other actions call this too."""
        record = self.build_record(tracker, reason, category)
        log = self.request_log or default_request_log()
        outcome = await log.record(record)
        logger.info(
            "conversation %s: handoff %s (reason %s, priority %s)",
            tracker.sender_id,
            outcome.value,
            record.reason.value,
            record.priority.value,
        )
        dispatcher.utter_message(response=self.response_for(outcome, record))
        return [SlotSet("handoff_requested", True)]


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
