"""Answering from the knowledge base, in three bands of calibrated confidence.

``action_kb_answer`` runs for every informational intent and for messages the
NLU could not place (nlu_fallback). It searches the customer's language only:

- a confident FAQ intent (say refund) is answered from the top article when
  that article is in the intent's category and its confidence is at least
  halfway between the suggest and the answer threshold (two independent
  signals agree); otherwise with the curated domain response for the intent,
  never with an article from another topic;
- with no intent (nlu_fallback): confidence >= the answer threshold -> the
  best section, with the article title as its source (and a one-step "Talk to
  a person" button); >= the suggest threshold -> "did you mean" buttons with up
  to three titles; below it -> we have no answer: say so and hand off (reason
  low_confidence).
  A message with no word the knowledge base knows at all is gibberish rather
  than a question: ask to rephrase, and hand off on the second in a row.

When the index cannot be used (missing, broken), the customer still gets the
curated response for their intent or a person (reason action_failure), never
silence.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from redis.exceptions import RedisError

from actions.conversation import customer_language, response_text
from actions.handoff import ActionHandoff, default_queue
from actions.metrics import kb_outcome
from common.language import Language
from common.masking import mask_card_codes
from handoff.analytics import Analytics
from handoff.records import Reason
from knowledge.config import KnowledgeConfig
from knowledge.retriever import Hit, ReloadingRetriever, Retriever

logger = logging.getLogger(__name__)

# informational intents -> the article categories that can answer them
INTENT_CATEGORIES: dict[str, frozenset[str]] = {
    "recharge_howto": frozenset({"recharge"}),
    "redeem_gift_card": frozenset({"card-codes"}),
    "card_code_problem": frozenset({"card-codes", "recharge"}),
    "resend_code": frozenset({"card-codes"}),
    "delivery_time": frozenset({"card-codes", "recharge", "orders"}),
    "order_status": frozenset({"orders"}),
    "cancel_order": frozenset({"orders"}),
    "refund": frozenset({"refunds"}),
    "payment_methods": frozenset({"payments"}),
    "payment_failed": frozenset({"payments", "recharge"}),
    "business_hours": frozenset({"support"}),
    "change_contact": frozenset({"account"}),
    "invoice": frozenset({"invoices"}),
    "membership": frozenset({"membership"}),
    "privacy_data": frozenset({"privacy"}),
}
MAX_SUGGESTIONS = 3
MAX_QUERY_CHARS = 500

_retriever: ReloadingRetriever | None = None


def default_retriever() -> ReloadingRetriever:
    """The process-wide retriever, created on first use; it re-reads a rebuilt index by itself."""
    global _retriever
    if _retriever is None:
        _retriever = ReloadingRetriever(KnowledgeConfig.from_env())
    return _retriever


def chat_text(markdown: str) -> str:
    """An article section as a chat bubble shows it: no Markdown emphasis, no blank lines.

    Rasa's socket.io channel splits a message at every blank line, which would
    scatter one answer over several bubbles and detach its source line.
    """
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", markdown)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    return re.sub(r"\n\s*\n+", "\n", text).strip()


def _misses_in_a_row(tracker: Tracker) -> int:
    value = tracker.get_slot("kb_misses")
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


# article category -> the self-service flow offered under its answers
SELF_SERVICE = {
    "refunds": ("utter_button_request_refund", "/refund_request"),
    "card-codes": ("utter_button_check_card_code", "/card_code_problem"),
}


class ActionAnswerFromKnowledge(Action):
    retriever: ReloadingRetriever | None = None
    handoff: ActionHandoff | None = None
    analytics: Analytics | None = None  # None: the stack's Redis (handoff/analytics.py)

    def name(self) -> str:
        return "action_kb_answer"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        events = await self.respond(dispatcher, tracker, domain)
        if tracker.active_loop_name is None and not any(
            e.get("event") in ("followup", "pause") for e in events
        ):
            # the answer (or the notice) ends the bot's turn. Saying so spares Rasa a second run of
            # every policy just to predict action_listen. Inside a form the form must ask again.
            events.append(FollowupAction("action_listen"))
        return events

    async def respond(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        language = customer_language(tracker)
        latest = tracker.latest_message or {}
        intent = str((latest.get("intent") or {}).get("name") or "")
        text = str(latest.get("text") or "")[:MAX_QUERY_CHARS]
        holder = self.retriever or default_retriever()
        try:
            retriever = await asyncio.to_thread(holder.get)
            if intent == "kb_article":
                return self.show_article(dispatcher, tracker, domain, retriever, language)
            hits = await asyncio.to_thread(retriever.search, text, language, MAX_SUGGESTIONS)
            understood = await asyncio.to_thread(retriever.understood, text, language)
        except Exception:
            logger.exception("conversation %s: knowledge search failed", tracker.sender_id)
            return await self.unavailable(dispatcher, tracker, intent)

        confidence = retriever.confidence(hits, language)
        answer_at, suggest_at = holder.thresholds(retriever, language)
        top = hits[0] if hits else None
        logger.info(
            "conversation %s: kb %s intent=%s top=%s confidence=%.3f (answer %.2f, suggest %.2f) query=%r",
            tracker.sender_id,
            language,
            intent,
            top.article_id if top else None,
            confidence,
            answer_at,
            suggest_at,
            mask_card_codes(text[:80]),
        )
        categories = INTENT_CATEGORIES.get(intent)
        if categories:
            # the NLU and the article agree on the topic: a lower bar than answering alone
            agree_at = (answer_at + suggest_at) / 2
            if top and top.category in categories and confidence >= agree_at:
                kb_outcome("answer", language)
                self.answer(dispatcher, domain, top, language)
                return [SlotSet("kb_article", top.article_id), SlotSet("kb_misses", 0)]
            # the articles disagree with the NLU or are unsure: the curated answer for the topic
            kb_outcome("curated", language)
            dispatcher.utter_message(response=f"utter_{intent}")
            return [SlotSet("kb_misses", 0)]
        if top and confidence >= answer_at:
            kb_outcome("answer", language)
            self.answer(dispatcher, domain, top, language)
            return [SlotSet("kb_article", top.article_id), SlotSet("kb_misses", 0)]
        if top and confidence >= suggest_at:
            kb_outcome("suggest", language)
            self.suggest(dispatcher, domain, hits, language)
            return [SlotSet("kb_misses", 0)]
        if not understood and _misses_in_a_row(tracker) == 0:
            buttons = [
                {"title": response_text(domain, "utter_talk_to_person", language), "payload": "/ask_human"}
            ]
            kb_outcome("rephrase", language)
            await self.unanswered(tracker, text, language, "rephrase")
            dispatcher.utter_message(response="utter_kb_rephrase", buttons=buttons)
            return [SlotSet("kb_misses", 1)]
        reason = Reason.LOW_CONFIDENCE if understood else Reason.SECOND_FALLBACK
        kb_outcome("handoff", language)
        await self.unanswered(tracker, text, language, "handoff")
        dispatcher.utter_message(response="utter_kb_no_answer")
        events = await (self.handoff or self._handoff()).hand_off(dispatcher, tracker, reason)
        return [*events, SlotSet("kb_misses", 0)]

    def _handoff(self) -> ActionHandoff:
        return ActionHandoff()

    async def unanswered(self, tracker: Tracker, text: str, language: str, outcome: str) -> None:
        """Note the question for the supervisor's "top unanswered" (handoff/analytics.py)."""
        try:
            if self.analytics is None:
                self.analytics = default_queue().analytics
            await self.analytics.unanswered(text, language, outcome)
        except RedisError as error:  # analytics must never cost the customer their answer
            logger.warning("conversation %s: unanswered question not recorded: %s", tracker.sender_id, error)

    def answer(
        self, dispatcher: CollectingDispatcher, domain: dict[str, Any], hit: Hit, language: Language
    ) -> None:
        source = response_text(domain, "utter_kb_source", language).format(title=hit.title)
        buttons = [
            {"title": response_text(domain, "utter_talk_to_person", language), "payload": "/ask_human"}
        ]
        if hit.category in SELF_SERVICE:
            # after reading how it works, the customer can do it here
            response, payload = SELF_SERVICE[hit.category]
            buttons.insert(0, {"title": response_text(domain, response, language), "payload": payload})
        # the article id is in the kb_article slot; a custom payload would reach channels as an extra message
        dispatcher.utter_message(text=f"{chat_text(hit.chunk)}\n{source}", buttons=buttons)

    def suggest(
        self, dispatcher: CollectingDispatcher, domain: dict[str, Any], hits: list[Hit], language: Language
    ) -> None:
        buttons = [
            {"title": hit.title, "payload": f'/kb_article{{"kb_article":"{hit.article_id}"}}'}
            for hit in hits[:MAX_SUGGESTIONS]
        ]
        buttons.append(
            {"title": response_text(domain, "utter_talk_to_person", language), "payload": "/ask_human"}
        )
        dispatcher.utter_message(response="utter_kb_suggest", buttons=buttons)

    def show_article(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
        retriever: Retriever,
        language: Language,
    ) -> list[EventType]:
        article_id = str(tracker.get_slot("kb_article") or "")
        for entity in (tracker.latest_message or {}).get("entities") or []:
            if entity.get("entity") == "kb_article":
                article_id = str(entity.get("value") or "")
        hit = retriever.article(article_id, language) if article_id else None
        if hit is None:
            dispatcher.utter_message(response="utter_ask_how_to_help")
            return []
        self.answer(dispatcher, domain, hit, language)
        return [SlotSet("kb_article", hit.article_id), SlotSet("kb_misses", 0)]

    async def unavailable(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, intent: str
    ) -> list[EventType]:
        if intent in INTENT_CATEGORIES:
            dispatcher.utter_message(response=f"utter_{intent}")
            return []
        dispatcher.utter_message(response="utter_kb_unavailable")
        return await (self.handoff or self._handoff()).hand_off(dispatcher, tracker, Reason.ACTION_FAILURE)
